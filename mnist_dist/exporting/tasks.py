"""The export table's per-partition work, without Dask: one run of rows read from the stores as
a pandas DataFrame, and the column helpers applied to each partition."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mnist_dist.data.store import zarr_array
from mnist_dist.errors import DataError
from mnist_dist.exporting.source import Source

ID_STRINGS = pd.StringDtype("pyarrow")  # the same dtype in every partition and in the meta


def partition_frame(rows: tuple[int, int], source: Source) -> pd.DataFrame:
    """Rows `start…stop` of the export table, read from the stores (runs on any thread).

    Columns: `id` (string ids, or int64 row indices), `knn`, `mlp` (uint8), `mlp_probability`
    (float32), `agree` (bool) and, when the split has labels, `label` (uint8).
    """
    start, stop = rows
    where = source.predictions
    knn = digits(zarr_array(where, "knn")[start:stop], f"{where}/knn", start)
    mlp = digits(zarr_array(where, "mlp")[start:stop], f"{where}/mlp", start)
    proba = np.asarray(zarr_array(where, "mlp_probabilities")[start:stop], dtype=np.float32)
    ids = (pd.array(np.asarray(zarr_array(where, "ids")[start:stop]).astype(object),
                    dtype=ID_STRINGS) if source.has_ids else np.arange(start, stop, dtype=np.int64))
    frame = pd.DataFrame({
        "id": ids, "knn": knn, "mlp": mlp,
        "mlp_probability": proba[np.arange(len(mlp)), mlp.astype(np.intp)],
        "agree": knn == mlp,
    })
    if source.labels is not None:
        frame["label"] = np.asarray(zarr_array(*source.labels)[start:stop], dtype=np.uint8)
    return frame


def digits(values: np.ndarray, where: str, start: int) -> np.ndarray:
    """`values`, the predicted digits of rows `start…`, as uint8 (n,); DataError naming the
    first row that holds no digit 0-9 (a predictions store edited or corrupted)."""
    values = np.asarray(values)
    wrong = np.flatnonzero(values > 9) if values.dtype.kind == "u" else \
        np.flatnonzero((values < 0) | (values > 9))
    if values.dtype.kind not in "iu" or wrong.size:
        row = start + int(wrong[0]) if wrong.size else start
        shown = values[wrong[0]] if wrong.size else values.dtype
        raise DataError(f"{where}: row {row} holds {shown}; expected a digit 0-9 (the "
                        "predictions were altered: score the split again with a new --out)")
    return values.astype(np.uint8)


def as_spreadsheet_text(ids: pd.Series) -> pd.Series:
    """String ids that start like a formula (`=`, `+`, `-`, `@`, tab, CR) prefixed with `'`, so
    a spreadsheet shows them as text instead of running them (OWASP's CSV injection advice)."""
    if ids.dtype.kind in "iu":
        return ids
    formula = ids.str.match(r"[=+\-@\t\r]").fillna(False).astype(bool)
    return ids.where(~formula, "'" + ids)
