"""The per-file and per-partition work of image files, pure NumPy/PIL that knows no Dask:
`read_digit` (one file → its MNIST-style digit, saved for --save-preprocessed),
`preprocess_files` (a batch of files → digits, flags, reasons) and `stage_partition` (a batch
written into the staging arrays). `mnist_dist.images.staging` runs them on the workers,
partition by partition, for `jobs.ingest` and `jobs.score --images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_dist.atomic import write_bytes_new
from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import zarr_array
from mnist_dist.errors import ImageInputError
from mnist_dist.images.preprocess import MAX_PIXELS, load_image, preprocess, to_png

STAGED = ("images", "ok", "reason", "file", "labels")


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


def preprocess_files(paths: Sequence[str], save_dir: str | None = None,
                     save_as: Sequence[str] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits uint8 (n, 784) (zero where a file failed), ok bool (n,), reasons str (n,); each
    digit also saved as `save_dir/save_as[k]` PNG when given (jobs.score --save-preprocessed)."""
    digits = np.zeros((len(paths), N_PIXELS), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    reasons = np.full(len(paths), "", dtype=np.dtypes.StringDType())
    for k, path in enumerate(paths):
        try:
            task = ImageTask(k, path, save_as=save_as[k] if save_as is not None else None)
            digits[k] = read_digit(task, save_dir, MAX_PIXELS).reshape(N_PIXELS)
            ok[k] = True
        except ImageInputError as exc:
            reasons[k] = str(exc)
    return digits, ok, reasons


def stage_partition(paths: Sequence[str], labels: Sequence[int] | None, start: int,
                    save_as: Sequence[str] | None = None, *, staging: str,
                    save_dir: str | None = None) -> int:
    """Task body: preprocess `paths` and write rows `start…start+n` of the staging arrays
    (`STAGED`), so nothing per file travels back to the client; returns how many were usable."""
    digits, ok, reasons = preprocess_files(paths, save_dir, save_as)
    stop = start + len(paths)
    values = {"images": digits, "ok": ok, "reason": reasons,
              "file": np.array(paths, dtype=np.dtypes.StringDType()),
              "labels": np.asarray(labels if labels is not None else [0] * len(paths), np.uint8)}
    for name in STAGED:
        zarr_array(staging, name, mode="r+")[start:stop] = values[name]
    return int(ok.sum())
