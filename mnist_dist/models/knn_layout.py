"""How the bound search lays out the references: the principal basis it projects on, the
order that puts neighbours in the projected space together (`knn_bound`), and the smallest
bound of each such group."""

from __future__ import annotations

import numpy as np
from numba import njit


def tree_order(points: np.ndarray, leaf: int) -> np.ndarray:
    """A row order of `points` (n, d) that puts neighbours together: recursive splits at the
    median of the coordinate of largest spread, into runs of `leaf` rows. Every left part is a
    multiple of `leaf` long, so the runs start at multiples of `leaf` (the last may be short).
    Returns int64 (n,)."""
    if points.shape[1] == 0:  # nothing to split on (no common pixels)
        return np.arange(len(points), dtype=np.int64)
    runs = []
    stack = [np.arange(len(points))]
    while stack:
        rows = stack.pop()
        if len(rows) <= leaf:
            runs.append(rows)
            continue
        coordinates = points[rows]
        spread = coordinates.max(axis=0) - coordinates.min(axis=0)
        values = coordinates[:, int(np.argmax(spread))]
        left = (len(rows) // leaf + 1) // 2 * leaf
        split = np.argpartition(values, left - 1)
        stack.append(rows[split[left:]])
        stack.append(rows[split[:left]])
    return np.concatenate(runs).astype(np.int64)


def principal_basis(centred: np.ndarray, m: int) -> np.ndarray:
    """The top-m principal directions (n_features, m) of centred float64 rows, orthonormal."""
    if m == 0:
        return np.zeros((centred.shape[1], 0))
    covariance = centred.astype(np.float32).T @ centred.astype(np.float32)
    _, vectors = np.linalg.eigh(covariance.astype(np.float64))
    return np.ascontiguousarray(vectors[:, ::-1][:, :m])


# `nnan` lets the minimum vectorise: scores are never NaN (padding is +inf).
@njit(cache=True, nogil=True, fastmath={"nnan"})
def run_minima(row: np.ndarray, out: np.ndarray, group: int) -> None:
    """Smallest score of each run of `group` columns of one query's scores `row` (w,) into
    `out` (w / group,)."""
    for i in range(out.shape[0]):
        part = row[i * group : (i + 1) * group]
        smallest = part[0]
        for score in part[1:]:
            smallest = min(smallest, score)
        out[i] = smallest
