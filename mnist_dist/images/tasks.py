"""The per-file work of an image run, a pure NumPy/PIL function that knows no Dask: `read_digit`
(one file → its MNIST-style digit, saved for --save-preprocessed). `mnist_dist.ingest.files`
runs it on the workers, partition by partition, for `jobs.ingest` and `jobs.score --images`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_dist.atomic import write_bytes_new
from mnist_dist.errors import ImageInputError
from mnist_dist.images.preprocess import load_image, preprocess, to_png


@dataclass(frozen=True)
class ImageTask:
    """One file as a task carries it: its row index, path, label and preprocessed PNG name."""

    index: int
    path: str
    label: int | None = None
    save_as: str | None = None


def read_digit(task: ImageTask, save_dir: str | None, max_pixels: int) -> np.ndarray:
    """The file's MNIST-style digit, uint8 (28, 28), saved as `save_dir/save_as` when given.

    ImageInputError gives the reason without the file name (the row names the file).
    """
    try:
        digit = preprocess(load_image(Path(task.path), max_pixels))
    except ImageInputError as exc:
        raise ImageInputError(str(exc).removeprefix(f"{task.path}: ")) from exc
    if save_dir is not None and task.save_as is not None:
        target = Path(save_dir) / task.save_as
        try:
            write_bytes_new(target, to_png(digit))
        except OSError as exc:  # includes an existing file this run did not write
            raise ImageInputError(f"cannot save preprocessed {target} ({exc})") from exc
    return digit
