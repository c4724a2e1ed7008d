"""The Dask graphs of an ingest: a split written aside in the store's layout, chunk by chunk.

Array sources: read, checked and converted per block on the workers, rechunked to the store's
chunk rows and stored. Image files: preprocessed per partition into staging arrays
(`files.stage_partition`), then compacted on Dask: usable rows into the split, failed files
and their reasons into `failures/`. The client holds only the file names it listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed
from distributed import Client, as_completed, wait

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import ALL_CHUNKS_WRITTEN, EVERY_CHUNK, zarr_array
from mnist_dist.ingest.files import stage_partition
from mnist_dist.ingest.sources import (
    block_sha256,
    combined_sha256,
    flat_images,
    to_labels,
    to_pixels,
)

STRINGS = np.dtypes.StringDType()


@dataclass(frozen=True)
class Layout:
    """The store's layout for a new split: chunk rows and the compressors of its images."""

    chunk_rows: int
    compressors: Any

    @classmethod
    def of_store(cls, store: str) -> Layout:
        """The layout of the store's training images (the split every store has)."""
        images = zarr_array(store, "train/images")
        return cls(int(images.chunks[0]), images.compressors)


def new_array(group: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any,
              layout: Layout, chunk_rows: int | None = None) -> zarr.Array:
    """An empty array `name` in `group`, chunked along rows only, compressed like the store;
    it writes every chunk, even one equal to the fill value (see `store_all`)."""
    rows = max(1, min(chunk_rows or layout.chunk_rows, shape[0]))
    return group.create_array(name, shape=shape, chunks=(rows, *shape[1:]), dtype=dtype,
                              compressors=layout.compressors, config=EVERY_CHUNK)


def store_all(client: Client, pairs: Sequence[tuple[da.Array, zarr.Array]],
              also: Sequence[Delayed] = ()) -> list[Any]:
    """Write each lazy array into its Zarr array on the workers (chunk-aligned, no lock), in
    one graph with the tasks `also` (sharing their reads); returns the results of `also`.
    Each written array then records that every chunk of it exists (ALL_CHUNKS_WRITTEN)."""
    targets: list[Any] = [p[1] for p in pairs]
    stored = da.store([p[0] for p in pairs], targets, lock=False, compute=False)
    # One task per chunk write: a single Delayed (one source) or a tuple of them (several).
    graphs = [d.__dask_graph__() for d in (stored if isinstance(stored, tuple) else [stored])]
    writes = [Delayed(key, graph, layer=name) for graph in graphs
              for name, layer in graph.layers.items() if name.startswith("store-map")
              for key in layer]
    futures = client.compute([*writes, *also])
    # Every write finished or failed before the caller may remove a half-written output: a
    # chunk task still running after a failure would write into the removed folder again.
    wait(futures)
    results = client.gather(futures)[len(writes):]
    for target in targets:
        target.attrs[ALL_CHUNKS_WRITTEN] = True
    return list(results)


def block_digests(raw: da.Array) -> list[Delayed]:
    """One SHA-256 task per block of `raw`, on the same keys as the graph that stores it."""
    digest = dask.delayed(block_sha256, pure=True)
    return [digest(block) for block in raw.to_delayed(optimize_graph=False).ravel()]


def pixels(images: da.Array, pixel_range: int | None, where: str, layout: Layout) -> da.Array:
    """uint8 (N, 784) in the store's chunk rows, checked and converted per block."""
    flat = flat_images(images.rechunk((layout.chunk_rows, *images.shape[1:])))

    def convert(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        start = block_info[0]["array-location"][0][0] if block_info else 0
        return to_pixels(block, pixel_range, where, start)
    return da.map_blocks(convert, flat, dtype=np.uint8)


def labels_of(labels: da.Array, where: str, layout: Layout) -> da.Array:
    """uint8 (N,) in the store's chunk rows, each block checked to hold digits 0-9."""
    def convert(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        start = block_info[0]["array-location"][0][0] if block_info else 0
        return to_labels(block, where, start)
    return da.map_blocks(convert, labels.rechunk(layout.chunk_rows), dtype=np.uint8)


def write_array_split(client: Client, split: zarr.Group, images: da.Array,
                      labels: da.Array | None, layout: Layout,
                      digests: dict[str, list[Delayed]]) -> dict[str, str]:
    """Store checked images (and labels) into `split`; returns the content SHA-256 of each
    source in `digests` (its blocks' digests, combined)."""
    n = int(images.shape[0])
    pairs = [(images, new_array(split, "images", (n, N_PIXELS), np.uint8, layout))]
    if labels is not None:
        pairs.append((labels, new_array(split, "labels", (n,), np.uint8, layout)))
    results = iter(store_all(client, pairs, [d for blocks in digests.values() for d in blocks]))
    return {source: combined_sha256([next(results) for _ in blocks])
            for source, blocks in digests.items()}


def stage_files(client: Client, files: Sequence[str], labels: Sequence[int] | None,
                location: str, partition_files: int, layout: Layout,
                save_dir: str | None = None, save_as: Sequence[str] | None = None) -> zarr.Group:
    """Preprocess every file on the workers into a staging group created at `location` (one
    task per partition; each digit saved as `save_dir/save_as[i]` when given); returns it."""
    n = len(files)
    staging = zarr.open_group(location, mode="w-")
    dtypes = {"images": np.uint8, "ok": bool, "reason": STRINGS, "file": STRINGS,
              "labels": np.uint8}
    for name, dtype in dtypes.items():
        shape = (n, N_PIXELS) if name == "images" else (n,)
        new_array(staging, name, shape, dtype, layout, chunk_rows=partition_files)
    starts = range(0, n, partition_files)
    futures = client.map(
        stage_partition, [files[s : s + partition_files] for s in starts],
        [labels[s : s + partition_files] if labels is not None else None for s in starts],
        list(starts), [save_as[s : s + partition_files] if save_as is not None else None
                       for s in starts],
        staging=location, save_dir=save_dir, pure=False,
    )
    for future in as_completed(futures):
        future.result()  # re-raises a worker's error; the counts are not needed here
    return staging


def compact_staged(client: Client, staging: zarr.Group, split: zarr.Group, layout: Layout,
                   with_labels: bool) -> tuple[int, int]:
    """Usable staged rows into `split` (images, ids, labels), failures into `split/failures`;
    returns (usable, failed)."""
    location = staging.store_path  # the group's own store and path, as workers open it
    staged = {name: da.from_zarr(zarr.open_array(location / name, mode="r"))
              for name in ("images", "ok", "reason", "file", "labels")}
    ok = staged["ok"]
    kept = {"images": staged["images"][ok], "ids": staged["file"][ok]}
    if with_labels:
        kept["labels"] = staged["labels"][ok]
    failed = {"file": staged["file"][~ok], "reason": staged["reason"][~ok]}
    for group in (kept, failed):
        for name, array in group.items():
            group[name] = array.compute_chunk_sizes()
    n_ok, n_failed = int(kept["ids"].shape[0]), int(failed["file"].shape[0])
    pairs = []
    if n_ok:
        for name, array in kept.items():
            target = new_array(split, name, array.shape, array.dtype, layout)
            pairs.append((array.rechunk(target.chunks), target))
    failures = split.create_group("failures")
    for name, array in failed.items():
        target = new_array(failures, name, (n_failed,), STRINGS, layout)
        if n_failed:
            pairs.append((array.rechunk(target.chunks), target))
    store_all(client, pairs)
    return n_ok, n_failed

