"""Image files into a split on Dask, for `jobs.ingest` and `jobs.score --images`: preprocessed
per partition into staging arrays (`tasks.stage_partition`), then compacted on Dask: usable
rows into the split, failed files and their reasons into `failures/`. The client holds only
the file names it listed.

Also the split writing both ingests share (array sources too): `Layout` (a store's chunk rows
and compressors), `new_array` and `store_all` (lazy arrays written chunk by chunk).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed
from distributed import Client, as_completed, wait

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import ALL_CHUNKS_WRITTEN, EVERY_CHUNK, zarr_array
from mnist_dist.images.tasks import STAGED, stage_partition

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
              for name in STAGED}
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
