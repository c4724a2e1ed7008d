"""The rare pixels of the bound search (`knn_bound`): their ink, indexed both ways, and how a
query's rare cross terms Σ_{rare, a > 0} w·a·b lower the float32 bounds.

The products come from the ink stored pixel by pixel (each reference's terms added in ascending
pixel order). A digit inks few rare pixels, and those touch few references: the *sparse* path
then lowers only the scores of the references they touch. A noise-like query touches most
references, in random order; the *dense* path then lowers every touched score in one pass in
memory order. Both lower the same float32 scores by the same products the same way, so they give
identical bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from mnist_dist.models.knn_layout import run_minima

# A query takes the dense path when the references its rare ink touches (with repeats) exceed
# this share of all references: a scattered update costs a few times a sequential one.
DENSE_SHARE = 0.25


@dataclass(frozen=True)
class RareInk:
    """The references' ink on the rare pixels, pixel by pixel: offsets (n_rare + 1,), the
    inking reference rows int32 (nnz,) and their values uint8 (nnz,)."""

    offsets: np.ndarray
    rows: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, rare_pixels: np.ndarray) -> RareInk:
        """The ink of uint8 `rare_pixels` (n_ref, n_rare)."""
        n_rare = rare_pixels.shape[1]
        pixels, rows = np.nonzero(rare_pixels.T)
        offsets = np.zeros(n_rare + 1, dtype=np.int64)
        np.cumsum(np.bincount(pixels, minlength=n_rare), out=offsets[1:])
        return cls(offsets, rows.astype(np.int32), rare_pixels[rows, pixels])

    def square_norms(self, weights: np.ndarray, n_ref: int) -> np.ndarray:
        """K(y) = Σ_j w_j·b_j² float64 (n_ref,) over each reference's rare ink."""
        columns = np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))
        terms = weights[columns] * self.values.astype(np.float64) ** 2
        return np.bincount(self.rows, weights=terms, minlength=n_ref)


@njit(cache=True, nogil=True)
def touched(query_rare: np.ndarray, offsets: np.ndarray) -> int:
    """References (with repeats) that the inked pixels of `query_rare` (n_rare,) touch."""
    count = 0
    for j in range(query_rare.shape[0]):
        if query_rare[j] != 0:
            count += offsets[j + 1] - offsets[j]
    return count


@njit(cache=True, nogil=True)
def lowered(score: np.float32, product: float, allowance: float) -> np.float32:
    """float32 score − 2(1 + allowance)·product, rounded down: float32 rounding moves a value
    by at most 6e-8 of itself, so float32(v − 1.2e-7·|v| − 1e-30) ≤ v stays a lower bound."""
    value = np.float64(score) - 2.0 * (1.0 + allowance) * product
    return np.float32(value - 1.2e-7 * abs(value) - 1e-30)


@njit(cache=True, nogil=True)
def add_products(query_rare: np.ndarray, weights: np.ndarray, offsets: np.ndarray,
                 rows: np.ndarray, values: np.ndarray, products: np.ndarray) -> None:
    """`products` (n_ref,) += Σ w·a·b over the inked pixels of `query_rare` (n_rare,), in
    ascending pixel order; `weights` are the rare pixels' w (n_rare,)."""
    for j in range(query_rare.shape[0]):
        if query_rare[j] == 0:
            continue
        wa = weights[j] * np.float64(query_rare[j])
        for p in range(offsets[j], offsets[j + 1]):
            products[rows[p]] += wa * np.float64(values[p])


@njit(cache=True, nogil=True)
def fold_sparse(query_rare: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
                scores: np.ndarray, q: int, minima: np.ndarray, products: np.ndarray,
                folded: np.ndarray, group: int, allowance: float) -> None:
    """The sparse path: query q's score in `scores` (n_tiles, n, width) of each row its rare
    ink touches lowered once (`lowered`), and the minimum of its `group` rows in `minima`
    (n_groups,) with it."""
    width = scores.shape[2]
    for j in range(query_rare.shape[0]):
        if query_rare[j] == 0:
            continue
        for p in range(offsets[j], offsets[j + 1]):
            y = rows[p]
            if not folded[y]:
                folded[y] = True
                t, column = y // width, y % width
                scores[t, q, column] = lowered(scores[t, q, column], products[y], allowance)
                minima[y // group] = min(minima[y // group], scores[t, q, column])


@njit(cache=True, nogil=True)
def fold_dense(scores: np.ndarray, q: int, minima: np.ndarray, products: np.ndarray,
               group: int, allowance: float) -> None:
    """The dense path, same result as `fold_sparse`: every score, then every group minimum
    (`knn_layout.run_minima`), in one pass each per tile. No loop branches on the data: a branch per reference, taken at random,
    costs more than both passes."""
    n_ref = products.shape[0]
    n_tiles, _, width = scores.shape
    per_tile = width // group  # a tile holds whole groups
    for t in range(n_tiles):
        stop = min(width, n_ref - t * width)
        fold_row(scores[t, q, :stop], products[t * width : t * width + stop], allowance)
        # Every score only went down: each group's minimum, taken afresh, is its new one.
        run_minima(scores[t, q], minima[t * per_tile : (t + 1) * per_tile], group)


@njit(cache=True, nogil=True)
def fold_row(scores: np.ndarray, products: np.ndarray, allowance: float) -> None:
    """`lowered` for each score (w,) whose product (w,) is > 0 (a row the query's rare ink
    touches, as in fold_sparse); the others keep theirs. Both computed, then selected: no
    branch, so the loop vectorises."""
    for i in range(scores.shape[0]):
        kept = scores[i]
        folded = lowered(kept, products[i], allowance)
        scores[i] = folded if products[i] > 0.0 else kept


@njit(cache=True, nogil=True)
def fold_rare(query_rare: np.ndarray, weights: np.ndarray, offsets: np.ndarray,
              rows: np.ndarray, values: np.ndarray, scores: np.ndarray, q: int,
              minima: np.ndarray, products: np.ndarray, folded: np.ndarray, group: int,
              allowance: float) -> bool:
    """Fold query q's rare cross terms into its `scores` (n_tiles, n, width), C-contiguous so
    that the dense passes vectorise, and `minima` (n_groups,) by the cheaper path
    (DENSE_SHARE); `products` then holds them. Returns whether the dense path ran."""
    add_products(query_rare, weights, offsets, rows, values, products)
    if touched(query_rare, offsets) > DENSE_SHARE * products.shape[0]:
        fold_dense(scores, q, minima, products, group, allowance)
        return True
    fold_sparse(query_rare, offsets, rows, scores, q, minima, products, folded, group,
                allowance)
    return False


@njit(cache=True, nogil=True)
def reset_rare(query_rare: np.ndarray, dense: bool, offsets: np.ndarray, rows: np.ndarray,
               products: np.ndarray, folded: np.ndarray) -> None:
    """Zero what `fold_rare` wrote for this query: all of `products` after the dense path,
    else only the touched rows."""
    if dense:
        products[:] = 0.0
        return
    for j in range(query_rare.shape[0]):
        if query_rare[j] != 0:
            for p in range(offsets[j], offsets[j + 1]):
                products[rows[p]] = 0.0
                folded[rows[p]] = False
