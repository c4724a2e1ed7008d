"""Exact k-nearest-neighbour search by lower bounds: the default search of `GemmKnn`.

Pixels split in two. *Rare* pixels (inked in at most RARE_SHARE of the references: the border,
where σ is small and one inked pixel weighs as much as a digit) are handled exactly through a
sparse index of the references' ink. *Common* pixels are bounded through their top principal
components: for P with orthonormal columns, centre c, u = [Pᵀ(x − c), ‖R(x − c)‖] with
R = I − PPᵀ,
    ‖x − y‖² = ‖Pᵀ(x − y)‖² + ‖R(x − c) − R(y − c)‖² ≥ ‖u_x − u_y‖²   (triangle inequality),
an (m + 1)-dimensional distance: one small float32 GEMM bounds every reference per query. With
w = 1/σ² and raw pixels a (query), b (reference), the rare part is exactly
    Σ_rare w(a − b)² = A(x) + K(y) − 2·Σ_{rare, a > 0} w·a·b,
the last sum over the query's inked rare pixels only (`knn_rare`: the references inking them,
or for a noise-like query every reference's rare ink in memory order). A compiled loop then
computes exact float64 distances, early-abandoned, for the references whose bound does not
exceed the current k-th distance. References are stored in groups of GROUP neighbours in the
projected space (`tree_order`): the GEMM writes each group's smallest bound while its tile is in
cache, the search seeds the k-th distance from the group with the smallest one, then visits only
the groups whose smallest bound does not exceed it, in increasing order (~16 of 875 for MNIST).

Why the answer stays exact in float32: the bound GEMM (numpy's BLAS or onnxruntime's MLAS, the
faster on this machine, `matmul`, on blocks of queries) errs by at most γ·Σ|terms| however its
sums are ordered;
each reference's constant is lowered by BOUND_ERROR of those terms and rounded down to float32
(`round_down_float32`), and the query's rare cross terms are subtracted with the same allowance and
rounded down again (`knn_rare.lowered`), so every stored value is still a lower bound. Only exact
float64 distances decide the neighbours (ties: the lower reference index), so predictions equal
scikit-learn's brute-force KNN. The whole index (basis, groups, rare ink) is derived from
`knn.npz`, PROJECT_ROWS references at a time, when the model is trained (saved beside it,
`knn_index`) or, for models saved without it, when it loads.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from mnist_dist.models.knn_layout import principal_basis, run_minima, tree_order
from mnist_dist.models.knn_rare import RareInk, fold_rare
from mnist_dist.models.knn_search import GROUP, search_block
from mnist_dist.models.matmul import TileProduct

RARE_SHARE = 0.02
COMPONENTS = 96  # bench: as fast as 64 on the test split, 2x faster on shifted digits
COVARIANCE_STRIDE = 8  # the PCA basis is fitted on every 8th reference (any orthonormal P is exact)
PROJECT_ROWS = 4096  # references standardised and projected at a time while the index is built
TREE_DIMS = 16  # projected coordinates the grouping splits on (the largest spread first)
# Blocks of at most NARROW_ROWS queries use a narrower bound: the first NARROW components and
# the residual of the rest. Its GEMM reads a third of the bytes (one query's product is bound by
# memory, not arithmetic) at the cost of a looser bound (more exact distances): worth it only for
# a few queries, where the GEMM dominates.
NARROW = 32
NARROW_ROWS = 4
TILE_GROUPS = 64  # groups per GEMM tile (at most): a (128, 4096) float32 tile stays in cache for its minima
# Relative allowance of the float32 bound. A float32 dot product of m + 2 = 98 terms, summed in
# any order (MLAS's blocked FMAs included), errs by at most γ₉₈·Σ|terms| ≈ 5.9e-6·Σ|terms|; the
# float32 rounding of both operands adds 1.2e-7·Σ|terms|, and Σ|terms| ≤ 2‖u_y‖² + K(y) + ‖u_x‖²
# (Σ2|u_x,i·u_y,i| ≤ ‖u_x‖² + ‖u_y‖², the constant column is ‖u_y‖² + K(y)). The float64 residual
# norms add ≤ 1.5e-6 of the same norms (`_project`), the projections (‖PᵀP − I‖ ≲ 1e-14) and
# sums < 1e-12: 1e-5 covers all three with m ≤ 128 (γ₁₃₀ ≈ 7.8e-6).
BOUND_ERROR = 1e-5
# The search's phases, as `kneighbors` times them: the query's projection and constants, the
# bound GEMM, the groups' minima, then the rare pixels' fold and the exact distances.
PHASES = ("project", "gemm", "group_minima", "rare_and_exact")


class BoundIndex:
    """Precomputed arrays of the bound search over `reference` uint8 (n, 784): built from it, or
    from the arrays a previous build saved (`arrays`, `knn_index`), then calibrated."""

    def __init__(self, reference: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 block_rows: int = 32, saved: dict[str, np.ndarray] | None = None) -> None:
        self.block_rows = block_rows
        if saved is None:
            self._build(reference, mean, scale)
        else:
            self._restore(reference, mean, scale, saved)
        self.narrow = narrow_tiles(self.tiles, self.narrow_residual)
        self.matmul = TileProduct(self.tiles.shape[1])
        self.matmul.calibrate(self.tiles[0], block_rows)
        self.narrow_matmul = TileProduct(self.narrow.shape[1])
        self.narrow_matmul.calibrate(self.narrow[0], NARROW_ROWS)

    def arrays(self) -> dict[str, np.ndarray]:
        """What `BoundIndex(..., saved=)` needs to skip the build: every derived array."""
        return {"order": self.order, "n_common": np.array(self.n_common),
                "original": self.original, "centre": self.centre, "basis": self.basis,
                "tiles": self.tiles, "narrow_residual": self.narrow_residual,
                "rare_norms": self.rare_norms,
                "ink_offsets": self.ink.offsets, "ink_rows": self.ink.rows,
                "ink_values": self.ink.values}

    def _restore(self, reference: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 saved: dict[str, np.ndarray]) -> None:
        """Take the saved arrays (checked by `knn_index.read_index`); permute `reference`."""
        self.order, self.original, self.n_common = saved["order"], saved["original"], int(
            saved["n_common"])
        self._permute_pixels(reference, mean, scale)
        self.reference = np.ascontiguousarray(self.reference[self.original])
        self.centre, self.basis, self.tiles, self.rare_norms = (
            saved["centre"], saved["basis"], saved["tiles"], saved["rare_norms"])
        self.narrow_residual = saved["narrow_residual"]
        self.ink = RareInk(saved["ink_offsets"], saved["ink_rows"], saved["ink_values"])

    def _permute_pixels(self, reference: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        """The reference, weights, mean and scale with their pixels in `self.order`."""
        self.reference = np.take(reference, self.order, axis=1)  # 6x faster than [:, order]
        self.weights = (1.0 / scale**2)[self.order]
        self.mean, self.scale = mean[self.order], scale[self.order]

    def _build(self, reference: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        """Derive every array of the search from the reference (see the module doc)."""
        n_ref = len(reference)
        inked = np.count_nonzero(reference, axis=0)
        rare = inked <= RARE_SHARE * n_ref
        # Common pixels first, then rare ones; each part most often inked first.
        self.order = np.concatenate([np.flatnonzero(~rare)[np.argsort(-inked[~rare], kind="stable")],
                                     np.flatnonzero(rare)[np.argsort(-inked[rare], kind="stable")]])
        self.n_common = int((~rare).sum())
        self._permute_pixels(reference, mean, scale)
        c = self.n_common
        self.centre = (self.reference[:, :c].mean(axis=0, dtype=np.float64) - self.mean[:c]) \
            / self.scale[:c]
        sample = self._standardised_common(self.reference[::COVARIANCE_STRIDE])
        self.basis = principal_basis(sample - self.centre, min(COMPONENTS, c, n_ref))
        projected, residual = self._project_rows(self.reference)
        # Row p of the arrays below is reference original[p]: groups of neighbours, contiguous.
        self.original = tree_order(projected[:, :TREE_DIMS], GROUP)
        self.reference = np.ascontiguousarray(self.reference[self.original])
        projected, residual = projected[self.original], residual[self.original]
        self.narrow_residual = narrow_residual(projected, residual)
        self.ink = RareInk.of(self.reference[:, self.n_common :])
        self.rare_norms = self.ink.square_norms(self.weights[self.n_common :], n_ref)
        norms = np.einsum("ij,ij->i", projected, projected) + residual**2
        constants = norms + self.rare_norms
        # The GEMM's right operand (m + 2, n_padded), stored transposed (~15% faster than
        # (n_padded, m + 2)) and cut into tiles (n_tiles, m + 2, width) of whole groups, each
        # contiguous; padding columns bound +inf, so they never lower a group's minimum.
        n_groups = -(-n_ref // GROUP)
        n_tiles = -(-n_groups // TILE_GROUPS)
        width = -(-n_groups // n_tiles) * GROUP
        columns = np.zeros((projected.shape[1] + 2, n_tiles * width), dtype=np.float32)
        columns[0, n_ref:] = np.inf
        columns[0, :n_ref] = round_down_float32(constants - BOUND_ERROR * (norms + constants))
        columns[1:-1, :n_ref] = -2.0 * projected.T
        columns[-1, :n_ref] = -2.0 * residual
        self.tiles = np.ascontiguousarray(
            columns.reshape(len(columns), n_tiles, width).transpose(1, 0, 2))

    def _ink_arrays(self) -> tuple[np.ndarray, ...]:
        """The rare ink's arrays, in `fold_rare`'s order."""
        ink = self.ink
        return ink.offsets, ink.rows, ink.values

    def _standardised_common(self, pixels: np.ndarray) -> np.ndarray:
        """Standardised float64 common pixels (n, n_common) of permuted raw pixels (n, 784)."""
        c = self.n_common
        return (pixels[:, :c].astype(np.float64) - self.mean[:c]) / self.scale[:c]

    def _project_rows(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_project` of permuted raw pixels (n, 784), PROJECT_ROWS rows at a time: the float64
        standardised copy of every row at once would be ~300 MB for MNIST's 56,000."""
        projected = np.empty((len(pixels), self.basis.shape[1]))
        residual = np.empty(len(pixels))
        for start in range(0, len(pixels), PROJECT_ROWS):
            rows = slice(start, start + PROJECT_ROWS)
            projected[rows], residual[rows] = self._project(self._standardised_common(pixels[rows]))
        return projected, residual

    def _project(self, common: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projections (n, m) on the basis and residual norms (n,) of standardised common pixels.

        ‖R(x − c)‖² = ‖x − c‖² − ‖Pᵀ(x − c)‖², in float64: its absolute error ≤ 2e-13·‖x − c‖², so
        the norm's error δ ≤ 4.5e-7·‖x − c‖ and the bound's ≤ 2(‖u_x‖ + ‖u_y‖)δ + δ² ≤ 1.5e-6 of
        ‖u_x‖² + ‖u_y‖² (‖u‖ = ‖x − c‖): inside BOUND_ERROR with the float32 part."""
        centred = common - self.centre
        projected = centred @ self.basis
        squared = np.einsum("ij,ij->i", centred, centred) - np.einsum(
            "ij,ij->i", projected, projected)
        return projected, np.sqrt(np.maximum(squared, 0.0))

    def kneighbors(self, images: np.ndarray, k: int, phases: dict[str, float] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances float64 (n, k) ascending and indices int64 (n, k) of the k nearest
        references to raw uint8 `images` (n, 784); equal distances rank the lower index first.
        `phases`, when given, gains the seconds of each of PHASES."""
        distances = np.empty((len(images), k))
        indices = np.empty((len(images), k), dtype=np.int64)
        # One score buffer per call, not per block (page faults), nor shared between threads.
        buffer = np.empty(min(self.block_rows, len(images)) * self.tiles[:, 0].size, np.float32)
        for start in range(0, len(images), self.block_rows):
            rows = slice(start, start + self.block_rows)
            narrow = len(images[rows]) <= NARROW_ROWS
            pixels, scores, minima, base, rare_norms = self._scores(images[rows], buffer, narrow,
                                                                    phases)
            started = time.perf_counter()
            search_block(scores, minima, base, rare_norms, pixels, self.reference, self.weights,
                         self.rare_norms, *self._ink_arrays(), self.n_common, self.original,
                         BOUND_ERROR, distances[rows], indices[rows])
            add_seconds(phases, "rare_and_exact", started)
        return distances, indices

    def _scores(self, images: np.ndarray, buffer: np.ndarray, narrow: bool = False,
                phases: dict[str, float] | None = None) -> tuple[np.ndarray, ...]:
        """Permuted pixels (n, 784), the GEMM's scores float32 (n_tiles, n, width) (in the flat
        `buffer`; reference y is at [y // width, :, y % width]; one tile of every reference
        when `narrow`) and their group minima (n, n_groups), and per query the bound's
        constant part (n,) and A(x) (n,) (module doc)."""
        started = time.perf_counter()
        pixels = np.ascontiguousarray(images[:, self.order])
        c = self.n_common
        projected, residual = self._project(self._standardised_common(pixels))
        norms = np.einsum("ij,ij->i", projected, projected) + residual**2
        rare_norms = np.square(pixels[:, c:], dtype=np.float64) @ self.weights[c:]
        tiles, product = (self.narrow, self.narrow_matmul) if narrow else (self.tiles, self.matmul)
        queries = np.empty((len(images), tiles.shape[1]), dtype=np.float32)
        queries[:, 0] = 1.0
        queries[:, 1:-1] = projected[:, : tiles.shape[1] - 2]
        queries[:, -1] = narrow_residual(projected, residual) if narrow else residual
        base = (1.0 - BOUND_ERROR) * (norms + rare_norms)
        # A C-contiguous (n_tiles, n, width) view of the buffer's start: the rare pass's loops
        # vectorise only on contiguous rows.
        n_tiles, _, width = tiles.shape
        scores = buffer[: n_tiles * len(images) * width].reshape(n_tiles, len(images), width)
        per_tile = width // GROUP
        minima = np.empty((len(images), n_tiles * per_tile), np.float32)
        add_seconds(phases, "project", started)
        for t, tile in enumerate(tiles):
            started = time.perf_counter()
            product(queries, tile, out=scores[t])
            multiplied = add_seconds(phases, "gemm", started)
            group_minima(scores[t], minima[:, t * per_tile : (t + 1) * per_tile])
            add_seconds(phases, "group_minima", multiplied)
        return pixels, scores, minima, base, rare_norms

    def lower_bounds(self, images: np.ndarray, narrow: bool = False) -> np.ndarray:
        """The search's lower bounds float64 (n, n_ref) of the squared distances, in the
        references' original order (for tests); the narrow ones when `narrow`."""
        buffer = np.empty(len(images) * self.tiles[:, 0].size, np.float32)
        pixels, scores, minima, base, _ = self._scores(images, buffer, narrow)
        c = self.n_common
        for q, query in enumerate(pixels):
            products = np.zeros(len(self.reference))
            fold_rare(query[c:], self.weights[c:], *self._ink_arrays(), scores, q, minima[q],
                      products, np.zeros(len(products), np.bool_), GROUP, BOUND_ERROR)
        flat = scores.transpose(1, 0, 2).reshape(len(images), -1)[:, : len(self.reference)]
        bounds = np.empty((len(images), len(self.reference)))
        bounds[:, self.original] = flat + base[:, None]
        return bounds


def add_seconds(phases: dict[str, float] | None, name: str, started: float) -> float:
    """Add the seconds since `started` to `phases[name]` (when timing); returns now."""
    now = time.perf_counter()
    if phases is not None:
        phases[name] = phases.get(name, 0.0) + now - started
    return now


def narrow_residual(projected: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """‖R'(x − c)‖ float64 (n,) for the basis cut to its first NARROW columns, from the
    projections (n, m) and residual norms (n,) on the whole basis: the residual's square plus
    the dropped projections' squares (float64: its error adds ~1e-16 of ‖x − c‖² to `_project`'s,
    inside BOUND_ERROR)."""
    dropped = projected[:, NARROW:]
    return np.sqrt(residual**2 + np.einsum("ij,ij->i", dropped, dropped))


def narrow_tiles(tiles: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The narrow bound's GEMM operand (1, m' + 2, n_padded) from the wide `tiles`
    (n_tiles, m + 2, width): the constant and first m' = min(NARROW, m) projection columns
    (‖u'‖ = ‖u‖, so the constants are the same) and −2·`residual` (n_ref,); padding bounds
    +inf as before."""
    n_tiles, depth, width = tiles.shape
    kept = min(NARROW, depth - 2)
    columns = np.zeros((kept + 2, n_tiles * width), np.float32)
    columns[:-1] = tiles[:, : kept + 1].transpose(1, 0, 2).reshape(kept + 1, -1)
    columns[-1, : len(residual)] = -2.0 * residual
    return columns[None]


def round_down_float32(values: np.ndarray) -> np.ndarray:
    """The largest float32 values ≤ `values` (float64), so a lower bound stays one."""
    rounded = values.astype(np.float32)
    too_high = rounded.astype(np.float64) > values
    return np.where(too_high, np.nextafter(rounded, np.float32(-np.inf)), rounded)


@njit(cache=True, nogil=True)
def group_minima(tile: np.ndarray, out: np.ndarray) -> None:
    """Smallest score of each run of GROUP columns of `tile` (n, w) into `out` (n, w / GROUP)."""
    for q in range(tile.shape[0]):
        run_minima(tile[q], out[q], GROUP)
