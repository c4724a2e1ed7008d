"""Exact k-nearest-neighbours on standardised pixels (scikit-learn `KNeighborsClassifier` semantics).

Backends with identical predictions:
- `GemmKnn(search="bound")` (default): lower bounds of every distance by one small float32 GEMM
  (top principal components of the common pixels plus a residual norm; rare pixels exact through
  a sparse index), exact float64 distances only where a bound does not exceed the k-th, in the
  few groups of neighbouring references whose smallest bound does (`knn_bound`).
- `GemmKnn(search="shortlist")` (the former default, kept for comparison): blocked float32 GEMM
  with the ‖y‖² − 2x·y expansion over every pixel picks a shortlist per query, then exact float64
  distances rank it. A per-query error bound proves the shortlist holds the true k nearest;
  queries where it cannot be proven fall back to a compiled early-abandoning scan (`knn_scan`).
  The standardisation is fused into the reference (x_s·y_s = a·(y_s/σ) − μ·(y_s/σ) for raw
  pixels a), so a query block is only cast to float32, and each reference row's constant rides
  in the GEMM as one extra column. Queries are blocked by their last inked pixel, and each
  block's GEMM skips the pixel columns it leaves blank. The proof: a float32 score errs by at
  most c·(t‖a/σ‖² + ‖y_s‖²/t + |e|) for any t > 0 (c = GEMM_ERROR_BOUND, twice the worst case of
  a 788-long float32 dot product; e the row's constant). The reference part is subtracted from
  each constant ahead of time (rounded down), so every row outside the shortlist scores at least
  pivot − c·t‖a/σ‖²; when the k-th exact distance lies below that, the shortlist is proven.
- `sklearn`: the reference, `KNeighborsClassifier(n_neighbors, algorithm="brute")` on float64
  standardised pixels (`sklearn_classifier`, `predict_sklearn`; the bench times the same one).
Ties: equal distances rank the lower reference index first; a tied vote picks the lower digit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.errors import ModelNotFoundError
from mnist_dist.models.inputs import N_CLASSES, check_images
from mnist_dist.models.knn_bound import BoundIndex, round_down_float32
from mnist_dist.models.knn_files import read_knn_arrays, read_knn_params
from mnist_dist.models.knn_scan import full_scan
from mnist_dist.models.scaler import Scaler

log = logging.getLogger(__name__)

KNN_ARRAYS = "knn.npz"
KNN_PARAMS = "knn.json"
# Relative error allowance of the float32 shortlist scores; 2x the worst case of a 788-long float32
# dot product (788·2⁻²⁴ ≈ 4.7e-5) plus the float32 rounding of the fused weights.
GEMM_ERROR_BOUND = 1e-4
FULL_SCAN_ROWS = 8192
SELECT_GROUP = 64
# Reference columns per GEMM call: a (block_rows, 8192) tile of scores stays in cache for the
# group minima, which are taken right after the GEMM writes it. Within a tile of w columns, group
# j holds the columns j, j + w/64, j + 2w/64, …: the minima are then an elementwise minimum of
# 64 contiguous rows of w/64 (SIMD-wide), 2-3x cheaper than reducing 64-long runs.
TILE_COLUMNS = 8192
# GEMM depth: the per-row constant, 784 pixels, and 3 zero columns. Pixels are stored most often
# inked first, so a block whose digits leave the rarely inked (border) pixels blank needs only a
# prefix of the depth; skipped columns multiply exact zeros. Queries are blocked in order of the
# depth they need: ~490 instead of ~680 on average for 2,000 MNIST digits in blocks of 512.
GEMM_DEPTH = 788
CONSTANT_COLUMN = 0
DEPTH_STEP = 8  # prefix depths are rounded up to a multiple of this
# Relative float64 error allowance of the exact re-rank (~1e-13 in fact).
EXACT_SLACK = 1e-9
# Queries per block of each search (bench tuning: the bound search at 128 beats 32, 64 and 256).
BLOCK_ROWS = {"bound": 128, "shortlist": 256}


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
    return knn_from_bytes(arrays_path.read_bytes(), params_path.read_bytes(),
                          str(arrays_path), str(params_path))


def knn_from_bytes(
    arrays: bytes, params: bytes, arrays_name: str = KNN_ARRAYS, params_name: str = KNN_PARAMS
) -> KnnModel:
    """Build a KNN from the bytes of `knn.npz` and `knn.json` (no pickle); every array and
    parameter is checked first (`knn_files`): ModelFormatError names the file at fault."""
    loaded = read_knn_arrays(arrays, arrays_name)
    n_neighbors = read_knn_params(params, params_name, len(loaded["reference"]))
    scaler = Scaler(loaded["mean"], loaded["scale"])
    return KnnModel(loaded["reference"], loaded["labels"], scaler, n_neighbors)


def vote(neighbour_labels: np.ndarray) -> np.ndarray:
    """Majority label per row of (n, k) labels; ties go to the lower digit. Returns uint8 (n,)."""
    counts = np.zeros((len(neighbour_labels), N_CLASSES), dtype=np.int32)
    rows = np.repeat(np.arange(len(neighbour_labels)), neighbour_labels.shape[1])
    np.add.at(counts, (rows, neighbour_labels.ravel()), 1)
    return counts.argmax(axis=1).astype(np.uint8)


class GemmKnn:
    """The fast exact backend; build once per process and share (predict is read-only).

    search : "bound" (default; `knn_bound`) or "shortlist" (the float32 GEMM over every pixel,
    kept for comparison); block_rows : queries per GEMM (default per search); shortlist : rows
    the shortlist search re-ranks exactly; saved_index : the bound search's arrays as training
    saved them (`knn_index.read_index`), which skips their build.
    """

    def __init__(self, model: KnnModel, block_rows: int | None = None, shortlist: int = 8,
                 search: str = "bound", saved_index: dict[str, np.ndarray] | None = None
                 ) -> None:
        if search not in BLOCK_ROWS:
            raise ValueError(f"search must be one of {', '.join(BLOCK_ROWS)}; got {search!r}")
        block_rows = BLOCK_ROWS[search] if block_rows is None else block_rows
        if block_rows < 1 or shortlist < 1:
            raise ValueError(
                f"block_rows and shortlist must be >= 1; got {block_rows}, {shortlist} instead"
            )
        self.model = model
        self.search = search
        self.block_rows = block_rows
        n_ref = len(model.reference)
        # The shortlist must hold all k neighbours; with every row in it the search is exhaustive.
        self.shortlist = min(max(shortlist, model.n_neighbors), n_ref)
        self.inverse_variance = 1.0 / model.scaler.scale**2
        self.reference = np.ascontiguousarray(model.reference)  # the full scan's rows
        self.index = (BoundIndex(model.reference, model.scaler.mean, model.scaler.scale,
                                 block_rows, saved_index) if search == "bound" else None)
        if self.index is None:
            self._build_shortlist()

    def _build_shortlist(self) -> None:
        """The arrays of the shortlist search: the fused float32 GEMM operand and its bounds."""
        model = self.model
        n_ref = len(model.reference)
        # At least one padding column, so the (m + 1)-th score exists even when m = n_ref.
        n_padded = -(-(n_ref + 1) // SELECT_GROUP) * SELECT_GROUP
        scale = model.scaler.scale
        # Row y of `weights` is [c(y), −2·y_s/σ (pixels permuted), 0, 0, 0] in float32, so that
        # [1, a (permuted), 0, 0, 0]·row is the shortlist score of raw pixels a; padding rows score
        # +inf and are never chosen.
        inked = np.count_nonzero(model.reference, axis=0)
        self.pixel_order = np.argsort(-inked, kind="stable")
        self.pixel_depth = np.empty(784, dtype=np.int16)  # prefix depth that includes each pixel
        self.pixel_depth[self.pixel_order] = np.arange(2, 786)
        self.weights = np.zeros((n_padded, GEMM_DEPTH), dtype=np.float32)
        self.weights[n_ref:, CONSTANT_COLUMN] = np.inf
        self.norms = np.empty(n_ref, dtype=np.float64)  # ‖y_s‖², exact
        constants = np.empty(n_ref, dtype=np.float64)  # e(y) = ‖y_s‖² + 2μ·(y_s/σ)
        for start in range(0, n_ref, FULL_SCAN_ROWS):
            rows = self._scaled_reference(slice(start, start + FULL_SCAN_ROWS))
            fused = rows / scale
            stop = start + len(rows)
            self.weights[start:stop, 1:785] = -2.0 * fused[:, self.pixel_order]
            self.norms[start:stop] = np.einsum("ij,ij->i", rows, rows)
            constants[start:stop] = self.norms[start:stop] + 2.0 * (fused @ model.scaler.mean)
        # Error of the float32 score: ≤ c·Σ|a_i|·|2y_s,i/σ_i| + c·|e| ≤ c·(t‖a/σ‖² + ‖y_s‖²/t + |e|)
        # for any t > 0 (AM-GM); the reference part is subtracted here, the query part t‖a/σ‖²
        # at search time. t balances the two on typical digits.
        raw_norms = np.square(model.reference, dtype=np.float64) @ self.inverse_variance
        self.balance = float(
            np.sqrt(max(np.median(self.norms), 1e-12) / max(np.median(raw_norms), 1e-12))
        )
        lowered = constants - GEMM_ERROR_BOUND * (self.norms / self.balance + np.abs(constants))
        self.weights[:n_ref, CONSTANT_COLUMN] = round_down_float32(lowered)
        self.max_norm = float(self.norms.max())
        self.group_columns = strided_groups(n_padded)

    def _scaled_reference(self, rows: slice | np.ndarray) -> np.ndarray:
        """Standardised reference rows in float64, computed from the uint8 pixels on demand."""
        return self.model.scaler.transform(self.model.reference[rows], np.float64)

    def kneighbors(self, images: np.ndarray, phases: dict[str, float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest reference rows of raw uint8 `images` (n, 784): standardised Euclidean
        distances float32 (n, k) ascending and row indices int64 (n, k), nearest first.
        `phases`, when given, gains the bound search's seconds per phase (`knn_bound.PHASES`)."""
        images = check_images(images)
        if self.index is not None:
            squared, indices = self.index.kneighbors(images, self.model.n_neighbors, phases)
        else:
            indices = self._kneighbors_shortlist(images)
            squared = self._squared_distances(images, indices)
        # The bound search's rare part is a difference: a duplicate's 0 may come out as -1e-13.
        return np.sqrt(np.maximum(squared, 0.0)).astype(np.float32), indices

    def _kneighbors_shortlist(self, images: np.ndarray) -> np.ndarray:
        """Indices (n, k) of the k nearest reference rows by the shortlist search."""
        out = np.empty((len(images), self.model.n_neighbors), dtype=np.int64)
        # One score buffer per call (not per block): page-faulting a fresh one costs as much as
        # the selection. Per call, so concurrent threads never share it.
        scores = np.empty((min(self.block_rows, len(images)), len(self.weights)), np.float32)
        for rows, depth in self.blocks(images):
            out[rows] = self._kneighbors_block(images[rows], scores[: len(rows)], depth)
        return out

    def _squared_distances(self, images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Exact float64 squared distances (n, k) from uint8 `images` (n, 784) to their rows."""
        diff = self.model.reference[indices].astype(np.float64) - images[:, None, :]
        return np.einsum("ijk,ijk,k->ij", diff, diff, self.inverse_variance)

    def blocks(self, images: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """Query blocks as (row indices, GEMM depth): rows ordered by the depth they need, so
        each block multiplies only the pixel columns its digits ink. Results do not depend on
        the blocking: each query's answer is exact."""
        needed = np.where(images > 0, self.pixel_depth, 1).max(axis=1, initial=1)
        order = np.argsort(needed, kind="stable")
        out = []
        for start in range(0, len(images), self.block_rows):
            rows = order[start : start + self.block_rows]
            depth = -(-int(needed[rows].max()) // DEPTH_STEP) * DEPTH_STEP
            out.append((rows, min(GEMM_DEPTH, depth)))
        return out

    def gemm_flops(self, images: np.ndarray) -> float:
        """Floating-point operations of the shortlist GEMMs that `kneighbors(images)` runs."""
        images = check_images(images)
        if self.index is not None:
            return 2.0 * len(images) * self.index.tiles.size
        return float(sum(2.0 * len(rows) * depth * len(self.weights)
                         for rows, depth in self.blocks(images)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted digit, uint8 (n,), for raw uint8 pixels (n, 784)."""
        if len(images) == 0:
            check_images(images)
            return np.empty(0, dtype=np.uint8)
        return vote(self.model.labels[self.kneighbors(images)[1]])

    def _kneighbors_block(self, block: np.ndarray, scores: np.ndarray, depth: int) -> np.ndarray:
        k, m = self.model.n_neighbors, self.shortlist
        pixels = np.zeros((len(block), GEMM_DEPTH), dtype=np.float32)
        pixels[:, CONSTANT_COLUMN] = 1.0
        pixels[:, 1:785] = block[:, self.pixel_order]  # uint8 → float32 is exact
        minima = self._scores(pixels[:, :depth], scores, m)
        candidates, pivot = select_smallest(scores, m, minima, self.group_columns)
        queries = self.model.scaler.transform(block, np.float64)
        exact = self._exact_reduced(queries, candidates)
        order = np.lexsort((candidates, exact), axis=1)[:, :k]
        nearest = np.take_along_axis(candidates, order, axis=1)
        kth = np.take_along_axis(exact, order[:, -1:], axis=1)[:, 0]
        # Every row outside the shortlist has exact score ≥ pivot − c·t·‖a/σ‖² (see __init__).
        raw_norms = np.square(block, dtype=np.float64) @ self.inverse_variance
        bound = pivot.astype(np.float64) - GEMM_ERROR_BOUND * self.balance * raw_norms
        slack = EXACT_SLACK * (self.max_norm + np.einsum("ij,ij->i", queries, queries))
        unproven = ~(kth < bound - slack)
        for row in np.flatnonzero(unproven):
            nearest[row] = self._kneighbors_full(block[row], candidates[row])
        return nearest

    def _scores(self, pixels: np.ndarray, scores: np.ndarray, m: int) -> np.ndarray | None:
        """Fill `scores` (n, n_padded) from `pixels` (n, depth ≤ GEMM_DEPTH) tile by tile; return
        the group minima (n, n_groups) when the grouped selection applies, taken while each
        tile is still in cache."""
        n_rows, n_cols = scores.shape
        n_groups = n_cols // SELECT_GROUP
        minima = np.empty((n_rows, n_groups), np.float32) if n_groups > m + 1 else None
        for start in range(0, n_cols, TILE_COLUMNS):
            stop = min(n_cols, start + TILE_COLUMNS)
            tile = scores[:, start:stop]
            np.matmul(pixels, self.weights[start:stop, : pixels.shape[1]].T, out=tile)
            if minima is not None:
                groups = slice(start // SELECT_GROUP, stop // SELECT_GROUP)
                np.min(tile.reshape(n_rows, SELECT_GROUP, -1), axis=1, out=minima[:, groups])
        return minima

    def _exact_reduced(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Exact float64 ‖x − y‖² − ‖x‖² = ‖y‖² − 2x·y for each (query, candidate) pair.

        x·y = (x/σ)·b − (x/σ)·μ for raw candidate pixels b: one cast and one product per pair.
        """
        fused = queries / self.model.scaler.scale
        pixels = self.model.reference[candidates].astype(np.float64)
        dots = np.einsum("ijk,ik->ij", pixels, fused) - (fused @ self.model.scaler.mean)[:, None]
        return self.norms[candidates] - 2.0 * dots

    def _kneighbors_full(self, pixels: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Exact float64 scan of every reference row for raw pixels (784,) (the rare fallback),
        starting with the shortlist `first` (m,) so most rows are abandoned early."""
        return full_scan(pixels, self.reference, self.inverse_variance, first,
                         self.model.n_neighbors)


def strided_groups(n_cols: int) -> np.ndarray:
    """Columns (n_cols // SELECT_GROUP, SELECT_GROUP) of each selection group, numbered tile by
    tile as `GemmKnn._scores` takes their minima (see TILE_COLUMNS)."""
    groups = []
    for start in range(0, n_cols, TILE_COLUMNS):
        width = (min(n_cols, start + TILE_COLUMNS) - start) // SELECT_GROUP
        groups.append(start + np.arange(SELECT_GROUP * width).reshape(SELECT_GROUP, width).T)
    return np.concatenate(groups).astype(np.intp)


def select_smallest(
    scores: np.ndarray, m: int, group_minima: np.ndarray | None = None,
    group_columns: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Column indices (n, m) of the m smallest scores per row, and a lower bound (n,) of the rest.

    Selects among the m + 1 column groups with the smallest minima: they hold the m smallest
    entries, and the (m + 1)-th smallest entry among them bounds every entry left out.
    Groups are runs of SELECT_GROUP columns, or the rows of `group_columns` (n_groups, SELECT_GROUP)
    (any partition of the columns works); `group_minima` (n, n_groups), when the caller has
    them, saves a pass.
    """
    n_rows, n_cols = scores.shape
    n_groups = n_cols // SELECT_GROUP
    rows = np.arange(n_rows)[:, None]
    if n_groups <= m + 1:
        part = np.argpartition(scores, m, axis=1)
        return part[:, :m], scores[rows[:, 0], part[:, m]]
    if group_minima is None:
        group_minima = scores.reshape(n_rows, n_groups, SELECT_GROUP).min(axis=2)
        group_columns = None
    groups = np.argpartition(group_minima, m, axis=1)[:, : m + 1]
    if group_columns is None:
        columns = (groups[:, :, None] * SELECT_GROUP + np.arange(SELECT_GROUP)).reshape(n_rows, -1)
    else:
        columns = group_columns[groups].reshape(n_rows, -1)
    gathered = scores[rows, columns]
    part = np.argpartition(gathered, m, axis=1)
    return columns[rows, part[:, :m]], gathered[rows, part[:, m : m + 1]][:, 0]


def sklearn_classifier(model: KnnModel) -> Any:
    """The reference: `KNeighborsClassifier(n_neighbors, algorithm="brute")` fitted on the
    float64 standardised reference (the study's KNN; `auto` picks brute on 784 features)."""
    from sklearn.neighbors import KNeighborsClassifier

    classifier = KNeighborsClassifier(n_neighbors=model.n_neighbors, algorithm="brute")
    return classifier.fit(model.scaler.transform(model.reference, np.float64), model.labels)


def predict_sklearn(
    model: KnnModel, images: np.ndarray, classifier: Any | None = None
) -> np.ndarray:
    """The scikit-learn reference prediction, uint8 (n,), for raw uint8 pixels (n, 784);
    pass `classifier` (from `sklearn_classifier(model)`) to reuse a fitted one."""
    images = check_images(images)
    classifier = sklearn_classifier(model) if classifier is None else classifier
    return classifier.predict(model.scaler.transform(images, np.float64)).astype(np.uint8)
