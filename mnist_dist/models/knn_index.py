"""The bound search's index saved at training (`knn_index.npz`): every array `BoundIndex`
derives from `knn.npz`, so that a worker loading the models skips the build.

Plain (uncompressed) npz, read without pickle. It names the SHA-256 of the `knn.npz` it was built
from and the bound's float allowance it was built with; a file for another `knn.npz`, or any
array of the wrong kind, is a ModelFormatError naming the file. Its own SHA-256 is in the
manifest, like every artifact's.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mnist_dist.errors import ModelFormatError
from mnist_dist.models.inputs import N_PIXELS
from mnist_dist.models.knn_bound import BOUND_ERROR, GROUP, BoundIndex
from mnist_dist.models.knn_files import array_headers

KNN_INDEX = "knn_index.npz"
FORMAT = 1
# Besides BoundIndex.arrays(): what the file says about itself.
STAMPS = ("format", "bound_error", "knn_sha256")
ARRAYS = ("order", "n_common", "original", "centre", "basis", "tiles", "narrow_residual",
          "rare_norms", "ink_offsets", "ink_rows", "ink_values")


def save_index(index: BoundIndex, knn_sha256: str, path: Path) -> Path:
    """Write `index`'s arrays to `path`, stamped with the `knn.npz` checksum it came from."""
    with path.open("wb") as f:
        np.savez(f, format=np.array(FORMAT), bound_error=np.array(BOUND_ERROR),
                 knn_sha256=np.frombuffer(knn_sha256.encode(), np.uint8), **index.arrays())
    return path


def read_index(data: bytes, where: str, knn_sha256: str, n_ref: int) -> dict[str, np.ndarray]:
    """The arrays of `knn_index.npz` bytes for the `knn.npz` of checksum `knn_sha256` and
    `n_ref` references, each checked; ModelFormatError naming the file otherwise."""
    headers = array_headers(data, where)
    if sorted(headers) != sorted((*STAMPS, *ARRAYS)):
        raise ModelFormatError(f"{where}: must hold the arrays {sorted((*STAMPS, *ARRAYS))}; "
                               f"got {sorted(headers)} instead; run `python -m jobs.train`")
    if any(dtype.hasobject for dtype, _ in headers.values()):
        raise ModelFormatError(f"{where}: holds pickled Python objects, which are never loaded")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in (*STAMPS, *ARRAYS)}
    except Exception as exc:  # a member that passed its header but not its data (truncated)
        raise ModelFormatError(
            f"{where}: cannot read the arrays ({type(exc).__name__}: {exc})") from exc
    built_from = arrays["knn_sha256"].tobytes().decode(errors="replace")
    if built_from != knn_sha256:
        raise ModelFormatError(f"{where}: was built from another knn.npz (SHA-256 {built_from}, "
                               f"not {knn_sha256}); run `python -m jobs.train`")
    if arrays["format"].shape != () or int(arrays["format"]) != FORMAT \
            or arrays["bound_error"].shape != () or float(arrays["bound_error"]) != BOUND_ERROR:
        raise ModelFormatError(f"{where}: was written by another version of mnist-dist (format "
                               f"{arrays['format']!r}); run `python -m jobs.train`")
    problem = index_problem({name: arrays[name] for name in ARRAYS}, n_ref)
    if problem:
        raise ModelFormatError(f"{where}: {problem}; run `python -m jobs.train`")
    return {name: arrays[name] for name in ARRAYS}


def index_problem(a: dict[str, np.ndarray], n_ref: int) -> str | None:
    """What is wrong with the saved arrays `a` for `n_ref` references, or None."""
    if a["n_common"].shape != () or not 0 <= int(a["n_common"]) <= N_PIXELS:
        return f"n_common must be one integer in [0, {N_PIXELS}]"
    c = int(a["n_common"])
    n_rare = N_PIXELS - c
    if not is_permutation(a["order"], N_PIXELS) or not is_permutation(a["original"], n_ref):
        return f"order and original must permute {N_PIXELS} pixels and {n_ref} references"
    basis, tiles = a["basis"], a["tiles"]
    if basis.dtype != np.float64 or basis.ndim != 2 or basis.shape[0] != c \
            or a["centre"].dtype != np.float64 or a["centre"].shape != (c,):
        return f"centre and basis must be float64 of shapes ({c},) and ({c}, m)"
    m = basis.shape[1]
    if tiles.dtype != np.float32 or tiles.ndim != 3 or tiles.shape[1] != m + 2 \
            or tiles.shape[2] % GROUP or tiles.shape[0] * tiles.shape[2] < n_ref:
        return (f"tiles must be float32 (n_tiles, {m + 2}, width), width a multiple of "
                f"{GROUP}, covering {n_ref} references")
    for name in ("narrow_residual", "rare_norms"):
        if a[name].dtype != np.float64 or a[name].shape != (n_ref,):
            return f"{name} must be float64 of shape ({n_ref},)"
    offsets, rows, values = a["ink_offsets"], a["ink_rows"], a["ink_values"]
    if offsets.dtype != np.int64 or offsets.shape != (n_rare + 1,) or offsets[0] != 0 \
            or (np.diff(offsets) < 0).any() or rows.dtype != np.int32 \
            or values.dtype != np.uint8 or rows.shape != values.shape \
            or rows.shape != (offsets[-1],) or (rows.size and not 0 <= rows.min() <= rows.max()
                                                < n_ref):
        return "the rare ink's offsets, rows and values do not fit together"
    return None


def is_permutation(values: np.ndarray, n: int) -> bool:
    """Whether integer `values` is an ordering of 0..n-1."""
    return (values.dtype.kind in "iu" and values.shape == (n,)
            and np.array_equal(np.sort(values), np.arange(n)))
