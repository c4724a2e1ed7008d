"""A scoring run's predictions as a table (Parquet or CSV), one row per image, via Dask DataFrame.

Columns: `id` (the split's `ids` when the predictions store has them, else the row index),
`knn`, `mlp` (uint8 digits), `mlp_probability` (float32, the MLP's softmax for its digit),
`agree` (knn == mlp) and, when the scored split has labels, `label`. Each partition of the
DataFrame is a run of whole chunks of the predictions store (setting export.partition-rows),
read by `partition_frame`, so memory does not grow with the number of images. The
predictions store may be on object storage (the run's run.json names it), and so may the output
(`--out s3://…`). The output is written beside its target under a temporary name and moved into
place (on S3 a move is a copy then a delete: readers never see a partial file under the
target's name, but an interrupted move can leave the temporary behind).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import zarr

from mnist_dist.data.store import missing_chunks, zarr_array
from mnist_dist.errors import DataError, SpecError, StoreExistsError, StoreNotFoundError
from mnist_dist.locations import is_url
from mnist_dist.publish import exists, remove_folder, replace_folder, temporary_location
from mnist_dist.report.schema import REPORT_NAME
from mnist_dist.run_state import RUN_FILE, read_run_file
from mnist_dist.settings import setting, setting_field

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
N_CLASSES = 10
ID_STRINGS = pd.StringDtype("pyarrow")
PARQUET_METADATA = "_metadata"  # moved last when Dask writes it; part files carry their own  # the same dtype in every partition and in the meta


@dataclass(frozen=True)
class ExportSpec:
    """Which run to export, in which format, where (default `RUN/predictions.<format>`; a path
    or an fsspec URL such as `s3://bucket/key`)."""

    run: Path
    format: str = setting_field("export.format")
    out: Path | str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise SpecError(f"format must be one of {', '.join(FORMATS)}; "
                            f"got {self.format!r} instead")

    def target(self) -> Path | str:
        if isinstance(self.out, str) and not is_url(self.out):
            return Path(self.out.removeprefix("file://"))
        return self.out or self.run / f"predictions.{self.format}"


@dataclass(frozen=True)
class Source:
    """Where a run's rows live: its predictions store (N rows in `chunk_rows` chunks), whether
    it holds `ids`, and the labels array of the scored split (store, name) when there is one."""

    predictions: str
    n_rows: int
    chunk_rows: int
    has_ids: bool
    labels: tuple[str, str] | None


def locate(run: Path) -> Source:
    """The run's predictions and labels, checked; StoreNotFoundError or DataError if unusable."""
    if not (run / RUN_FILE).is_file():
        raise StoreNotFoundError(f"{run}: no {RUN_FILE}; expected the folder of a jobs.score run")
    if not (run / REPORT_NAME).is_file():  # written last: without it some rows may be missing
        raise DataError(f"{run}: the run is unfinished (no {REPORT_NAME}); finish it with "
                        f"`python -m jobs.score --resume --out {run}` first")
    identity = read_run_file(run / RUN_FILE)
    predictions = str(identity.get("predictions") or run / "predictions.zarr")
    try:
        group = zarr.open_group(predictions, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreNotFoundError(f"{run}: predictions store {predictions} not found") from exc
    mlp = check_predictions(group, predictions)
    return Source(predictions, int(mlp.shape[0]), int(mlp.chunks[0]), "ids" in group,
                  split_labels(identity, int(mlp.shape[0])))


def check_predictions(group: zarr.Group, where: str) -> zarr.Array:
    """The `mlp` array, once knn, mlp and mlp_probabilities (and ids) agree in length."""
    missing = [n for n in ("knn", "mlp", "mlp_probabilities") if n not in group]
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}; expected the predictions of a "
                        "finished jobs.score run (rescore it with this version)")
    mlp = zarr_array(where, "mlp")
    n = mlp.shape[0]
    expected = {"knn": (n,), "mlp_probabilities": (n, N_CLASSES), "ids": (n,)}
    for name, shape in expected.items():
        if name in group and zarr_array(where, name).shape != shape:
            raise DataError(f"{where}/{name} must have shape {shape}, one row per image; "
                            f"got {zarr_array(where, name).shape} instead")
    for name in ("knn", "mlp", "mlp_probabilities", "ids"):
        missing = missing_chunks(zarr_array(where, name)) if name in group else []
        if missing:  # every chunk is written, even all zeros: an absent one was lost
            raise DataError(
                f"{where}/{name} is missing {len(missing)} chunk(s) ({', '.join(missing[:3])}"
                f"{', …' if len(missing) > 3 else ''}): the predictions of some rows were "
                "lost; expected every chunk (score the split again with a new --out)"
            )
    return mlp


def split_labels(identity: dict[str, object], n_rows: int) -> tuple[str, str] | None:
    """(store, "<split>/labels") of the scored split when it has labels of `n_rows` rows."""
    store, split = identity.get("store"), identity.get("split")
    if not isinstance(store, str) or not isinstance(split, str):
        return None
    try:
        group = zarr.open_group(store, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise StoreNotFoundError(f"store {store} of the run not found; it holds the labels "
                                 f"of split {split!r}") from exc
    name = f"{split}/labels"
    if name not in group:
        return None
    if zarr_array(store, name).shape != (n_rows,):
        raise DataError(f"{store}/{name} must have {n_rows} rows, one per prediction; "
                        f"got {zarr_array(store, name).shape} instead")
    return store, name


def partition_frame(rows: tuple[int, int], source: Source) -> pd.DataFrame:
    """Rows `start…stop` of the export table, read from the stores (runs on any thread)."""
    start, stop = rows
    where = source.predictions
    knn = np.asarray(zarr_array(where, "knn")[start:stop])
    mlp = np.asarray(zarr_array(where, "mlp")[start:stop])
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


def export_frame(source: Source, partition_rows: int | None = None) -> dd.DataFrame:
    """The whole table, lazily: partitions of whole chunks of the predictions store, about
    `partition_rows` rows each (default: the setting export.partition-rows)."""
    wanted = setting("export.partition-rows") if partition_rows is None else partition_rows
    step = source.chunk_rows * max(1, wanted // source.chunk_rows)
    ranges = [(s, min(s + step, source.n_rows)) for s in range(0, source.n_rows, step)]
    meta = partition_frame((0, 0), source)
    return dd.from_map(partition_frame, ranges, args=(source,), meta=meta,
                       enforce_metadata=False)


def write_frame(frame: dd.DataFrame, format: str, where: str) -> None:
    """Write the table to `where` (a path or URL): Parquet part files, or one CSV file, on
    this process's threads."""
    # Explicitly threads: a distributed Client that is the process's default (a library user's,
    # or another job's) may have workers without this process's credentials or files.
    compute = {"scheduler": "threads"}
    if format == "parquet":
        frame.to_parquet(where, engine="pyarrow", write_index=False, compute_kwargs=compute)
    else:
        frame = frame.assign(id=frame["id"].map_partitions(as_spreadsheet_text,
                                                           meta=frame["id"]._meta))
        frame.to_csv(where, single_file=True, index=False, compute_kwargs=compute)


def as_spreadsheet_text(ids: pd.Series) -> pd.Series:
    """String ids that start like a formula (`=`, `+`, `-`, `@`, tab, CR) prefixed with `'`, so
    a spreadsheet shows them as text instead of running them (OWASP's CSV injection advice)."""
    if ids.dtype.kind in "iu":
        return ids
    formula = ids.str.match(r"[=+\-@\t\r]").fillna(False).astype(bool)
    return ids.where(~formula, "'" + ids)


def run_export(spec: ExportSpec) -> Path | str:
    """Write the run's table to `spec.target()` atomically (see the module docstring);
    returns that path or URL."""
    target = spec.target()
    if exists(target):
        raise StoreExistsError(f"{target} exists; choose another --out")
    frame = export_frame(locate(spec.run))
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_location(target)
    try:
        write_frame(frame, spec.format, tmp)
        replace_folder(tmp, str(target), marker=PARQUET_METADATA)
    finally:
        remove_folder(tmp)
    log.info("wrote %s", target)
    return target
