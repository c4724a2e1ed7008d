"""A run's predictions store: per-row Zarr arrays of every model, chunked like the partitions.

Made before any task runs, in a place that held nothing (`check_new_predictions`); its group
names its run (`run_id`) from the start and gets its `complete` attribute last. Every chunk is
written, even one of zeros, so an absent chunk was lost (`lost_partitions`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import zarr
from zarr.codecs import ZstdCodec

from mnist_dist.data.splits import absent_row_chunks
from mnist_dist.data.store import EVERY_CHUNK, as_array, writable_array, zarr_array
from mnist_dist.errors import StoreExistsError
from mnist_dist.locations import holds_anything, inside, is_url
from mnist_dist.models.outputs import OUTPUT_ARRAYS

if TYPE_CHECKING:
    from mnist_dist.scoring.spec import ScoreJob

COMPLETE = "complete"  # the predictions store's last attribute: a store without it was never made


def create_prediction_store(
    job: ScoreJob, n_images: int, run_id: str, ids: zarr.Array | None = None
) -> None:
    """Empty per-row arrays of every selected model (see OUTPUT_ARRAYS), and `ids` when the
    split has them, chunked exactly like the Dask partitions (each task writes whole chunks,
    every one of them: a partition's chunk is absent only when its predictions were lost).

    Overwrites what is there; the group names its run (`run_id`) from the start and its
    `complete` attribute is written last, so a store killed half-made is recognised
    (`prediction_store_complete`) and made again by its own run only.
    """
    group = zarr.open_group(job.predictions, mode="w", attributes={"run_id": run_id})
    chunk = max(1, min(job.partition_rows, n_images))
    arrays = [spec for name in job.model_names for spec in OUTPUT_ARRAYS[name]]
    for name, dtype, columns in arrays:
        shape, chunks = ((n_images, columns), (chunk, columns)) if columns else \
            ((n_images,), (chunk,))
        group.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                           compressors=ZstdCodec(level=3), fill_value=0, config=EVERY_CHUNK)
    if ids is not None:
        group.create_array("ids", shape=(n_images,), chunks=(chunk,), dtype=ids.dtype,
                           compressors=ZstdCodec(level=3), config=EVERY_CHUNK)
    group.attrs.update({"n_images": n_images, "partition_rows": job.partition_rows,
                        "split": job.split, COMPLETE: True})


def prediction_store_complete(location: str) -> bool:
    """True when a predictions store exists at `location` and was fully created."""
    try:
        return bool(zarr.open_group(location, mode="r").attrs.get(COMPLETE, False))
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False


def check_new_predictions(job: ScoreJob) -> None:
    """StoreExistsError unless a new run may write its predictions at `job.predictions`:
    nothing there (or an empty local folder), outside the store, and not the run folder."""
    where = job.predictions
    if is_url(where) == is_url(job.store) and inside(where, job.store):
        raise StoreExistsError(f"--predictions {where} lies inside the store {job.store}; "
                               "expected a place outside it")
    if not is_url(where) and inside(str(job.run_dir), where):
        raise StoreExistsError(
            f"--predictions {where} is the run folder or holds it; expected a place of its "
            f"own, such as {Path(job.run_dir).resolve() / 'predictions.zarr'}"
        )
    if holds_anything(where):
        raise StoreExistsError(
            f"{where}: predictions already exist there, or other files, and belong to no run "
            f"in {job.run_dir}; a new run writes its predictions where nothing is: choose "
            "another --out or --predictions"
        )


def open_prediction_store(job: ScoreJob, n_images: int, run_id: str, copy_ids: bool) -> None:
    """The run's predictions store, made when missing or half-made; StoreExistsError when
    the location holds what another run, or no run, made."""
    if holds_anything(job.predictions):
        try:
            attrs = dict(zarr.open_group(job.predictions, mode="r").attrs)
        except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError):
            attrs = {"run_id": None}  # files, but no Zarr group: not the run's
        if attrs and attrs.get("run_id") != run_id:  # {}: a group half-made by zarr itself
            raise StoreExistsError(
                f"{job.predictions}: these are not the predictions of the run in "
                f"{job.run_dir} (another run's, or other files); choose a new --out"
            )
        if attrs.get(COMPLETE):
            return
    ids = zarr_array(job.store, f"{job.split}/ids") if copy_ids else None
    create_prediction_store(job, n_images, run_id, ids)


def lost_partitions(job: ScoreJob, done: set[int], copy_ids: bool) -> set[int]:
    """The partitions of `done` whose predictions are not all in the store (a chunk absent:
    the store was lost, or a chunk of it)."""
    names = [array for name in job.model_names for array, _, _ in OUTPUT_ARRAYS[name]]
    group = zarr.open_group(job.predictions, mode="r")
    lost: set[int] = set()
    for name in names + (["ids"] if copy_ids else []):
        lost |= absent_row_chunks(as_array(group[name], job.predictions, name))
    return lost & done


@functools.lru_cache(maxsize=64)
def output_array(location: str, name: str, token: str) -> zarr.Array:
    """Predictions array `name`, opened once per worker process and run (`token`): on object
    storage every open reads metadata, which would cost more than the write itself."""
    return writable_array(location, name)
