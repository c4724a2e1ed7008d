"""What each partition reports about its predictions without labels, and their combination.

Per partition (pure NumPy in, JSON-ready dicts out): predicted-digit counts per model, the
KNN/MLP agreement matrix, a histogram of the MLP's top probability, the counts under the
confidence thresholds, and bounded samples (the least confident MLP predictions, the first
disagreements). The client sums the counts and merges the samples: it never holds predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_CLASSES = 10
CONFIDENCE_BINS = 20  # equal-width bins of the MLP's top probability over [0, 1]
THRESHOLDS = (0.5, 0.9)  # shares of predictions whose top probability is below each


@dataclass(frozen=True)
class PredictionSummary:
    """The run's label-free summary: counts (10,) per model, agreement (10, 10) (rows KNN,
    columns MLP), confidence histogram (CONFIDENCE_BINS,) and counts under THRESHOLDS, samples.

    Each sample row is a dict: index, the digits (knn, mlp), probability (the MLP's top) and
    neighbours and distances (the KNN's, nearest first); `true` too when the split has labels.
    """

    predicted: dict[str, np.ndarray | None]
    agreement: np.ndarray | None = None
    confidence: np.ndarray | None = None
    under: np.ndarray | None = None
    least_confident: list[dict[str, Any]] = field(default_factory=list)
    disagreements: list[dict[str, Any]] = field(default_factory=list)


def digit_counts(digits: np.ndarray) -> np.ndarray:
    """How many of `digits` uint8 (n,) are each digit: int64 (10,)."""
    return np.bincount(digits, minlength=N_CLASSES).astype(np.int64)[:N_CLASSES]


def agreement_matrix(knn: np.ndarray, mlp: np.ndarray) -> np.ndarray:
    """int64 (10, 10) counts of (KNN digit, MLP digit) pairs; the diagonal is agreement."""
    return np.bincount(knn.astype(np.int64) * N_CLASSES + mlp,
                       minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)


def confidence_histogram(top: np.ndarray) -> np.ndarray:
    """int64 (CONFIDENCE_BINS,) counts of top probabilities (n,) in equal bins over [0, 1]."""
    bins = np.clip((top.astype(np.float64) * CONFIDENCE_BINS).astype(np.int64), 0,
                   CONFIDENCE_BINS - 1)
    return np.bincount(bins, minlength=CONFIDENCE_BINS).astype(np.int64)


def sample_row(outputs: dict[str, np.ndarray], row: int, offset: int) -> dict[str, Any]:
    """One sampled prediction as JSON: global index, each model's digit, the MLP's top
    probability and the KNN's neighbours with their distances, where those models ran."""
    item: dict[str, Any] = {"index": int(row + offset)}
    if "knn" in outputs:
        item["knn"] = int(outputs["knn"][row])
        item["neighbours"] = [int(n) for n in outputs["knn_neighbours"][row]]
        item["distances"] = [float(d) for d in outputs["knn_distances"][row]]
    if "mlp" in outputs:
        item["mlp"] = int(outputs["mlp"][row])
        item["probability"] = float(outputs["mlp_probabilities"][row].max())
    return item


def prediction_summary(
    outputs: dict[str, np.ndarray], offset: int, limit: int
) -> dict[str, Any]:
    """JSON-ready label-free summary of one partition's outputs (see `timed_outputs`)."""
    summary: dict[str, Any] = {
        "predicted": {name: digit_counts(outputs[name]).tolist()
                      for name in ("knn", "mlp") if name in outputs},
        "agreement": None, "confidence": None, "under": None,
        "least_confident": [], "disagreements": [],
    }
    if "mlp" in outputs:
        top = outputs["mlp_probabilities"].max(axis=1, initial=0.0)
        summary["confidence"] = confidence_histogram(top).tolist()
        summary["under"] = [int((top < t).sum()) for t in THRESHOLDS]
        order = np.lexsort((np.arange(len(top)), top))[:limit]
        summary["least_confident"] = [sample_row(outputs, int(r), offset) for r in order]
    if "knn" in outputs and "mlp" in outputs:
        summary["agreement"] = agreement_matrix(outputs["knn"], outputs["mlp"]).tolist()
        differ = np.flatnonzero(outputs["knn"] != outputs["mlp"])[:limit]
        summary["disagreements"] = [sample_row(outputs, int(r), offset) for r in differ]
    return summary


def summed(parts: list[Any]) -> np.ndarray | None:
    """The element-wise sum of JSON count arrays (None when the partitions have none)."""
    present = [np.asarray(p, dtype=np.int64) for p in parts if p is not None]
    return np.sum(present, axis=0) if present else None


def combine_summaries(markers: list[dict[str, Any]], models: tuple[str, ...],
                      limit: int) -> PredictionSummary:
    """The run's summary from its partitions' (in partition order): counts summed, the
    `limit` least confident overall (ties by index) and the first `limit` disagreements."""
    candidates = [row for m in markers for row in m["least_confident"]]
    candidates.sort(key=lambda row: (row["probability"], row["index"]))
    return PredictionSummary(
        predicted={n: summed([m["predicted"][n] for m in markers]) for n in models},
        agreement=summed([m["agreement"] for m in markers]),
        confidence=summed([m["confidence"] for m in markers]),
        under=summed([m["under"] for m in markers]),
        least_confident=candidates[:limit],
        disagreements=[row for m in markers for row in m["disagreements"]][:limit],
    )
