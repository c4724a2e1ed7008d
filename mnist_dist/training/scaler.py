"""The standardisation both models share, fitted on the training images in memory."""

from __future__ import annotations

import dask.array as da
import dask.config
import numpy as np

from mnist_dist.models.scaler import Scaler


def fit_scaler(images: np.ndarray, chunk_rows: int) -> Scaler:
    """StandardScaler (dask-ml) fitted on training images uint8 (n, 784) held in memory.

    Reduced over blocks of `chunk_rows` rows, the store's chunks: the same float64 sums in the
    same order as a fit on the split read from the store, so the same scaler to the bit.
    """
    from dask_ml.preprocessing import StandardScaler

    blocks = da.from_array(images, chunks=(chunk_rows, images.shape[1]))
    # This process's threads, never a distributed Client that happens to be the default: the
    # images are in this process.
    with dask.config.set(scheduler="threads"):
        fitted = StandardScaler().fit(blocks.astype(np.float64))
    return Scaler.from_moments(np.asarray(fitted.mean_), np.asarray(fitted.var_))
