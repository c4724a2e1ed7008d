"""Exact float64 full scan for one query, compiled (numba, cached): the fallback of `GemmKnn`.

Distances are ‖x_s − y_s‖² = Σ_i w_i (a_i − b_i)² with w = 1/σ² on the raw uint8 pixels a, b
(standardisation's mean cancels), so no standardised copy of the reference is ever built.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CHUNK = 128  # pixels between two early-abandon checks
# Relative allowance of the early-abandon check. Each distance is a float64 sum of 784
# non-negative terms (chunk sums, then a running total): its computed value is within
# 784·2⁻⁵³ < 1e-13 (relative) of the exact one, and so is every partial sum of a subset of the
# terms. A partial sum above limit·(1 + ABANDON_SLACK) therefore proves the finished sum above
# `limit`: (1 − 1e-13)·(1 + 1e-12) > 1.
ABANDON_SLACK = 1e-12


@njit(cache=True, nogil=True)
def abandoning_sum(query: np.ndarray, row: np.ndarray, weights: np.ndarray, n: int,
                   total: float, abandon: float) -> float:
    """`total` + Σ_{i<n} w_i (a_i − b_i)² for uint8 `query` and `row`; +inf once the running
    sum exceeds `abandon` (checked every CHUNK pixels)."""
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        total += weighted_sum(query[start:stop], row[start:stop], weights[start:stop])
        if total > abandon:
            return np.inf
    return total


# `reassoc` lets the sum vectorise (8 float64 lanes; ~5x faster than one running sum). The
# order it sums in depends only on the length, never on the data or its address, so equal rows
# still give equal sums, and any order of non-negative terms keeps the error bound above.
# Slices, not offsets: an index numba cannot prove non-negative keeps the loop scalar.
@njit(cache=True, nogil=True, fastmath={"reassoc"})
def weighted_sum(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float:
    """Σ w_i (a_i − b_i)² in float64 for uint8 `a`, `b` and float64 `weights` of one length."""
    part = 0.0
    for i in range(a.shape[0]):
        diff = np.float64(np.int32(a[i]) - np.int32(b[i]))
        part += weights[i] * (diff * diff)
    return part


@njit(cache=True, nogil=True)
def weighted_distance(query: np.ndarray, row: np.ndarray, weights: np.ndarray,
                      limit: float) -> float:
    """Σ w_i (a_i − b_i)² for uint8 (784,) `query` and `row`; +inf once it provably exceeds
    `limit` (checked every CHUNK pixels)."""
    return abandoning_sum(query, row, weights, query.shape[0], 0.0,
                          limit * (1.0 + ABANDON_SLACK))


@njit(cache=True, nogil=True)
def insert_neighbour(distances: np.ndarray, indices: np.ndarray, distance: float,
                     index: int) -> None:
    """Insert (distance, index) into the sorted k best (ties: lower index first)."""
    k = distances.shape[0]
    last = k - 1
    if distance > distances[last] or (distance == distances[last] and index > indices[last]):
        return
    j = last
    while j > 0 and (distance < distances[j - 1]
                     or (distance == distances[j - 1] and index < indices[j - 1])):
        distances[j] = distances[j - 1]
        indices[j] = indices[j - 1]
        j -= 1
    distances[j] = distance
    indices[j] = index


@njit(cache=True, nogil=True)
def full_scan(query: np.ndarray, reference: np.ndarray, weights: np.ndarray,
              first: np.ndarray, k: int) -> np.ndarray:
    """Indices (k,) of the k nearest rows of uint8 `reference` (n, 784) to uint8 `query` (784,),
    nearest first, ties to the lower index. `first` (m,) are rows scanned first (a good guess
    makes the early abandon effective); every row is considered once."""
    best = np.full(k, np.inf)
    index = np.full(k, reference.shape[0], np.int64)
    seen = np.zeros(reference.shape[0], np.bool_)
    for row in first:
        seen[row] = True
        insert_neighbour(best, index, weighted_distance(query, reference[row], weights,
                                                        best[k - 1]), row)
    for row in range(reference.shape[0]):
        if not seen[row]:
            insert_neighbour(best, index, weighted_distance(query, reference[row], weights,
                                                            best[k - 1]), row)
    return index
