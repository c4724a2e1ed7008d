"""The export job end to end: the run located, its table written beside the target under a
temporary name, then moved into place.

On S3 a move is a copy then a delete: readers never see a partial file under the target's
name, but an interrupted move can leave the temporary behind. The predictions store may be on
object storage (the run's run.json names it), and so may the output.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import Client

from mnist_dist.cluster import ClusterSpec, client_for
from mnist_dist.errors import StoreExistsError, file_faults
from mnist_dist.exporting.graph import PARQUET_METADATA, export_frame, write_frame
from mnist_dist.exporting.result import ExportResult
from mnist_dist.exporting.source import locate
from mnist_dist.exporting.spec import ExportSpec
from mnist_dist.publish import exists, remove_folder, replace_folder, temporary_location
from mnist_dist.storage import storage_errors

log = logging.getLogger(__name__)


def run(spec: ExportSpec, *, client: Client | None = None) -> ExportResult:
    """Write the run's table to `spec.target()` atomically, computed on `client` (left open)
    or else on this process's threads; StoreExistsError if the target exists.

    >>> import mnist_dist as md                                           # doctest: +SKIP
    >>> result = md.export(md.ExportSpec(run="runs/nb"), client=client)  # doctest: +SKIP
    >>> result.path, result.rows                                         # doctest: +SKIP
    """
    with storage_errors(locations=(str(spec.target()),)), \
            file_faults(f"writing {spec.target()}"):
        return write_table(spec, client)


def write_table(spec: ExportSpec, client: Client | None) -> ExportResult:
    """The export itself (see `run`)."""
    target = spec.target()
    if exists(target):
        raise StoreExistsError(f"{target} exists; choose another --out")
    source = locate(spec.run)
    frame = export_frame(source)
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_location(target)
    try:
        with scheduler_for(client) as scheduler:
            write_frame(frame, spec.format, tmp, scheduler)
        replace_folder(tmp, str(target), marker=PARQUET_METADATA)
    finally:
        remove_folder(tmp)
    log.info("wrote %s", target)
    return ExportResult(path=target, format=spec.format, rows=source.n_rows,
                        columns=tuple(frame.columns))


@contextlib.contextmanager
def scheduler_for(client: Client | None) -> Iterator[Any]:
    """The caller's `client`, prepared as the other jobs prepare it and left open; without one,
    this process's threads."""
    if client is None:
        # Not a default Client the process may hold (a library user's, or another job's): its
        # workers may lack this process's credentials or files.
        yield "threads"
        return
    with client_for(ClusterSpec(), client) as prepared:
        yield prepared
