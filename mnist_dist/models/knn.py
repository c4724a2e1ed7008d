"""Exact k-nearest-neighbours on standardised pixels (scikit-learn `KNeighborsClassifier` semantics).

Two backends with identical predictions:
- `gemm` (default): blocked float32 GEMM with the ‖y‖² − 2x·y expansion picks a shortlist per
  query, then exact float64 distances rank it. A per-query error bound proves the shortlist holds
  the true k nearest; queries where it cannot be proven fall back to exact float64 over all rows.
- `sklearn`: the reference, `KNeighborsClassifier(n_neighbors, algorithm="brute")`.
Ties: equal distances rank the lower reference index first; a tied vote picks the lower digit.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_dist.errors import ModelNotFoundError
from mnist_dist.models.inputs import N_CLASSES, check_images
from mnist_dist.models.scaler import Scaler

log = logging.getLogger(__name__)

KNN_ARRAYS = "knn.npz"
KNN_PARAMS = "knn.json"
# |fl32(2x·y) − 2x·y| ≤ 784·2⁻²⁴·(‖x‖² + ‖y‖²) < 1e-4·(‖x‖² + ‖y‖²) for 784-long float32 dot products.
GEMM_ERROR_BOUND = 1e-4
FULL_SCAN_ROWS = 8192
SELECT_GROUP = 64


@dataclass(frozen=True)
class KnnModel:
    """A fitted KNN: raw training pixels, their labels and the scaler.

    reference : uint8 (n_ref, 784); labels : uint8 (n_ref,)
    """

    reference: np.ndarray
    labels: np.ndarray
    scaler: Scaler
    n_neighbors: int = 3

    def __post_init__(self) -> None:
        check_images(self.reference, "reference")
        if self.labels.shape != (len(self.reference),) or self.labels.dtype != np.uint8:
            raise ValueError(
                f"labels must be uint8 of shape ({len(self.reference)},); "
                f"got {self.labels.dtype} {self.labels.shape} instead"
            )
        if not 1 <= self.n_neighbors <= len(self.reference):
            raise ValueError(
                f"n_neighbors must be in [1, {len(self.reference)}]; got {self.n_neighbors}"
            )


def save_knn(model: KnnModel, directory: Path) -> list[Path]:
    """Write `knn.npz` (arrays) and `knn.json` (parameters) into `directory`."""
    arrays_path, params_path = directory / KNN_ARRAYS, directory / KNN_PARAMS
    with arrays_path.open("wb") as f:
        np.savez_compressed(
            f, reference=model.reference, labels=model.labels,
            mean=model.scaler.mean, scale=model.scaler.scale,
        )
    params = {
        "n_neighbors": model.n_neighbors, "weights": "uniform", "metric": "euclidean",
        "n_reference": len(model.reference), "preprocessing": "standard_scaler",
    }
    params_path.write_text(json.dumps(params, indent=2) + "\n")
    return [arrays_path, params_path]


def load_knn(directory: Path) -> KnnModel:
    """Read a KNN saved by `save_knn` (no pickle)."""
    arrays_path, params_path = directory / KNN_ARRAYS, directory / KNN_PARAMS
    for path in (arrays_path, params_path):
        if not path.is_file():
            raise ModelNotFoundError(f"{path}: KNN model file not found; run `python -m jobs.train`")
    return knn_from_bytes(arrays_path.read_bytes(), params_path.read_bytes())


def knn_from_bytes(arrays: bytes, params: bytes) -> KnnModel:
    """Build a KNN from the bytes of `knn.npz` and `knn.json` (no pickle)."""
    n_neighbors = int(json.loads(params)["n_neighbors"])
    with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
        scaler = Scaler(npz["mean"], npz["scale"])
        return KnnModel(npz["reference"], npz["labels"], scaler, n_neighbors)


def vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority label per row of (n, k) labels; ties go to the lower digit. Returns uint8 (n,)."""
    counts = np.zeros((len(neighbour_labels), N_CLASSES), dtype=np.int32)
    rows = np.repeat(np.arange(len(neighbour_labels)), neighbour_labels.shape[1])
    np.add.at(counts, (rows, neighbour_labels.ravel()), 1)
    return counts.argmax(axis=1).astype(np.uint8)


class GemmKnn:
    """The fast exact backend; build once per process and share (predict is read-only)."""

    def __init__(self, model: KnnModel, block_rows: int = 256, shortlist: int = 16) -> None:
        self.model = model
        self.block_rows = block_rows
        n_ref = len(model.reference)
        # The shortlist must hold all k neighbours; with every row in it the search is exhaustive.
        self.shortlist = min(max(shortlist, model.n_neighbors), n_ref)
        # At least one padding column, so the (m + 1)-th score exists even when m = n_ref.
        n_padded = -(-(n_ref + 1) // SELECT_GROUP) * SELECT_GROUP
        # −2y in float32, padded to whole selection groups with rows that can never be chosen.
        self.reference_neg2 = np.zeros((n_padded, 784), dtype=np.float32)
        self.shifted_norms = np.full(n_padded, np.inf, dtype=np.float32)
        for start in range(0, n_ref, FULL_SCAN_ROWS):
            rows = self._scaled_reference(slice(start, start + FULL_SCAN_ROWS))
            self.reference_neg2[start : start + len(rows)] = -2.0 * rows
            # Shortlist score (1 − c)‖y‖² − 2x·y bounds the exact ‖y‖² − 2x·y from below (less c‖x‖²).
            norms = np.einsum("ij,ij->i", rows, rows)
            self.shifted_norms[start : start + len(rows)] = norms * (1.0 - GEMM_ERROR_BOUND)

    def _scaled_reference(self, rows: slice | np.ndarray) -> np.ndarray:
        """Standardised reference rows in float64, computed from the uint8 pixels on demand."""
        return self.model.scaler.transform(self.model.reference[rows], np.float64)

    def kneighbors(self, images: np.ndarray) -> np.ndarray:
        """Indices (n, k) of the k nearest reference rows, nearest first."""
        images = check_images(images)
        out = np.empty((len(images), self.model.n_neighbors), dtype=np.int64)
        for start in range(0, len(images), self.block_rows):
            block = images[start : start + self.block_rows]
            out[start : start + len(block)] = self._kneighbors_block(block)
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted digit, uint8 (n,), for raw uint8 pixels (n, 784)."""
        if len(images) == 0:
            check_images(images)
            return np.empty(0, dtype=np.uint8)
        return vote(self.model.labels[self.kneighbors(images)])

    def _kneighbors_block(self, block: np.ndarray) -> np.ndarray:
        k, m = self.model.n_neighbors, self.shortlist
        queries = self.model.scaler.transform(block, np.float64)
        query_norms = np.einsum("ij,ij->i", queries, queries)
        scores = queries.astype(np.float32) @ self.reference_neg2.T
        scores += self.shifted_norms
        candidates, pivot = select_smallest(scores, m)
        exact = self._exact_reduced(queries, candidates)
        order = np.lexsort((candidates, exact), axis=1)[:, :k]
        nearest = np.take_along_axis(candidates, order, axis=1)
        kth = np.take_along_axis(exact, order[:, -1:], axis=1)[:, 0]
        unproven = kth >= pivot.astype(np.float64) - GEMM_ERROR_BOUND * query_norms
        for row in np.flatnonzero(unproven):
            nearest[row] = self._kneighbors_full(queries[row])
        return nearest

    def _exact_reduced(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Exact float64 ‖x − y‖² − ‖x‖² for each (query, candidate) pair."""
        diff = self._scaled_reference(candidates) - queries[:, None, :]
        squared = np.einsum("ijk,ijk->ij", diff, diff)
        return squared - np.einsum("ij,ij->i", queries, queries)[:, None]

    def _kneighbors_full(self, query: np.ndarray) -> np.ndarray:
        """Exact float64 scan of every reference row for one query (the rare fallback)."""
        distances = np.empty(len(self.model.reference), dtype=np.float64)
        for start in range(0, len(distances), FULL_SCAN_ROWS):
            diff = self._scaled_reference(slice(start, start + FULL_SCAN_ROWS)) - query
            distances[start : start + len(diff)] = np.einsum("ij,ij->i", diff, diff)
        return np.lexsort((np.arange(len(distances)), distances))[: self.model.n_neighbors]


def select_smallest(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices (n, m) of the m smallest scores per row, and a lower bound (n,) of the rest.

    Selects among the m + 1 column groups with the smallest minima: they hold the m smallest
    entries, and the (m + 1)-th smallest entry among them bounds every entry left out.
    """
    n_rows, n_cols = scores.shape
    n_groups = n_cols // SELECT_GROUP
    rows = np.arange(n_rows)[:, None]
    if n_groups <= m + 1:
        part = np.argpartition(scores, m, axis=1)
        return part[:, :m], scores[rows[:, 0], part[:, m]]
    group_minima = scores.reshape(n_rows, n_groups, SELECT_GROUP).min(axis=2)
    groups = np.argpartition(group_minima, m, axis=1)[:, : m + 1]
    columns = (groups[:, :, None] * SELECT_GROUP + np.arange(SELECT_GROUP)).reshape(n_rows, -1)
    gathered = scores[rows, columns]
    part = np.argpartition(gathered, m, axis=1)
    return columns[rows, part[:, :m]], gathered[rows, part[:, m : m + 1]][:, 0]


def predict_sklearn(model: KnnModel, images: np.ndarray) -> np.ndarray:
    """The scikit-learn reference prediction, uint8 (n,)."""
    from sklearn.neighbors import KNeighborsClassifier

    images = check_images(images)
    classifier = KNeighborsClassifier(n_neighbors=model.n_neighbors, algorithm="brute")
    classifier.fit(model.scaler.transform(model.reference, np.float32), model.labels)
    return classifier.predict(model.scaler.transform(images, np.float32)).astype(np.uint8)
