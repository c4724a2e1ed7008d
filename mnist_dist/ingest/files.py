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


def preprocess_files(paths: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits uint8 (n, 784) (zero where a file failed), ok bool (n,), reasons str (n,)."""
    digits = np.zeros((len(paths), N_PIXELS), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    reasons = np.full(len(paths), "", dtype=np.dtypes.StringDType())
    for k, path in enumerate(paths):
        try:
            digits[k] = read_digit(ImageTask(k, path), None, MAX_PIXELS).reshape(N_PIXELS)
            ok[k] = True
        except ImageInputError as exc:
            reasons[k] = str(exc)
    return digits, ok, reasons


def stage_partition(paths: Sequence[str], labels: Sequence[int] | None, start: int,
                    staging: str) -> int:
    """Task body: preprocess `paths` and write rows `start…` of the staging arrays; returns
    how many files were usable."""
    digits, ok, reasons = preprocess_files(paths)
    stop = start + len(paths)
    values = {"images": digits, "ok": ok, "reason": reasons,
              "file": np.array(paths, dtype=np.dtypes.StringDType()),
              "labels": np.asarray(labels if labels is not None else [0] * len(paths), np.uint8)}
    for name in STAGED:
        zarr_array(staging, name, mode="r+")[start:stop] = values[name]
    return int(ok.sum())
