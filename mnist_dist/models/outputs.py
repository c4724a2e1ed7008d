"""Each model's per-row outputs on a NumPy batch (digits, probabilities, neighbours), no Dask.

Tasks carry only a `ModelRef` (location and checksums) and, when the workers cannot read the
models themselves, a once-per-worker broadcast payload; the predictors come from the
per-process cache, so each worker loads each model once.
"""

from __future__ import annotations

import time

import numpy as np

from mnist_dist.errors import SpecError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelPayload, Predictors, load_predictors
from mnist_dist.models.knn import GemmKnn, vote
from mnist_dist.models.mlp import OnnxMlp

MODEL_NAMES = ("knn", "mlp")
# The predictions store's per-row arrays of each model: (name, dtype, columns; 0 for (N,)).
OUTPUT_ARRAYS: dict[str, tuple[tuple[str, str, int], ...]] = {
    "knn": (("knn", "uint8", 0), ("knn_neighbours", "int64", 3), ("knn_distances", "float32", 3)),
    "mlp": (("mlp", "uint8", 0), ("mlp_probabilities", "float32", 10)),
}


def check_model_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Validate a model selection: a non-empty subset of MODEL_NAMES, in canonical order."""
    unknown = set(names) - set(MODEL_NAMES)
    if not names or unknown:
        raise SpecError(f"models must be a non-empty subset of {MODEL_NAMES}; got {names!r}")
    return tuple(name for name in MODEL_NAMES if name in names)


def predict_with(predictors: Predictors, model: str, images: np.ndarray) -> np.ndarray:
    """Predicted digits, uint8 (n,), of raw pixels uint8 (n, 784) by one model."""
    if model == "knn":
        return predictors.knn.predict(images)
    if model == "mlp":
        return predictors.mlp.predict(images)
    raise ValueError(f"model must be one of {MODEL_NAMES}; got {model!r} instead")


def predict_partition(
    images: np.ndarray, model: str, ref: ModelRef, ort_threads: int = 1,
    payload: ModelPayload | None = None,
) -> np.ndarray:
    """Predicted digits, uint8 (n,), of one partition by the cached model `model`."""
    return predict_with(load_predictors(ref, ort_threads, payload), model, images)


def knn_outputs(knn: GemmKnn, images: np.ndarray) -> dict[str, np.ndarray]:
    """The KNN's digits uint8 (n,), neighbours int64 (n, k) nearest first (rows of its
    reference set) and their standardised distances float32 (n, k), ascending (the search's
    own exact float64 distances, rounded once)."""
    if not len(images):
        k = knn.model.n_neighbors
        return {"knn": np.empty(0, np.uint8), "knn_neighbours": np.empty((0, k), np.int64),
                "knn_distances": np.empty((0, k), np.float32)}
    distances, neighbours = knn.kneighbors(images)
    return {"knn": vote(knn.model.labels[neighbours]),
            "knn_neighbours": neighbours.astype(np.int64), "knn_distances": distances}


def mlp_outputs(mlp: OnnxMlp, images: np.ndarray) -> dict[str, np.ndarray]:
    """The MLP's digits uint8 (n,) and softmax probabilities float32 (n, 10)."""
    probabilities = mlp.predict_proba(images)
    return {"mlp": probabilities.argmax(axis=1).astype(np.uint8),
            "mlp_probabilities": probabilities}


def timed_outputs(
    predictors: Predictors, models: tuple[str, ...], images: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every per-row output array of each model (see OUTPUT_ARRAYS) and the seconds each
    model took."""
    outputs: dict[str, np.ndarray] = {}
    seconds = {}
    for name in models:
        start = time.perf_counter()
        if name == "knn":
            outputs.update(knn_outputs(predictors.knn, images))
        else:
            outputs.update(mlp_outputs(predictors.mlp, images))
        seconds[name] = time.perf_counter() - start
    return outputs, seconds


