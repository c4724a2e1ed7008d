"""The rare pixels of the bound search (`knn_bound`): their ink, indexed both ways, and how a
query's rare cross terms Σ_{rare, a > 0} w·a·b lower the float32 bounds.

A digit inks few rare pixels, and those touch few references: the *sparse* path visits only the
references inking them (column-compressed ink). A noise-like query inks most of them, touching
most references several times; the *dense* path then walks every reference's own rare ink once
(row-compressed ink), in memory order. Both compute the same float64 products in the same order
per reference and lower the same float32 scores the same way, so they give identical bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# A query takes the dense path when the references its rare ink touches (with repeats) exceed
# this share of all references: scattered updates cost a few times a sequential one.
DENSE_SHARE = 0.25


@dataclass(frozen=True)
class RareInk:
    """The references' ink on the rare pixels, uint8 values with their positions.

    by_pixel : offsets (n_rare + 1,), reference rows int32 (nnz,), values uint8 (nnz,);
    by_row : reference rows int32 (nnz,) ascending, rare pixel numbers int32 (nnz,),
    values uint8 (nnz,)
    """

    pixel_offsets: np.ndarray
    pixel_rows: np.ndarray
    pixel_values: np.ndarray
    row_of_entry: np.ndarray
    row_pixels: np.ndarray
    row_values: np.ndarray

    @classmethod
    def of(cls, rare_pixels: np.ndarray) -> RareInk:
        """Both compressions of uint8 `rare_pixels` (n_ref, n_rare)."""
        n_rare = rare_pixels.shape[1]
        pixels, rows = np.nonzero(rare_pixels.T)
        pixel_offsets = np.zeros(n_rare + 1, dtype=np.int64)
        np.cumsum(np.bincount(pixels, minlength=n_rare), out=pixel_offsets[1:])
        by_row = np.lexsort((pixels, rows))
        values = rare_pixels[rows, pixels]
        return cls(pixel_offsets, rows.astype(np.int32), values, rows[by_row].astype(np.int32),
                   pixels[by_row].astype(np.int32), values[by_row])

    def square_norms(self, weights: np.ndarray, n_ref: int) -> np.ndarray:
        """K(y) = Σ_j w_j·b_j² float64 (n_ref,) over each reference's rare ink."""
        columns = np.repeat(np.arange(len(self.pixel_offsets) - 1),
                            np.diff(self.pixel_offsets))
        terms = weights[columns] * self.pixel_values.astype(np.float64) ** 2
        return np.bincount(self.pixel_rows, weights=terms, minlength=n_ref)


@njit(cache=True, nogil=True)
def touched(query_rare: np.ndarray, pixel_offsets: np.ndarray) -> int:
    """References (with repeats) that the inked pixels of `query_rare` (n_rare,) touch."""
    count = 0
    for j in range(query_rare.shape[0]):
        if query_rare[j] != 0:
            count += pixel_offsets[j + 1] - pixel_offsets[j]
    return count


@njit(cache=True, nogil=True)
def lowered(score: np.float32, product: float, allowance: float) -> np.float32:
    """float32 score − 2(1 + allowance)·product, rounded down: float32 rounding moves a value
    by at most 6e-8 of itself, so float32(v − 1.2e-7·|v| − 1e-30) ≤ v stays a lower bound."""
    value = np.float64(score) - 2.0 * (1.0 + allowance) * product
    return np.float32(value - 1.2e-7 * abs(value) - 1e-30)


@njit(cache=True, nogil=True)
def fold_sparse(query_rare: np.ndarray, weights: np.ndarray, pixel_offsets: np.ndarray,
                pixel_rows: np.ndarray, pixel_values: np.ndarray, scores: np.ndarray,
                minima: np.ndarray, products: np.ndarray, folded: np.ndarray, group: int,
                allowance: float) -> None:
    """The sparse path: `products` (n_ref,) += Σ w·a·b over the query's inked rare pixels, then
    each touched row's score in `scores` (n_tiles, width) lowered once (`lowered`) and the
    minimum of its `group` rows in `minima` (n_groups,) with it. `weights`: the rare w (n_rare,)."""
    for j in range(query_rare.shape[0]):
        if query_rare[j] == 0:
            continue
        wa = weights[j] * np.float64(query_rare[j])
        for p in range(pixel_offsets[j], pixel_offsets[j + 1]):
            products[pixel_rows[p]] += wa * np.float64(pixel_values[p])
    width = scores.shape[1]
    for j in range(query_rare.shape[0]):
        if query_rare[j] == 0:
            continue
        for p in range(pixel_offsets[j], pixel_offsets[j + 1]):
            y = pixel_rows[p]
            if not folded[y]:
                folded[y] = True
                t, column = y // width, y % width
                scores[t, column] = lowered(scores[t, column], products[y], allowance)
                minima[y // group] = min(minima[y // group], scores[t, column])


@njit(cache=True, nogil=True)
def fold_dense(query_rare: np.ndarray, weights: np.ndarray, row_of_entry: np.ndarray,
               row_pixels: np.ndarray, row_values: np.ndarray, scores: np.ndarray,
               minima: np.ndarray, products: np.ndarray, group: int, allowance: float) -> None:
    """The dense path, same result as `fold_sparse`: every reference's rare ink in memory order
    (entries by row, then by ascending rare pixel: `fold_sparse`'s order of terms; a pixel the
    query leaves blank adds +0.0, which changes no sum), then every score in one pass. Neither
    loop branches on the data: a branch per reference, taken at random, costs more than both."""
    wa = weights * query_rare.astype(np.float64)
    for p in range(row_of_entry.shape[0]):
        products[row_of_entry[p]] += wa[row_pixels[p]] * np.float64(row_values[p])
    n_ref = products.shape[0]
    n_tiles, width = scores.shape
    for t in range(n_tiles):  # a tile holds whole groups
        for g in range(t * (width // group), (t + 1) * (width // group)):
            smallest = minima[g]
            for y in range(g * group, min(n_ref, (g + 1) * group)):
                column = y - t * width
                score = scores[t, column]
                # Only rows the query's rare ink touches have a product (> 0), as in fold_sparse;
                # an untouched row keeps its score, which is ≥ its group's minimum already.
                if products[y] > 0.0:
                    score = lowered(score, products[y], allowance)
                scores[t, column] = score
                smallest = min(smallest, score)
            minima[g] = smallest


@njit(cache=True, nogil=True)
def fold_rare(query_rare: np.ndarray, weights: np.ndarray, ink_pixel_offsets: np.ndarray,
              ink_pixel_rows: np.ndarray, ink_pixel_values: np.ndarray,
              ink_row_of_entry: np.ndarray, ink_row_pixels: np.ndarray,
              ink_row_values: np.ndarray, scores: np.ndarray, minima: np.ndarray,
              products: np.ndarray, folded: np.ndarray, group: int, allowance: float) -> bool:
    """Fold the query's rare cross terms into its `scores` and `minima` by the cheaper path
    (DENSE_SHARE); `products` then holds them. Returns whether the dense path ran."""
    if touched(query_rare, ink_pixel_offsets) > DENSE_SHARE * products.shape[0]:
        fold_dense(query_rare, weights, ink_row_of_entry, ink_row_pixels, ink_row_values,
                   scores, minima, products, group, allowance)
        return True
    fold_sparse(query_rare, weights, ink_pixel_offsets, ink_pixel_rows, ink_pixel_values,
                scores, minima, products, folded, group, allowance)
    return False


@njit(cache=True, nogil=True)
def reset_rare(query_rare: np.ndarray, dense: bool, pixel_offsets: np.ndarray,
               pixel_rows: np.ndarray, products: np.ndarray, folded: np.ndarray) -> None:
    """Zero what `fold_rare` wrote for this query: everything after the dense path, else only
    the touched rows."""
    if dense:
        products[:] = 0.0
        return
    for j in range(query_rare.shape[0]):
        if query_rare[j] != 0:
            for p in range(pixel_offsets[j], pixel_offsets[j + 1]):
                products[pixel_rows[p]] = 0.0
                folded[pixel_rows[p]] = False
