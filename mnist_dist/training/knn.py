"""The KNN's training: store the reference digits, save them, measure the test accuracy."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.models.artifacts import file_sha256
from mnist_dist.models.knn import KNN_ARRAYS, GemmKnn, KnnModel, save_knn
from mnist_dist.models.knn_index import KNN_INDEX, save_index
from mnist_dist.models.scaler import Scaler

log = logging.getLogger(__name__)

N_NEIGHBORS = 3


def train_knn(
    x_train: np.ndarray, y_train: np.ndarray, scaler: Scaler,
    x_test: np.ndarray, y_test: np.ndarray, directory: Path,
) -> dict[str, Any]:
    """Fit (store) the KNN, save it, and measure its test accuracy with the fast backend;
    its manifest entry. Images uint8 (n, 784), labels uint8 (n,)."""
    start = time.perf_counter()
    model = KnnModel(x_train, y_train, scaler, n_neighbors=N_NEIGHBORS)
    save_knn(model, directory)
    seconds = time.perf_counter() - start
    log.info("KNN saved (%d reference rows); scoring the test split", len(x_train))
    knn = GemmKnn(model)
    # The search's index, built once here, so that every worker that loads the model skips it.
    save_index(knn.index, file_sha256(directory / KNN_ARRAYS), directory / KNN_INDEX)
    accuracy = float((knn.predict(x_test) == y_test).mean())
    log.info("KNN test accuracy %.4f", accuracy)
    return {
        "train_seconds": seconds, "test_accuracy": accuracy,
        "params": {"n_neighbors": N_NEIGHBORS, "weights": "uniform", "metric": "euclidean"},
        "artifacts": ["knn.npz", "knn.json"],
    }
