"""Ingest arrays or image files into the store as a new split, atomically.

Every check that needs no data (store, split name, shapes, dtypes, label counts) runs before
the cluster starts; the data checks (NaN, range, digits 0-9) run per block on the workers. The
split is built in a temporary sibling of the store (on its disk, or in its bucket for s3://) and
moved into it only when complete (`publish.replace_folder`), so a failed or interrupted ingest
leaves the store as it was.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed

import mnist_dist
from mnist_dist.cluster import ClusterSpec, connect
from mnist_dist.data.store import open_store
from mnist_dist.errors import DataError, ImageInputError, SpecError, StoreExistsError
from mnist_dist.images.files import label_from_name, list_image_files, match_labels, read_labels_csv
from mnist_dist.ingest.graph import (
    Layout,
    block_digests,
    compact_staged,
    labels_of,
    pixels,
    stage_files,
    write_array_split,
)
from mnist_dist.ingest.sources import (
    check_images_array,
    check_labels_array,
    file_sha256,
    is_array_source,
    lazy_array,
)
from mnist_dist.locations import absolute, is_url, local_path
from mnist_dist.publish import remove_folder, replace_folder, temporary_location
from mnist_dist.settings import setting_field

log = logging.getLogger(__name__)

SPLIT_FORMAT = "mnist-dist-ingest/1"
PREPARED_SPLITS = ("train", "test")  # built by jobs.prepare; the models depend on them
FAILURE_SAMPLE = 5
GROUP_METADATA = "zarr.json"  # the split group's own: moved in last, it makes the split visible
# Everything a split folder holds (ingested: images, labels, ids, failures; expanded: the first
# two): anything else in it is someone else's, and --force never deletes it.
SPLIT_ENTRIES = frozenset({GROUP_METADATA, "images", "labels", "ids", "failures"})


@dataclass(frozen=True)
class IngestSpec:
    """What to ingest (`sources`: arrays, or image files and folders) into which split."""

    sources: tuple[str, ...]
    split: str
    store: Path | str = setting_field("store")
    key: str | None = None
    pixel_range: int | None = None
    labels: Path | None = None
    labels_from_names: bool = False
    force: bool = False
    partition_files: int = setting_field("ingest.partition-files")
    cluster: ClusterSpec = field(default_factory=ClusterSpec)


@dataclass(frozen=True)
class IngestResult:
    """The split written: its rows, the files that failed (count and a few), the time taken."""

    location: str
    n_images: int
    n_failed: int
    failures: list[tuple[str, str]]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return (self.n_images + self.n_failed) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Built:
    """A split written aside: rows, failed files, seconds on the cluster (without its start-up),
    and the content SHA-256 of each Zarr source."""

    n_images: int
    n_failed: int
    seconds: float
    content_sha256: dict[str, str]


def check_target(spec: IngestSpec) -> zarr.Group:
    """The store's root group, once the split name is allowed and free (or `force`)."""
    root = open_store(spec.store)
    if spec.split in PREPARED_SPLITS:
        raise StoreExistsError(f"{spec.store}/{spec.split} is a split of jobs.prepare and is "
                               "never replaced by an ingest; choose another --split")
    check_not_foreign(spec)
    if spec.split in root and not spec.force:
        raise StoreExistsError(f"{spec.store}/{spec.split} exists; pass --force to replace it "
                               "or choose another --split")
    return root


def check_not_foreign(spec: IngestSpec) -> None:
    """StoreExistsError when the local STORE/NAME is taken by something that is not a split
    (a file, a link, a folder of someone else's): not even --force replaces it."""
    store = str(spec.store)
    if is_url(store):
        return
    target = Path(local_path(store)) / spec.split
    reason = foreign_reason(target)
    if reason:
        raise StoreExistsError(f"{target} exists and is not a split of the store ({reason}); "
                               "--force replaces only a split: move it away or choose another "
                               "--split")


def foreign_reason(target: Path) -> str | None:
    """Why the existing `target` is not a split folder, or None (also when nothing is there)."""
    if target.is_symlink():
        return "it is a link"
    if not target.exists():
        return None
    if not target.is_dir():
        return "it is a file"
    try:
        node = json.loads((target / GROUP_METADATA).read_text()).get("node_type")
    except (OSError, ValueError, AttributeError):
        node = None
    if node != "group":
        return f"it has no Zarr group's {GROUP_METADATA}"
    foreign = sorted(p.name for p in target.iterdir() if p.name not in SPLIT_ENTRIES)
    return f"it holds {', '.join(foreign[:3])}" if foreign else None


def array_inputs(spec: IngestSpec, layout: Layout
                 ) -> tuple[da.Array, da.Array | None, dict[str, list[Delayed]]]:
    """Checked lazy images uint8 (N, 784) and labels uint8 (N,) (or None) of array sources,
    and the block-digest tasks of the Zarr sources (the files get a file SHA-256 instead)."""
    if spec.labels_from_names:
        raise SpecError("--labels-from-names needs image files; array sources take "
                        "--labels FILE.npy")
    parts, digests = [], {}
    for source in spec.sources:
        raw = lazy_array(source, spec.key, layout.chunk_rows)
        check_images_array(raw, source, spec.pixel_range)
        parts.append(pixels(raw, spec.pixel_range, source, layout))
        if not Path(source).is_file():
            digests[source] = block_digests(raw)
    images = da.concatenate(parts).rechunk((layout.chunk_rows, parts[0].shape[1]))
    if spec.labels is None:
        return images, None, digests
    if spec.labels.suffix.lower() != ".npy":
        raise SpecError(f"--labels of array sources must be a .npy file; got {spec.labels} instead")
    labels = lazy_array(str(spec.labels), None, layout.chunk_rows)
    check_labels_array(labels, str(spec.labels), int(images.shape[0]))
    return images, labels_of(labels, str(spec.labels), layout), digests


def file_labels(spec: IngestSpec, files: Sequence[Path]) -> list[int] | None:
    """One digit per file from --labels (CSV or .npy) or the file names; None without labels."""
    if spec.labels is None and not spec.labels_from_names:
        return None
    if spec.labels_from_names:
        found: list[int | None] = [label_from_name(f) for f in files]
    elif spec.labels is not None and spec.labels.suffix.lower() == ".npy":
        values = np.load(spec.labels, allow_pickle=False)
        if values.shape != (len(files),) or values.dtype.kind not in "iu":
            raise DataError(f"{spec.labels}: labels must be integers of shape ({len(files)},), "
                            f"one per file; got {values.dtype} {values.shape} instead")
        found = [int(v) if 0 <= v <= 9 else None for v in values]
    else:
        assert spec.labels is not None
        found = match_labels(files, read_labels_csv(spec.labels), spec.labels.parent)
    missing = [f for f, label in zip(files, found, strict=True) if label is None]
    if missing:
        raise DataError(f"{spec.labels or 'file names'}: every file needs a digit 0-9; "
                        f"{len(missing)} of {len(files)} have none (first: {missing[0]})")
    return [int(label) for label in found]  # type: ignore[arg-type]


def provenance(spec: IngestSpec, built: Built) -> dict[str, Any]:
    """The split's `ingest` attribute: where its rows came from, when and by which code.

    `sha256`: of each array file; `content_sha256`: of each Zarr source's values (the SHA-256
    of its blocks' SHA-256s, blocks of the store's chunk rows, C order).
    """
    checksums = {s: file_sha256(Path(s)) for s in spec.sources
                 if is_array_source(s) and Path(s).is_file()}
    return {
        "format": SPLIT_FORMAT, "sources": list(spec.sources), "key": spec.key,
        "sha256": checksums, "content_sha256": built.content_sha256,
        "n_images": built.n_images, "n_failed": built.n_failed, "pixel_range": spec.pixel_range,
        "labels": "file names" if spec.labels_from_names else
        (str(spec.labels) if spec.labels else None),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
    }


def build_split(spec: IngestSpec, tmp: str, layout: Layout) -> Built:
    """Write the split into `tmp/<split>` (a path or URL) on the cluster."""
    arrays = [is_array_source(s) for s in spec.sources]
    if any(arrays) and not all(arrays):
        raise SpecError("SOURCE must be array files/URLs or image files/folders, not both")
    split = zarr.open_group(str(tmp), mode="w-").create_group(spec.split)
    return (build_from_arrays if all(arrays) else build_from_files)(spec, tmp, split, layout)


def build_from_arrays(spec: IngestSpec, tmp: str, split: zarr.Group, layout: Layout) -> Built:
    """Array sources → `split`: read, checked and converted on the workers."""
    images, labels, digests = array_inputs(spec, layout)
    with connect(spec.cluster) as client:
        started = time.perf_counter()
        content = write_array_split(client, split, images, labels, layout, digests)
        return Built(int(images.shape[0]), 0, time.perf_counter() - started, content)


def build_from_files(spec: IngestSpec, tmp: str, split: zarr.Group, layout: Layout) -> Built:
    """Image files → `split`: preprocessed into staging on the workers, then compacted."""
    files = list_image_files(Path(s) for s in spec.sources)
    labels = file_labels(spec, files)
    paths = [str(f) for f in files]
    del files  # the client keeps one list of names, not Path objects as well
    with connect(spec.cluster) as client:
        started = time.perf_counter()
        staging = stage_files(client, paths, labels, f"{tmp}/staging",
                              spec.partition_files, layout)
        n_ok, n_failed = compact_staged(client, staging, split, layout, labels is not None)
        seconds = time.perf_counter() - started
    if n_ok == 0:
        file, reason = failure_sample(split)[0]
        raise ImageInputError(f"none of the {n_failed} image files could be ingested "
                              f"(first: {file}: {reason})")
    return Built(n_ok, n_failed, seconds, {})


def failure_sample(split: zarr.Group) -> list[tuple[str, str]]:
    """(file, reason) of the first few failed files."""
    files, reasons = (zarr.open_array(split.store_path / f"failures/{name}", mode="r")
                      for name in ("file", "reason"))
    count = min(FAILURE_SAMPLE, files.shape[0])
    pairs = zip(np.asarray(files[:count]), np.asarray(reasons[:count]), strict=True)
    return [(str(file), str(reason)) for file, reason in pairs]


def run_ingest(spec: IngestSpec) -> IngestResult:
    """Ingest `spec.sources` into `spec.store` as split `spec.split`; see the module docstring."""
    check_target(spec)
    store = absolute(str(spec.store)).rstrip("/")  # workers may run elsewhere
    layout = Layout.of_store(store)
    tmp = temporary_location(store)
    try:
        built = build_split(spec, tmp, layout)
        split = zarr.open_group(f"{tmp}/{spec.split}", mode="r+")
        split.attrs["ingest"] = provenance(spec, built)
        failures = failure_sample(split) if "failures" in split else []
        replace_folder(f"{tmp}/{spec.split}", f"{store}/{spec.split}", marker=GROUP_METADATA)
    finally:
        remove_folder(tmp)
    log.info("ingested %d rows into %s/%s in %.1f s", built.n_images, store, spec.split,
             built.seconds)
    return IngestResult(f"{store}/{spec.split}", built.n_images, built.n_failed, failures,
                        built.seconds)
