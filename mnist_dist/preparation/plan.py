"""The plan of an expanded split of deformed digits: checked against the store and the disk on
the client, before any cluster is involved (nothing is written here).

Layout added to a store (see `data/store.py` for the rest)::

    expanded/images   uint8 (N, 784), chunks (chunk_rows, 784), Blosc zstd level 3
    expanded/labels   uint8 (N,),     chunks (chunk_rows,)

with group attributes `format`, `n`, `seed`, `source` (the split deformed), `n_source`,
`deformation` (the `DeformParams`), `rng`, `chunk_rows`, `code_version`; see `data/expand.py`
for what the digits are. `graph.py` writes the planned split on a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec, BloscShuffle

import mnist_dist
from mnist_dist.data.expand import DRAWS_PER_DIGIT, deform_batch, digit_draws
from mnist_dist.data.partitioning import GENERATE_BYTES_PER_ROW, check_aligned, partition_rows
from mnist_dist.data.store import open_store
from mnist_dist.errors import DataError, DiskSpaceError, StoreExistsError
from mnist_dist.preparation.spec import ExpandSpec
from mnist_dist.provenance import describe_differences

log = logging.getLogger(__name__)

EXPANDED_FORMAT = "mnist-dist-expanded/1"
RNG_SCHEME = f"Philox(key=seed, counter=index*{DRAWS_PER_DIGIT // 4}), {DRAWS_PER_DIGIT} draws"
PROVENANCE_KEYS = ("format", "n", "seed", "source", "n_source", "deformation", "rng")
GROUP_ENTRIES = frozenset({"zarr.json", "images", "labels"})  # all an expanded group holds
SAMPLE_RANGES = 4  # the disk estimate compresses this many runs of generated digits ...
SAMPLE_RUN = 128  # ... of this many digits each, spread over [0, N)
DISK_MARGIN = 1.25
DISK_RESERVE_BYTES = 64 * 1024**2
CODEC_NAME: Literal["zstd"] = "zstd"
CODEC_LEVEL = 3
FS_BLOCK = 4096  # every chunk file rounds up to a file-system block


def expanded_attrs(spec: ExpandSpec, n_source: int, chunk_rows: int) -> dict[str, Any]:
    """Group attributes of the expanded split `spec` describes."""
    return {
        "format": EXPANDED_FORMAT,
        "n": spec.n,
        "seed": spec.seed,
        "source": spec.source,
        "n_source": n_source,
        "deformation": spec.params.as_dict(),
        "rng": RNG_SCHEME,
        "chunk_rows": chunk_rows,
        "code_version": mnist_dist.__version__,
    }


def source_array(root: zarr.Group, spec: ExpandSpec, name: str) -> zarr.Array:
    """Array `name` ("images" or "labels") of the source split; DataError when it is missing."""
    node = root.get(f"{spec.source}/{name}")
    if not isinstance(node, zarr.Array):
        raise DataError(f"{spec.store}: source split {spec.source!r} has no array {name!r}")
    return node


def provenance(attrs: dict[str, Any]) -> dict[str, Any]:
    """The attributes that decide whether an existing expanded group can be reused."""
    return {key: attrs.get(key) for key in PROVENANCE_KEYS}


@dataclass(frozen=True)
class ExpandPlan:
    """What `execute` will do, decided on the client before any cluster is involved."""

    spec: ExpandSpec
    attrs: dict[str, Any]
    partition_rows: int
    chunk_rows: int
    reuse: bool
    needed_bytes: int


def plan_expand(spec: ExpandSpec) -> ExpandPlan:
    """Check the request against the store and the disk; nothing is written.

    Raises StoreExistsError for a different existing group (unless `spec.force`), DiskSpaceError
    when the disk lacks the estimated space, ValueError for misaligned partition rows.
    """
    root = open_store(spec.store)
    source = source_array(root, spec, "images")
    n_source, chunk_rows = int(source.shape[0]), int(source.chunks[0])
    attrs = expanded_attrs(spec, n_source, chunk_rows)
    rows = spec.partition_rows or partition_rows(
        spec.partition_mb, GENERATE_BYTES_PER_ROW, chunk_rows
    )
    check_aligned(rows, chunk_rows, f"{spec.store}/{spec.group}")
    check_group_target(spec)
    reuse = existing_is_reusable(root, spec, attrs)
    needed = 0 if reuse else check_disk_space(spec, root, chunk_rows)
    return ExpandPlan(spec, attrs, rows, chunk_rows, reuse, needed)


def check_group_target(spec: ExpandSpec) -> None:
    """StoreExistsError unless `store/group` is absent or an expanded group of ours and nothing
    else: a file, a link or anyone else's folder there is never replaced, even with `force`."""
    target = spec.store / spec.group
    if not target.exists() and not target.is_symlink():
        return
    reason = foreign_reason(target)
    if reason:
        raise StoreExistsError(
            f"{target} exists and is not an expanded split ({reason}); expected nothing there "
            "or a split written by --expand: move it away or use another store"
        )


def foreign_reason(target: Path) -> str | None:
    """Why the existing `target` is not an expanded group written by this module, or None."""
    if target.is_symlink():
        return "it is a link"
    if not target.is_dir():
        return "it is a file"
    foreign = sorted(set(os.listdir(target)) - GROUP_ENTRIES)
    if foreign:
        return f"it holds {', '.join(foreign[:3])}"
    try:
        attrs = json.loads((target / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return "no readable zarr.json"
    if not isinstance(attrs, dict) or attrs.get("format") != EXPANDED_FORMAT:
        return f"its format is not {EXPANDED_FORMAT}"
    return None


def existing_is_reusable(root: zarr.Group, spec: ExpandSpec, attrs: dict[str, Any]) -> bool:
    """True when `spec.group` exists with the same provenance; raise if it differs (no force)."""
    if spec.group not in root:
        return False
    found = provenance(dict(root[spec.group].attrs))
    if found == provenance(attrs):
        return not spec.force
    if spec.force:
        return False
    diff = describe_differences(found, provenance(attrs))
    raise StoreExistsError(
        f"{spec.store}/{spec.group} exists with different provenance ({diff}); "
        "pass --force to regenerate it"
    )


def store_codec() -> BloscCodec:
    """The compressor of the expanded arrays.

    Unlike the base store's zstd-5 + bitshuffle: on 1-byte pixels bitshuffle compresses ~30 %
    worse and level 5 costs 3x the time of level 3 for 3 % (measured: 238 B/digit, 5 µs/digit).
    """
    return BloscCodec(cname=CODEC_NAME, clevel=CODEC_LEVEL, shuffle=BloscShuffle.noshuffle)


def estimated_bytes_per_row(root: zarr.Group, spec: ExpandSpec, chunk_rows: int) -> float:
    """Conservative on-disk bytes per expanded digit (images + labels), from a compressed sample.

    Generates a few short runs of digits here (a few hundred, never the split); they compress
    worse than full chunks do, which keeps the estimate on the safe side.
    """
    source = source_array(root, spec, "images")
    codec = Blosc(cname=CODEC_NAME, clevel=CODEC_LEVEL, shuffle=Blosc.NOSHUFFLE)
    compressed = sampled = 0
    for k in range(SAMPLE_RANGES):
        start = spec.n * k // SAMPLE_RANGES
        stop = min(spec.n, start + SAMPLE_RUN)
        rows, inverse = np.unique(np.arange(start, stop) % source.shape[0], return_inverse=True)
        pixels = np.asarray(source.get_orthogonal_selection((rows, slice(None))))[inverse]
        images = deform_batch(pixels, digit_draws(spec.seed, start, stop), spec.params)
        compressed += len(codec.encode(images.tobytes()))
        sampled += stop - start
    labels_per_row = 1.0  # uncompressed bound
    files_per_row = 2 * FS_BLOCK / min(chunk_rows, spec.n)
    return compressed / sampled + labels_per_row + files_per_row


def check_disk_space(spec: ExpandSpec, root: zarr.Group, chunk_rows: int) -> int:
    """Estimated bytes the expanded split needs; DiskSpaceError when the disk has fewer free."""
    per_row = estimated_bytes_per_row(root, spec, chunk_rows)
    needed = int(spec.n * per_row * DISK_MARGIN) + DISK_RESERVE_BYTES
    free = shutil.disk_usage(spec.store).free
    log.info("expanded split needs about %s (%.0f B/digit x %d x %.2f margin); %s free",
             format_bytes(needed), per_row, spec.n, DISK_MARGIN, format_bytes(free))
    if needed > free:
        raise DiskSpaceError(
            f"{spec.store}: {spec.n:,} expanded digits need about {format_bytes(needed)} "
            f"({per_row:.0f} B/digit compressed, x{DISK_MARGIN} margin) but only "
            f"{format_bytes(free)} is free; free space or ask for fewer digits"
        )
    return needed


def directory_bytes(path: Path) -> int:
    """Disk usage of a directory tree in bytes (allocated blocks, like `du`)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def format_bytes(count: float) -> str:
    """`count` bytes as a short human string, e.g. '1.9 GiB'."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    for unit in units[:-1]:
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} {units[-1]}"
