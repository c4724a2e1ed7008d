"""A run's predictions as a lazy Dask DataFrame, and its writing as Parquet part files or one
CSV file.

Each partition is a run of whole chunks of the predictions store (setting
export.partition-rows), read by `tasks.partition_frame`, so memory does not grow with the
number of images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.dataframe as dd

from mnist_dist.exporting.source import Source, locate
from mnist_dist.exporting.tasks import as_spreadsheet_text, partition_frame
from mnist_dist.settings import setting

PARQUET_METADATA = "_metadata"  # moved last when Dask writes it; part files carry their own


def export_frame(source: Source, partition_rows: int | None = None) -> dd.DataFrame:
    """The whole table, lazily: partitions of whole chunks of the predictions store, about
    `partition_rows` rows each (default: the setting export.partition-rows)."""
    wanted = setting("export.partition-rows") if partition_rows is None else partition_rows
    step = source.chunk_rows * max(1, wanted // source.chunk_rows)
    ranges = [(s, min(s + step, source.n_rows)) for s in range(0, source.n_rows, step)]
    meta = partition_frame((0, 0), source)
    return dd.from_map(partition_frame, ranges, args=(source,), meta=meta,
                       enforce_metadata=False)


def read_predictions(run: str | Path) -> dd.DataFrame:
    """A finished run's predictions, lazily: one row per image, the columns and dtypes that
    `jobs.export` writes (id, knn, mlp, mlp_probability, agree, and label when the split has
    labels); one partition per run of whole chunks (setting export.partition-rows).

    >>> import mnist_dist as md                                         # doctest: +SKIP
    >>> frame = md.read_predictions("runs/nb")                         # doctest: +SKIP
    >>> disagree = frame[~frame["agree"]].compute()                    # doctest: +SKIP
    """
    return export_frame(locate(Path(run)))


def write_frame(frame: dd.DataFrame, format: str, where: str, scheduler: Any = "threads"
                ) -> None:
    """Write the table to `where` (a path or URL): Parquet part files, or one CSV file,
    computed on `scheduler` (a Dask scheduler name or a distributed Client)."""
    compute = {"scheduler": scheduler}
    if format == "parquet":
        frame.to_parquet(where, engine="pyarrow", write_index=False, compute_kwargs=compute)
    else:
        frame = frame.assign(id=frame["id"].map_partitions(as_spreadsheet_text,
                                                           meta=frame["id"]._meta))
        frame.to_csv(where, single_file=True, index=False, compute_kwargs=compute)
