"""The Dask graph of an ingest of arrays: a split written aside in the store's layout.

Array sources are read, checked and converted (and preprocessed when asked) per block on the
workers (`tasks`), rechunked to the store's chunk rows and stored, with one SHA-256 task per
block of each Zarr source.
Image files take the staging graph of `mnist_dist.images.staging` instead.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.delayed import Delayed
from distributed import Client

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.images.staging import Layout, new_array, store_all
from mnist_dist.ingestion.sources import combined_sha256, flat_images
from mnist_dist.ingestion.tasks import block_sha256, preprocess_digits, to_labels, to_pixels


def block_digests(raw: da.Array) -> list[Delayed]:
    """One SHA-256 task per block of `raw`, on the same keys as the graph that stores it."""
    digest = dask.delayed(block_sha256, pure=True)
    return [digest(block) for block in raw.to_delayed(optimize_graph=False).ravel()]


def pixels(images: da.Array, pixel_range: int | None, where: str, layout: Layout,
           preprocess: bool = False) -> da.Array:
    """uint8 (N, 784) in the store's chunk rows, checked and converted per block, and each
    digit preprocessed MNIST-style when `preprocess`."""
    flat = flat_images(images.rechunk((layout.chunk_rows, *images.shape[1:])))

    def convert(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        start = block_info[0]["array-location"][0][0] if block_info else 0
        converted = to_pixels(block, pixel_range, where, start)
        return preprocess_digits(converted, where, start) if preprocess else converted
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
