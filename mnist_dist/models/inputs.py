"""The input contract shared by both predictors: raw uint8 pixels of shape (n, 784)."""

from __future__ import annotations

import numpy as np

from mnist_dist.errors import DataError

N_PIXELS = 784
N_CLASSES = 10


def check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    """Return `images` as contiguous uint8 (n, 784), flattening (n, 28, 28); DataError otherwise."""
    if images.dtype == np.uint8 and images.ndim == 3 and images.shape[1:] == (28, 28):
        images = images.reshape(len(images), N_PIXELS)
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != N_PIXELS:
        raise DataError(
            f"{name} must be uint8 of shape (n, {N_PIXELS}); "
            f"got {images.dtype} {images.shape} instead"
        )
    return np.ascontiguousarray(images)
