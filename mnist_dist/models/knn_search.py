"""The bound search's compiled part, per query (`knn_bound` prepares its bounds): the rare
pixels folded into the bounds (`knn_rare`), then exact float64 distances, early-abandoned, for
the references whose bound does not exceed the current k-th distance, group by group."""

from __future__ import annotations

import numpy as np
from numba import njit

from mnist_dist.models.knn_rare import fold_rare, reset_rare
from mnist_dist.models.knn_scan import abandoning_sum, insert_neighbour

GROUP = 64  # references per group: neighbours in the projected space, contiguous in memory
SEEDS = 8  # smallest bounds of the best group computed exactly first: a tight k-th distance
# Relative float64 allowance of exact distances (a few 1e-16 per term, 784 terms).
EXACT_SLACK = 1e-12


@njit(cache=True, nogil=True)
def exact_distance(query: np.ndarray, row: np.ndarray, weights: np.ndarray, n_common: int,
                   rare: float, abandon: float) -> float:
    """`rare` + Σ_common w(a − b)² for uint8 (784,) `query` and `row` (permuted); +inf once the
    partial sum exceeds `abandon`."""
    return abandoning_sum(query, row, weights, n_common, rare, abandon)


@njit(cache=True, nogil=True)
def search_one(scores: np.ndarray, minima: np.ndarray, base: float, rare_norm: float,
               query: np.ndarray, reference: np.ndarray, weights: np.ndarray,
               ref_rare: np.ndarray, products: np.ndarray, n_common: int, original: np.ndarray,
               best: np.ndarray, index: np.ndarray) -> None:
    """The k nearest (squared distance, original index) into `best`, `index` (k,) for one query
    with scores (n_tiles, width) and group minima (n_groups,).

    Reference y's lower bound is scores[y // width, y % width] + base (`knn_rare.fold_rare` has
    lowered the scores of the rows sharing rare ink with the query, and their groups' minima):
    a row whose bound exceeds the k-th distance found so far, or a group whose minimum does,
    cannot hold one of the k nearest. Equal distances rank the lower original index first, in
    whatever order rows come."""
    k = best.shape[0]
    n_ref = reference.shape[0]
    best[:] = np.inf
    index[:] = n_ref
    first = np.argmin(minima)
    seed_bound = np.full(SEEDS, np.inf)
    seeds = np.full(SEEDS, n_ref, np.int64)
    width = scores.shape[1]
    for y in range(first * GROUP, min(n_ref, (first + 1) * GROUP)):
        insert_neighbour(seed_bound, seeds, scores[y // width, y % width] + base, y)
    for seed in seeds:
        if seed < n_ref:
            consider(int(seed), query, reference, weights, ref_rare, products, n_common, rare_norm,
                     original, best, index)
    # The groups that may hold a nearer row, visited smallest minimum first (the k-th distance
    # only shrinks, so the first group above it ends the search).
    live = np.flatnonzero(minima + base <= best[k - 1] * (1.0 + EXACT_SLACK))
    for g in live[np.argsort(minima[live], kind="mergesort")]:
        if minima[g] + base > best[k - 1] * (1.0 + EXACT_SLACK):
            break
        row = scores[g * GROUP // width]
        for y in range(g * GROUP, min(n_ref, (g + 1) * GROUP)):
            if row[y % width] + base > best[k - 1] * (1.0 + EXACT_SLACK):
                continue
            if g == first and is_seed(y, seeds):
                continue
            consider(y, query, reference, weights, ref_rare, products, n_common, rare_norm,
                     original, best, index)


@njit(cache=True, nogil=True)
def is_seed(y: int, seeds: np.ndarray) -> bool:
    """Whether row `y` is one of `seeds` (already considered)."""
    for s in seeds:
        if s == y:
            return True
    return False


@njit(cache=True, nogil=True)
def consider(y: int, query: np.ndarray, reference: np.ndarray, weights: np.ndarray,
             ref_rare: np.ndarray, products: np.ndarray, n_common: int, rare_norm: float,
             original: np.ndarray, best: np.ndarray, index: np.ndarray) -> None:
    """Insert row `y` (reference original[y]) with its exact squared distance if it beats the
    k-th.

    The partial sums of non-negative terms are within EXACT_SLACK of exact; the rare part, a
    cancelling difference, within EXACT_SLACK of the sum of its terms: a partial sum above
    the k-th distance by more than both errors proves the row farther."""
    k = best.shape[0]
    rare = rare_norm + ref_rare[y] - 2.0 * products[y]
    error = EXACT_SLACK * (rare_norm + ref_rare[y] + 2.0 * products[y])
    abandon = best[k - 1] * (1.0 + EXACT_SLACK) + error
    distance = exact_distance(query, reference[y], weights, n_common, rare, abandon)
    if distance < np.inf:
        insert_neighbour(best, index, distance, original[y])


@njit(cache=True, nogil=True)
def search_block(scores: np.ndarray, minima: np.ndarray, base: np.ndarray,
                 rare_norms: np.ndarray, pixels: np.ndarray, reference: np.ndarray,
                 weights: np.ndarray, ref_rare: np.ndarray, ink_offsets: np.ndarray,
                 ink_rows: np.ndarray, ink_values: np.ndarray, n_common: int,
                 original: np.ndarray, allowance: float, distances: np.ndarray,
                 out: np.ndarray) -> None:
    """`search_one` for each query of `scores` (n_tiles, n, width) and `minima` (n, n_groups)
    into `distances`, `out` (n, k); the rare ink's arrays are `RareInk`'s, `allowance` the
    bound's (`knn_bound.BOUND_ERROR`)."""
    products = np.zeros(reference.shape[0])
    folded = np.zeros(reference.shape[0], np.bool_)
    rare_weights = weights[n_common:]
    for q in range(scores.shape[1]):
        query_rare = pixels[q, n_common:]
        dense = fold_rare(query_rare, rare_weights, ink_offsets, ink_rows, ink_values, scores,
                          q, minima[q], products, folded, GROUP, allowance)
        search_one(scores[:, q], minima[q], base[q], rare_norms[q], pixels[q], reference, weights,
                   ref_rare, products, n_common, original, distances[q], out[q])
        reset_rare(query_rare, dense, ink_offsets, ink_rows, products, folded)
