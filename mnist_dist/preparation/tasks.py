"""Per-partition work of the expand graph: pure NumPy in, NumPy out, no Dask (the deformation
itself is `mnist_dist.data.expand`)."""

from __future__ import annotations

import numpy as np

from mnist_dist.data.expand import (
    BATCH_ROWS,
    N_PIXELS,
    SIDE,
    DeformParams,
    Workspace,
    bilinear,
    digit_draws,
    sampling_positions,
)


def generate_partition(
    source_images: np.ndarray,
    source_labels: np.ndarray,
    start: int,
    stop: int,
    seed: int,
    params: DeformParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Expanded digits start..stop-1: images uint8 (stop - start, 784), labels uint8 (stop - start,).

    source_images : uint8 (n_source, 784); source_labels : uint8 (n_source,). Digit i deforms
    source row i mod n_source with `digit_draws(seed, i, i + 1)`.
    """
    n_source = len(source_images)
    if n_source == 0 or source_labels.shape != (n_source,):
        raise ValueError(
            f"source must be non-empty images (n, 784) with labels (n,); "
            f"got {source_images.shape} and {source_labels.shape} instead"
        )
    images = np.empty((stop - start, N_PIXELS), dtype=np.uint8)
    rows = np.arange(start, stop) % n_source
    ws = Workspace(BATCH_ROWS)
    for first in range(start, stop, BATCH_ROWS):
        last = min(first + BATCH_ROWS, stop)
        k = slice(first - start, last - start)
        draws = digit_draws(seed, first, last, out=ws.draws[: last - first])
        sampling_positions(draws, params, ws)
        pixels = source_images[rows[k]].reshape(-1, SIDE, SIDE)
        bilinear(pixels, ws, images[k].reshape(-1, SIDE, SIDE))
    return images, np.asarray(source_labels[rows], dtype=np.uint8)
