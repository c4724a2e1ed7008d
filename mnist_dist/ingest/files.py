"""Image files of an ingest: the per-partition task that preprocesses them on a worker.

Pure apart from its writes: a partition's digits, flags, reasons, paths and labels go into the
staging arrays (rows `start…start+n`), so nothing per file travels back to the client.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import zarr_array
from mnist_dist.errors import ImageInputError
from mnist_dist.images.preprocess import MAX_PIXELS
from mnist_dist.images.tasks import ImageTask, read_digit

STAGED = ("images", "ok", "reason", "file", "labels")


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
    """Task body: preprocess `paths` and write rows `start…` of the staging arrays; returns
    how many files were usable."""
    digits, ok, reasons = preprocess_files(paths, save_dir, save_as)
    stop = start + len(paths)
    values = {"images": digits, "ok": ok, "reason": reasons,
              "file": np.array(paths, dtype=np.dtypes.StringDType()),
              "labels": np.asarray(labels if labels is not None else [0] * len(paths), np.uint8)}
    for name in STAGED:
        zarr_array(staging, name, mode="r+")[start:stop] = values[name]
    return int(ok.sum())
