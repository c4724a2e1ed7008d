"""The Zarr (v3) store of MNIST that every job reads: layout, splits, atomic builds.

Layout of a store directory::

    zarr.json        root group; attributes below
    train/images     uint8 (n_train, 784), chunks (chunk_rows, 784)
    train/labels     uint8 (n_train,),     chunks (chunk_rows,)
    test/images      uint8 (n_test, 784),  chunks (chunk_rows, 784)
    test/labels      uint8 (n_test,),      chunks (chunk_rows,)

Image rows are flattened 28x28 digits (row-major; `reshape(-1, 28, 28)` for display), chunked
along the sample axis only and compressed with Blosc zstd + bitshuffle. Root attributes:
`format`, `source`, `checksums`, `split` ({"name", "test_size", "random_state"}, only "name"
for canonical), `n_train`, `n_test`, `chunk_rows`, `code_version`. A store's provenance is
(`format`, `checksums`, `split`, `chunk_rows`): a rebuild with the same provenance is a no-op.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.core.array_spec import ArrayConfigParams

import mnist_dist
from mnist_dist.data.sources import N_PIXELS, RawMnist
from mnist_dist.errors import (
    DataError,
    MnistDistError,
    SpecError,
    StoreExistsError,
    StoreNotFoundError,
)
from mnist_dist.locations import is_url, local_path
from mnist_dist.provenance import describe_differences
from mnist_dist.publish import built_aside, exists
from mnist_dist.settings import setting

log = logging.getLogger(__name__)

STORE_FORMAT = "mnist-dist-store/1"
SPLITS = ("seed", "canonical")
STORE_GROUPS = ("train", "test")  # the splits every built store holds
SEED_TEST_SIZE = 0.2
SEED_RANDOM_STATE = 42
ARRAY_NAMES = ("train/images", "train/labels", "test/images", "test/labels")
PROVENANCE_KEYS = ("format", "checksums", "split", "chunk_rows")
PREPARE_HINT = "run `python -m jobs.prepare`"
ROOT_METADATA = "zarr.json"  # the root group's attributes: written last, they mark a whole store
# An array attribute of the project's writers: every chunk was written, even one equal to the
# fill value (zarr skips those by default), so an absent chunk of such an array was lost.
ALL_CHUNKS_WRITTEN = "all_chunks_written"
EVERY_CHUNK: ArrayConfigParams = {"write_empty_chunks": True}  # those writers' array config


def store_codec() -> BloscCodec:
    """The store's compressor for uint8 pixel and label arrays."""
    return BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)


def split_spec(split: str) -> dict[str, Any]:
    """The `split` attribute recorded for split name `split` (one of `SPLITS`)."""
    if split not in SPLITS:
        raise SpecError(f"split must be one of {', '.join(SPLITS)}; got {split!r} instead")
    if split == "canonical":
        return {"name": "canonical"}
    return {"name": "seed", "test_size": SEED_TEST_SIZE, "random_state": SEED_RANDOM_STATE}


def split_arrays(
    raw: RawMnist, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) for `split`; images (n, 784), labels (n,).

    `seed` reshuffles train+test (in that order) with `train_test_split(test_size=0.2,
    random_state=42)`; `canonical` keeps the published 60,000/10,000 split.
    """
    from sklearn.model_selection import train_test_split  # only here: slow to import

    spec = split_spec(split)
    if spec["name"] == "canonical":
        return raw.x_train, raw.y_train, raw.x_test, raw.y_test
    x = np.concatenate([raw.x_train, raw.x_test])
    y = np.concatenate([raw.y_train, raw.y_test])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=spec["test_size"], random_state=spec["random_state"]
    )
    return x_train, y_train, x_test, y_test


def store_provenance(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a store's attributes that decides whether it can be reused."""
    return {key: attrs.get(key) for key in PROVENANCE_KEYS}


def requested_provenance(raw: RawMnist, split: str, chunk_rows: int) -> dict[str, Any]:
    """Provenance a store built from `raw` with `split` and `chunk_rows` would have."""
    attrs = {"format": STORE_FORMAT, "checksums": dict(raw.checksums),
             "split": split_spec(split), "chunk_rows": chunk_rows}
    # Round-trip through JSON so it compares equal to attributes read back from zarr.json.
    return store_provenance(json.loads(json.dumps(attrs)))


def build_store(
    raw: RawMnist,
    path: Path | str,
    split: str | None = None,
    chunk_rows: int | None = None,
    force: bool = False,
) -> Path | str:
    """Write `raw` as a store at `path` (a local path or URL) atomically; reuse one with the
    same provenance.

    `split` and `chunk_rows` default to the settings `prepare.split` and `prepare.chunk-rows`.
    Raises StoreExistsError when `path` holds something else, unless `force`.
    """
    split = split or setting("prepare.split")
    chunk_rows = setting("prepare.chunk-rows") if chunk_rows is None else chunk_rows
    if chunk_rows < 1:
        raise SpecError(f"chunk_rows must be a positive integer; got {chunk_rows} instead")
    wanted = requested_provenance(raw, split, chunk_rows)
    if exists(path) and not force:
        check_reusable(path, wanted)
        log.info("reusing store %s (same provenance)", path)
        return path
    with built_aside(path, marker=ROOT_METADATA) as tmp:
        write_store(raw, tmp, split, chunk_rows)
    log.info("wrote store %s (split %s, %d-row chunks)", path, split, chunk_rows)
    return path


def check_reusable(path: Path | str, wanted: dict[str, Any]) -> None:
    """Raise StoreExistsError unless the store at `path` has provenance `wanted`."""
    found = existing_provenance(path)
    if found is None:
        raise StoreExistsError(
            f"{path} exists and is not a mnist-dist store; pass --force to overwrite it"
        )
    if found != wanted:
        diff = describe_differences(found, wanted)
        raise StoreExistsError(
            f"store {path} exists with different provenance ({diff}); pass --force to rebuild"
        )


def existing_provenance(path: Path | str) -> dict[str, Any] | None:
    """Provenance of the store at `path`, or None when it is not a mnist-dist store."""
    try:
        return store_provenance(open_store(path).attrs)
    except StoreNotFoundError:
        return None


def write_store(raw: RawMnist, path: Path, split: str, chunk_rows: int) -> None:
    """Write the four arrays then the root attributes (last, so they mark a complete store)."""
    x_train, y_train, x_test, y_test = split_arrays(raw, split)
    group = zarr.open_group(str(path), mode="w")
    for part, images, labels in (("train", x_train, y_train), ("test", x_test, y_test)):
        write_array(group, f"{part}/images", images, (chunk_rows, N_PIXELS))
        write_array(group, f"{part}/labels", labels, (chunk_rows,))
    group.attrs.update({
        "format": STORE_FORMAT,
        "source": raw.source,
        "checksums": dict(raw.checksums),
        "split": split_spec(split),
        "n_train": len(x_train),
        "n_test": len(x_test),
        "chunk_rows": chunk_rows,
        "code_version": mnist_dist.__version__,
    })


def write_array(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    """Create uint8 array `name` in `group` with row `chunks` and fill it with `data`, every
    chunk written (see ALL_CHUNKS_WRITTEN)."""
    array = group.create_array(
        name, shape=data.shape, chunks=chunks, dtype="uint8", compressors=store_codec(),
        config=EVERY_CHUNK,
    )
    array[...] = data
    array.attrs[ALL_CHUNKS_WRITTEN] = True


def open_store(path: Path | str) -> zarr.Group:
    """Open the store at `path` (a local path or URL) read-only; StoreNotFoundError if it is missing or incomplete."""
    group = open_root(path)
    for name in ARRAY_NAMES:
        with readable_metadata(f"{path}/{name}"):
            found = name in group
        if not found:
            raise StoreNotFoundError(
                f"store {path} lacks array {name}; {PREPARE_HINT} --store {path} --force"
            )
    return group


# What zarr-python raises for metadata it cannot read (bad or deeply nested JSON, an unknown
# codec, a negative chunk shape, a fill value outside the data type, a bad chunk-key separator).
METADATA_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, KeyError,
                   zarr.errors.BaseZarrError)


@contextlib.contextmanager
def readable_metadata(where: str) -> Iterator[None]:
    """DataError naming `where` when the Zarr metadata read inside is not valid."""
    try:
        yield
    except MnistDistError:
        raise
    except METADATA_ERRORS as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{where}: unreadable Zarr metadata ({reason}); expected a store "
                        "written by mnist-dist or zarr-python") from exc


def check_chunk_shape(array: zarr.Array, where: str) -> None:
    """DataError unless every chunk dimension of `array` is positive."""
    if any(side <= 0 for side in array.chunks):
        raise DataError(f"{where}: chunk shape {list(array.chunks)} in its Zarr metadata; "
                        "expected positive chunk sides")


def open_root(path: Path | str) -> zarr.Group:
    """The root group of a mnist-dist store at `path` (a local path or URL), read-only."""
    if not is_url(str(path)) and not Path(local_path(str(path))).is_dir():
        raise StoreNotFoundError(f"store {path} not found; {PREPARE_HINT} --store {path}")
    try:
        group = zarr.open_group(str(path), mode="r")
    except FileNotFoundError as exc:
        raise StoreNotFoundError(
            f"store {path} not found ({exc}); {PREPARE_HINT} --store {path}"
        ) from exc
    except METADATA_ERRORS as exc:
        raise StoreNotFoundError(
            f"store {path} not found ({' '.join(str(exc).split())[:200]}); "
            f"{PREPARE_HINT} --store {path}"
        ) from exc
    if group.attrs.get("format") != STORE_FORMAT:
        raise StoreNotFoundError(
            f"store {path} not found: it is not a {STORE_FORMAT} store; "
            f"{PREPARE_HINT} --store {path} --force"
        )
    return group


def zarr_array(location: str, name: str, mode: str = "r") -> zarr.Array:
    """Array `name` (e.g. "test/images") of the Zarr group at a path or URL."""
    node = zarr.open_group(location, mode=mode)[name]  # type: ignore[arg-type]
    return as_array(node, location, name)


def as_array(node: zarr.Array | zarr.Group, location: str, name: str) -> zarr.Array:
    """`node`, the member `name` of a group at `location`; DataError unless it is an array."""
    if not isinstance(node, zarr.Array):
        raise DataError(f"{location}: {name} is a group, not an array; expected a Zarr array")
    return node


def writable_array(location: str, name: str) -> zarr.Array:
    """Array `name` of the Zarr group at a path or URL, opened to write every chunk (see
    ALL_CHUNKS_WRITTEN)."""
    return zarr_array(location, name, mode="r+").with_config(EVERY_CHUNK)


def store_info(path: Path | str) -> dict[str, Any]:
    """Root attributes of the store at `path` (see the module docstring)."""
    return dict(open_root(path).attrs)
