"""Per-partition functions of the scoring graph: pure NumPy in, NumPy out, no Dask.

Tasks carry only a `ModelRef` (a path and checksums); the predictors come from the
per-process cache, so each worker loads each model once.
"""

from __future__ import annotations

import numpy as np

from mnist_dist.metrics import confusion_matrix
from mnist_dist.models.artifacts import ModelRef, load_predictors

MODEL_NAMES = ("knn", "mlp")


def predict_partition(
    images: np.ndarray, model: str, ref: ModelRef, ort_threads: int = 1
) -> np.ndarray:
    """Predicted digits, uint8 (n,), of one partition of raw pixels uint8 (n, 784)."""
    predictors = load_predictors(ref, ort_threads)
    if model == "knn":
        return predictors.knn.predict(images)
    if model == "mlp":
        return predictors.mlp.predict(images)
    raise ValueError(f"model must be one of {MODEL_NAMES}; got {model!r} instead")


def partition_confusion(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Confusion counts of one partition, shaped (1, 10, 10) so partitions stack along axis 0."""
    return confusion_matrix(labels, predictions)[None]


def partition_misclassified(
    labels: np.ndarray, predictions: np.ndarray, offset: int, limit: int
) -> np.ndarray:
    """Up to `limit` misclassified rows of a partition as (1, limit, 3) int64 rows
    (global index, true digit, predicted digit), padded with -1."""
    out = np.full((1, limit, 3), -1, dtype=np.int64)
    wrong = np.flatnonzero(labels != predictions)[:limit]
    out[0, : len(wrong)] = np.stack([wrong + offset, labels[wrong], predictions[wrong]], axis=1)
    return out
