"""The per-partition work of an image run: pure NumPy/PIL functions that know no Dask.

`score_files` reads, preprocesses and scores one partition of files; `sheet_entries` makes the
contact-sheet thumbnails of a few; `choose_sheet` picks which files the sheet shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.atomic import write_bytes_new
from mnist_dist.errors import ImageInputError
from mnist_dist.images.preprocess import (
    MAX_PIXELS,
    SIDE,
    load_image,
    preprocess,
    thumbnail_png,
    to_png,
)
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelPayload, Predictors, load_predictors


@dataclass(frozen=True)
class ImageTask:
    """One file as a task carries it: its row index, path, label and preprocessed PNG name."""

    index: int
    path: str
    label: int | None = None
    save_as: str | None = None


@dataclass(frozen=True)
class ImageRow:
    """The answer for one file: both models' digits and the MLP's top two, or an error."""

    index: int
    file: str
    label: int | None
    knn: int | None = None
    mlp: int | None = None
    mlp_probability: float | None = None
    runner_up: int | None = None
    runner_up_probability: float | None = None
    error: str | None = None


def partitions(items: Sequence[ImageTask], size: int) -> list[list[ImageTask]]:
    """`items` cut into consecutive lists of at most `size`."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def score_files(
    tasks: Sequence[ImageTask], ref: ModelRef, ort_threads: int = 1,
    save_dir: str | None = None, max_pixels: int = MAX_PIXELS,
    payload: ModelPayload | None = None,
) -> list[ImageRow]:
    """Read, preprocess and score one partition of files; runs on a worker, knows no Dask.

    Both models see the whole partition as one uint8 (n, 784) batch; a file that fails gets
    its error in its row. Preprocessed digits are written to `save_dir` when given. The models
    come from `payload` when the client shipped them (workers that cannot read `ref`).
    """
    digits: list[np.ndarray] = []
    scored: list[ImageTask] = []
    rows: dict[int, ImageRow] = {}
    for task in tasks:
        try:
            digit = read_digit(task, save_dir, max_pixels)
        except ImageInputError as exc:
            rows[task.index] = ImageRow(task.index, task.path, task.label, error=str(exc))
            continue
        digits.append(digit.reshape(SIDE * SIDE))
        scored.append(task)
    if scored:
        predictors = load_predictors(ref, ort_threads, payload)
        rows.update((row.index, row) for row in predict_rows(scored, np.stack(digits), predictors))
    return [rows[task.index] for task in tasks]


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


def predict_rows(
    tasks: Sequence[ImageTask], batch: np.ndarray, predictors: Predictors
) -> list[ImageRow]:
    """One row per task from both models' answers on `batch`, uint8 (n, 784), in task order."""
    knn = predictors.knn.predict(batch)
    proba = predictors.mlp.predict_proba(batch)
    top2 = np.argsort(-proba, axis=1, kind="stable")[:, :2]
    rows = []
    for k, task in enumerate(tasks):
        first, second = int(top2[k, 0]), int(top2[k, 1])
        rows.append(ImageRow(
            task.index, task.path, task.label, knn=int(knn[k]), mlp=first,
            mlp_probability=float(proba[k, first]), runner_up=second,
            runner_up_probability=float(proba[k, second]),
        ))
    return rows


def sheet_entries(
    tasks: Sequence[ImageTask], max_pixels: int = MAX_PIXELS
) -> list[dict[str, Any]]:
    """Contact-sheet material of a few files: PNG thumbnails of the original and the 28x28."""
    entries = []
    for task in tasks:
        try:
            image = load_image(Path(task.path), max_pixels)
            digit = preprocess(image)
        except ImageInputError:
            continue  # changed since it was scored; the sheet simply omits it
        entries.append({
            "index": task.index,
            "original_png": thumbnail_png(image),
            "preprocessed_png": to_png(digit),
        })
    return entries


def choose_sheet(rows: Sequence[ImageRow], limit: int) -> list[int]:
    """Row indices for the contact sheet: mistakes first, then disagreements, then the rest."""
    def priority(row: ImageRow) -> int:
        if row.label is not None and (row.knn != row.label or row.mlp != row.label):
            return 0
        return 1 if row.knn != row.mlp else 2

    scored = [row for row in rows if row.error is None]
    return [row.index for row in sorted(scored, key=lambda r: (priority(r), r.index))[:limit]]
