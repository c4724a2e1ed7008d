"""A split of the store as the jobs read it: opened once (`open_split`), checked whole
(`checked_rows`: shapes, dtypes, labels 0-9, every chunk the writer wrote), stamped
(`split_stamp`), and read by rows (`read_rows`: an undecodable chunk is named)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.core.sync import sync

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import (
    ALL_CHUNKS_WRITTEN,
    METADATA_ERRORS,
    PREPARE_HINT,
    STORE_FORMAT,
    as_array,
    check_chunk_shape,
    readable_metadata,
    zarr_array,
)
from mnist_dist.errors import DataError, StoreNotFoundError
from mnist_dist.locations import folder_stamp

log = logging.getLogger(__name__)


def missing_chunks(array: zarr.Array, limit: int | None = None) -> tuple[int, list[str]]:
    """How many chunks of `array` are absent from its store, and the keys (e.g. `c/3/0`) of the
    first `limit` of them (None: all). Zarr would read them as the fill value, so a split with
    any missing would be scored as blank digits. Costs one listing of the stored keys, however
    many chunks the metadata claims."""
    aa = array._async_array  # zarr names chunks only through its private helpers
    grid = tuple(aa._shard_grid_shape)
    present = stored_chunk_keys(array, grid)
    count = math.prod(grid) - len(present)
    if count == 0:
        return 0, []
    keys = (array.metadata.encode_chunk_key(index) for index in grid_indices(grid))
    absent = (key for key in keys if key not in present)
    return count, list(itertools.islice(absent, limit))


def grid_indices(grid: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Every index of a chunk grid in row-major order, one at a time (a grid of 10^9 chunks
    costs nothing until iterated)."""
    for flat in range(math.prod(grid)):
        index = []
        for side in reversed(grid):
            flat, i = divmod(flat, side)
            index.append(i)
        yield tuple(reversed(index))


def stored_chunk_keys(array: zarr.Array, grid: tuple[int, ...]) -> set[str]:
    """Keys of the chunks (shards, when sharded) of `array` present in its store and inside
    its chunk grid `grid`."""
    aa = array._async_array
    prefix = aa.store_path.path

    async def listing() -> list[str]:
        return [key async for key in aa.store_path.store.list_prefix(prefix=prefix)]

    start = len(prefix) + 1 if prefix else 0
    return {key for key in (k[start:] for k in sync(listing()))
            if chunk_index(array, key, grid) is not None}


def chunk_index(array: zarr.Array, key: str, grid: tuple[int, ...]) -> tuple[int, ...] | None:
    """The grid index a stored key names, None when it names no chunk of `grid`."""
    encoding = array.metadata.chunk_key_encoding
    separator = getattr(encoding, "separator", "/")
    parts = key.split(separator)
    if parts[:1] == ["c"] and len(parts) == len(grid) + 1:
        parts = parts[1:]
    if len(parts) != len(grid) or not all(part.isdigit() for part in parts):
        return None
    index = tuple(int(part) for part in parts)
    if any(i >= side for i, side in zip(index, grid, strict=True)):
        return None
    return index if array.metadata.encode_chunk_key(index) == key else None


def absent_row_chunks(array: zarr.Array) -> set[int]:
    """Indices of the absent chunks of an array chunked along its rows only."""
    missing = set(missing_chunks(array)[1])
    if not missing:
        return set()
    rows = -(-array.shape[0] // array.chunks[0])
    return {i for i in range(rows)
            if array.metadata.encode_chunk_key((i,) + (0,) * (array.ndim - 1)) in missing}


@dataclass(frozen=True)
class Split:
    """A split of a store, its metadata read once: `images` (N, 784), `labels` (N,) and `ids`
    (N,) (None when absent; `images` too, for check_split to name), and the root's attrs."""

    location: str
    name: str
    images: zarr.Array | None
    labels: zarr.Array | None
    ids: zarr.Array | None
    store_attrs: dict[str, Any]

    @property
    def where(self) -> str:
        """The split's location, for messages."""
        return f"{self.location}/{self.name}"

    @property
    def pixels(self) -> zarr.Array:
        """The `images` array; StoreNotFoundError naming the split when it has none."""
        if self.images is None:
            raise StoreNotFoundError(f"{self.location}: split {self.name!r} has no images array "
                                     f"({self.where}/images not found)")
        return self.images


def open_split(location: str, split: str) -> Split:
    """The split `split` of the store at a path or URL, each array's metadata read once;
    StoreNotFoundError naming the store or split when either is missing."""
    try:
        root = zarr.open_group(location, mode="r")  # type: ignore[arg-type]
    except FileNotFoundError as exc:
        raise StoreNotFoundError(f"store {location} not found ({exc})") from exc
    except METADATA_ERRORS as exc:
        raise StoreNotFoundError(f"store {location} not found "
                                 f"({' '.join(str(exc).split())[:200]})") from exc
    with readable_metadata(f"{location}/{split}"):
        group = root.get(split)
        if group is None:
            found = ", ".join(sorted(root.group_keys())) or "none"
            raise StoreNotFoundError(f"{location}: split {split!r} not found in the store "
                                     f"(its groups: {found})")
        if not isinstance(group, zarr.Group):
            raise DataError(f"{location}: {split} is an array, not a group; expected a split "
                            "group")
        members = dict(group.members())
    arrays = {name: as_array(members[name], location, f"{split}/{name}") if name in members
              else None for name in ("images", "labels", "ids")}
    for name, array in arrays.items():
        if array is not None:
            check_chunk_shape(array, f"{location}/{split}/{name}")
    return Split(location, split, store_attrs=dict(root.attrs), **arrays)


def every_chunk_written(split: Split, array: zarr.Array) -> bool:
    """True when an absent chunk of `array` can only be a lost one: its writer recorded that it
    wrote every chunk, or it is a prepared split of a mnist-dist store (real MNIST digits)."""
    if array.attrs.get(ALL_CHUNKS_WRITTEN) is True:
        return True
    return split.name in ("train", "test") and split.store_attrs.get("format") == STORE_FORMAT


def split_stamp(location: str, split: str) -> str:
    """The `folder_stamp` of the split's folder: it changes when any of its files does."""
    return folder_stamp(f"{location.rstrip('/')}/{split}")


def check_complete(split: Split) -> None:
    """DataError naming the missing chunks of the split's arrays (images, and labels when the
    split has them) whose writer wrote every chunk. Elsewhere (a Zarr split of the user's) an
    absent chunk is one zarr left out because it equals the fill value: valid Zarr, read as such."""
    for name, array in (("images", split.images), ("labels", split.labels)):
        if array is None:
            continue
        count, first = missing_chunks(array, limit=5)
        if count and not every_chunk_written(split, array):
            log.info("%s/%s: %d chunk(s) absent, read as the fill value %s (its writer "
                     "did not record writing every chunk)", split.where, name,
                     count, array.fill_value)
            continue
        if count:
            shown = ", ".join(first) + (f" and {count - len(first)} more"
                                        if count > len(first) else "")
            raise DataError(
                f"{split.where}/{name} is missing {count} chunk(s): {shown}; "
                f"expected every chunk (rebuild the store: {PREPARE_HINT} --force)"
            )


def stamped_split(location: str, split: str) -> tuple[str, Split]:
    """The split's stamp, taken before any read (so a change later is seen), and the split once
    its shapes, dtypes, labels 0-9 and every chunk are checked (a missing chunk reads as 0)."""
    stamp = split_stamp(location, split)
    opened = open_split(location, split)
    checked_rows(opened)
    return stamp, opened


def check_split(location: str, split: str) -> int:
    """Rows N of a split that can be scored (see `checked_rows`)."""
    return checked_rows(open_split(location, split))


def checked_rows(split: Split) -> int:
    """Rows N of a split that can be scored, else the error naming what is wrong: `images`
    uint8 (N, 784) with N > 0, `labels` (optional) uint8 (N,) of digits 0-9, no chunk missing."""
    images, labels, where = split.pixels, split.labels, split.where
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != N_PIXELS:
        raise DataError(f"{where}/images must be uint8 (N, {N_PIXELS}); "
                        f"got {images.dtype} {images.shape} instead")
    if images.shape[0] == 0:
        raise DataError(f"{where}/images has 0 rows: nothing to score")
    if labels is not None:
        check_labels(where, labels, images.shape[0])
    check_complete(split)
    if labels is not None:
        check_label_values(where, rows_of(labels, f"{where}/labels", 0, labels.shape[0]))
    return int(images.shape[0])


def check_labels(where: str, labels: zarr.Array, n_images: int) -> None:
    """DataError unless `labels` is uint8 (n_images,)."""
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{where}/labels must be uint8 (N,); "
                        f"got {labels.dtype} {labels.shape} instead")
    if labels.shape[0] != n_images:
        raise DataError(f"{where}: {n_images} images but {labels.shape[0]} labels; "
                        "expected one label per image")


def check_label_values(where: str, labels: np.ndarray) -> None:
    """DataError naming the first row whose label is not a digit 0-9."""
    bad = np.flatnonzero(labels > 9)
    if len(bad):
        raise DataError(f"{where}/labels holds {len(bad)} value(s) outside 0-9, e.g. "
                        f"{int(labels[bad[0]])} at row {int(bad[0])}; expected digits 0-9")


def read_rows(location: str, name: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of array `name` (e.g. "test/images"), read into memory; a chunk that
    cannot be decoded is a DataError naming the array and the chunk key(s)."""
    return rows_of(zarr_array(location, name), f"{location}/{name}", start, stop)


def rows_of(array: zarr.Array, where: str, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of an open array (at `where`, for messages), as `read_rows`."""
    try:
        return np.asarray(array[start:stop])
    except Exception as exc:  # codecs raise RuntimeError, ValueError, …: no common type
        bad = undecodable_chunks(array, start, stop)
        if not bad:
            raise
        raise DataError(
            f"{where}: chunk(s) {', '.join(bad)} cannot be decoded "
            f"({type(exc).__name__}: {exc}); rebuild the store: {PREPARE_HINT} --force"
        ) from exc


def undecodable_chunks(array: zarr.Array, start: int, stop: int) -> list[str]:
    """Keys of the chunks overlapping rows [start, stop) of `array` that fail to decode."""
    rows = array.chunks[0]
    bad = []
    for index in range(start // rows, (max(start, stop - 1)) // rows + 1):
        try:
            array[index * rows : (index + 1) * rows]
        except Exception:  # noqa: BLE001 - any failure marks the chunk
            coords = (index,) + (0,) * (array.ndim - 1)
            bad.append(array.metadata.encode_chunk_key(coords))
    return bad


def read_split(location: str, split: str, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 784) and labels uint8 (n,) of `rows` of a split, read into memory."""
    start, stop = rows_range(location, split, rows)
    return (read_rows(location, f"{split}/images", start, stop),
            read_rows(location, f"{split}/labels", start, stop))


def rows_range(location: str, split: str, rows: slice) -> tuple[int, int]:
    """(start, stop) of a step-1 row slice of a split's images."""
    start, stop, _ = rows.indices(zarr_array(location, f"{split}/images").shape[0])
    return start, max(start, stop)
