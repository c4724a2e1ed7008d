"""Classification metrics on NumPy arrays: confusion matrices and per-class accuracy."""

from __future__ import annotations

from typing import Any

import numpy as np

N_CLASSES = 10


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Counts (10, 10) int64; rows are the true digit, columns the predicted one."""
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels and predictions must have the same shape; "
            f"got {labels.shape} and {predictions.shape} instead"
        )
    flat = labels.astype(np.int64) * N_CLASSES + predictions.astype(np.int64)
    return np.bincount(flat, minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def accuracy(confusion: np.ndarray) -> float:
    """Overall accuracy (0-1) from a confusion matrix; 0 when it is empty."""
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Recall of each digit (0-1), None for a digit absent from the labels."""
    support = confusion.sum(axis=1)
    return [
        float(confusion[d, d] / support[d]) if support[d] else None for d in range(N_CLASSES)
    ]


def accuracy_summary(confusion: np.ndarray) -> dict[str, Any]:
    """The report block of one model: accuracy, per-class accuracy, confusion (10x10) and count."""
    return {
        "accuracy": accuracy(confusion),
        "per_class_accuracy": per_class_accuracy(confusion),
        "confusion": confusion.astype(np.int64).tolist(),
        "n_images": int(confusion.sum()),
    }
