"""The saved KNN's two files, read without pickle and checked field by field.

`knn.npz` must hold exactly `reference` uint8 (n, 784), `labels` uint8 (n,) in 0-9, and the
scaler's `mean` and `scale` float64 (784,) (finite; scale > 0). `knn.json` must give an integer
`n_neighbors` in [1, n]. Every fault is a ModelFormatError naming the file and the field.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

from mnist_dist.errors import ModelFormatError
from mnist_dist.models.inputs import N_CLASSES, N_PIXELS

# name -> (dtype, shape); None is the reference's row count, the same for both arrays.
KNN_ARRAY_SPECS: dict[str, tuple[np.dtype, tuple[int | None, ...]]] = {
    "reference": (np.dtype(np.uint8), (None, N_PIXELS)),
    "labels": (np.dtype(np.uint8), (None,)),
    "mean": (np.dtype(np.float64), (N_PIXELS,)),
    "scale": (np.dtype(np.float64), (N_PIXELS,)),
}
KNN_PARAMS_FIXED = {"weights": "uniform", "metric": "euclidean",
                    "preprocessing": "standard_scaler"}


def array_headers(data: bytes, where: str) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """dtype and shape of every array in npz bytes, read from the headers alone (no data, no
    pickle), so a wrong or hostile array is refused before anything is allocated."""
    headers = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                with archive.open(member) as f:
                    shape, _, dtype = read_header(f)
                headers[member.removesuffix(".npy")] = (dtype, shape)
    # zipfile and NumPy's header parser raise many types on damaged bytes (BadZipFile,
    # ValueError, EOFError, zlib.error, ...); any of them means the file is not a valid npz.
    except Exception as exc:
        raise ModelFormatError(
            f"{where}: not a valid npz archive ({type(exc).__name__}: {exc})"
        ) from exc
    return headers


def read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of one .npy member, from its header only."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy format version {version}")


def check_array_headers(headers: dict[str, tuple[np.dtype, tuple[int, ...]]], where: str) -> None:
    """ModelFormatError unless the arrays are exactly KNN_ARRAY_SPECS, with one row count."""
    if sorted(headers) != sorted(KNN_ARRAY_SPECS):
        raise ModelFormatError(
            f"{where}: must hold the arrays {sorted(KNN_ARRAY_SPECS)}; "
            f"got {sorted(headers)} instead"
        )
    rows = headers["reference"][1][0] if len(headers["reference"][1]) == 2 else None
    for name, (dtype, shape) in KNN_ARRAY_SPECS.items():
        expected = tuple(rows if d is None else d for d in shape)
        found_dtype, found_shape = headers[name]
        if found_dtype.hasobject:
            raise ModelFormatError(
                f"{where}: array {name!r} holds pickled Python objects, which are never "
                f"loaded (allow_pickle=False); expected {dtype}"
            )
        if found_dtype != dtype or found_shape != expected or (rows is not None and rows < 1):
            raise ModelFormatError(
                f"{where}: array {name!r} must be {dtype} of shape {shape_text(shape)} "
                f"(n >= 1); got {found_dtype} {found_shape} instead"
            )


def shape_text(shape: tuple[int | None, ...]) -> str:
    """A shape as NumPy prints it, with n for the row count: (n, 784), (n,)."""
    parts = ["n" if d is None else str(d) for d in shape]
    return f"({', '.join(parts)}{',' if len(parts) == 1 else ''})"


def read_knn_arrays(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The four arrays of `knn.npz` bytes, each checked (see the module docstring)."""
    check_array_headers(array_headers(data, where), where)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in KNN_ARRAY_SPECS}
    except Exception as exc:  # a member that passed its header but not its data (truncated)
        raise ModelFormatError(
            f"{where}: cannot read the arrays ({type(exc).__name__}: {exc})"
        ) from exc
    if arrays["labels"].max() >= N_CLASSES:
        raise ModelFormatError(
            f"{where}: labels must be digits 0-9; got {int(arrays['labels'].max())} instead"
        )
    for name in ("mean", "scale"):
        if not np.isfinite(arrays[name]).all():
            raise ModelFormatError(f"{where}: array {name!r} must be finite; got NaN or inf")
    if (arrays["scale"] <= 0).any():
        raise ModelFormatError(
            f"{where}: array 'scale' must be > 0; got {float(arrays['scale'].min())} instead"
        )
    return arrays


def read_knn_params(data: bytes, where: str, n_reference: int) -> int:
    """`n_neighbors` from `knn.json` bytes: an integer in [1, n_reference]; the other fields,
    when present, must name what the predictor computes."""
    try:
        params: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(params, dict):
        raise ModelFormatError(f"{where}: must be a JSON object; got {type(params).__name__}")
    k = params.get("n_neighbors")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_reference:
        raise ModelFormatError(
            f"{where}: n_neighbors must be an integer in [1, {n_reference}] (the reference "
            f"rows); got {k!r} instead"
        )
    for key, value in KNN_PARAMS_FIXED.items():
        if key in params and params[key] != value:
            raise ModelFormatError(f"{where}: {key} must be {value!r}; got {params[key]!r}")
    if "n_reference" in params and params["n_reference"] != n_reference:
        raise ModelFormatError(
            f"{where}: n_reference is {params['n_reference']!r} but knn.npz holds "
            f"{n_reference} reference rows"
        )
    return k
