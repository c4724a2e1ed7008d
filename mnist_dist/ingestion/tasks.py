"""The per-block work of an ingest of arrays, pure NumPy that knows no Dask: pixels checked and
converted to uint8 (`to_pixels`), optionally preprocessed MNIST-style like image files
(`preprocess_digits`), labels checked to be digits (`to_labels`), and each block's SHA-256
(`block_sha256`). `graph` maps them over the source's blocks on the workers; the
per-partition work of image files is `mnist_dist.images.tasks`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mnist_dist.errors import DataError, ImageInputError
from mnist_dist.images.preprocess import preprocess_array


def to_pixels(block: np.ndarray, pixel_range: int | None, where: str, start: int) -> np.ndarray:
    """uint8 (n, 784) from a block of uint8 or float pixels in 0..`pixel_range`; DataError
    naming the rows when a float is NaN, inf or outside the range."""
    if block.dtype == np.uint8:
        return block
    assert pixel_range is not None  # check_images_array refused floats without it
    finite = np.isfinite(block)
    bad = ~finite.all(axis=1) | ((block < 0) | (block > pixel_range)).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        what = "NaN or inf" if not finite[row].all() else "a value outside that range"
        raise DataError(
            f"{where}: pixels must be finite numbers from 0 to {pixel_range}; got {what} in "
            f"row {start + row} ({int(bad.sum())} such rows in {start}-{start + len(block) - 1})"
        )
    return np.rint(block * (255.0 / pixel_range)).astype(np.uint8)


def preprocess_digits(block: np.ndarray, where: str, start: int) -> np.ndarray:
    """Each uint8 (784,) row of `block` preprocessed as an image file's digit: uint8 (n, 784).

    A row with no ink to find (blank, or too faint) refuses the whole ingest with a DataError
    naming it, as a bad pixel does: kept as zeros, it would be scored as if it were a digit.
    """
    digits = np.empty_like(block)
    blank = []
    for row, pixels in enumerate(block):
        try:
            digits[row] = preprocess_array(pixels).reshape(-1)
        except ImageInputError:
            blank.append(row)
    if blank:
        raise DataError(
            f"{where}: --preprocess needs a digit in every row; row {start + blank[0]} has no "
            f"ink that stands out from its background ({len(blank)} such rows in "
            f"{start}-{start + len(block) - 1}); remove those rows or ingest without --preprocess"
        )
    return digits


def to_labels(block: np.ndarray, where: str, start: int) -> np.ndarray:
    """uint8 (n,) from integer digits; DataError naming the first one outside 0-9."""
    bad = np.flatnonzero((block < 0) | (block > 9))
    if bad.size:
        raise DataError(f"{where}: labels must be digits 0-9; got {block[bad[0]]} "
                        f"at row {start + int(bad[0])}")
    return block.astype(np.uint8)


def block_sha256(block: np.ndarray) -> bytes:
    """SHA-256 of a block's values (C order, its own dtype)."""
    return hashlib.sha256(np.ascontiguousarray(block).data).digest()
