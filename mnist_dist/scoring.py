"""The Dask scoring graph: Zarr images → both predictors → Zarr predictions + confusion matrices.

Images are read on the workers with `da.from_zarr`, each partition once; predictions are written
per partition into a Zarr array whose chunks equal the partitions, and the confusion matrices are
reduced inside the same graph, so the client receives only 10x10 counts.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from dask.utils import key_split
from distributed import Client, get_task_stream, progress

from mnist_dist.atomic import temporary_sibling
from mnist_dist.errors import DataError, StoreExistsError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.predict import (
    MODEL_NAMES,
    partition_confusion,
    partition_misclassified,
    predict_partition,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoreJob:
    """One scoring run: which images, how they are partitioned, which models, where to write.

    store : Zarr store path as the workers see it; `split` names the group holding
    `images` (N, 784) uint8 and `labels` (N,) uint8.
    """

    store: str
    predictions: Path
    models: ModelRef
    split: str = "test"
    partition_rows: int = 2000
    ort_threads: int = 1
    sample_misclassified: int = 12

    def __post_init__(self) -> None:
        if self.partition_rows < 1:
            raise ValueError(f"partition_rows must be >= 1; got {self.partition_rows} instead")


@dataclass(frozen=True)
class ScoreResult:
    """What the client receives: counts and timings, never the predictions themselves."""

    n_images: int
    partitions: int
    confusion: dict[str, np.ndarray]
    wall_seconds: float
    task_seconds: dict[str, float]
    misclassified: dict[str, np.ndarray]


def open_split(job: ScoreJob) -> tuple[da.Array, da.Array]:
    """Lazy images (N, 784) and labels (N,) of the job's split, partitioned by rows."""
    rows = job.partition_rows
    try:
        images = da.from_zarr(job.store, component=f"{job.split}/images", chunks=(rows, 784))
        labels = da.from_zarr(job.store, component=f"{job.split}/labels", chunks=(rows,))
    except (KeyError, FileNotFoundError) as exc:
        raise DataError(f"{job.store}: split {job.split!r} not found in the store ({exc})") from exc
    if images.dtype != np.uint8 or images.shape[1:] != (784,):
        raise DataError(
            f"{job.store}/{job.split}/images must be uint8 (N, 784); "
            f"got {images.dtype} {images.shape} instead"
        )
    if labels.shape != images.shape[:1]:
        raise DataError(
            f"{job.store}/{job.split}: {images.shape[0]} images but {labels.shape[0]} labels"
        )
    return images, labels


def prediction_arrays(images: da.Array, job: ScoreJob) -> dict[str, da.Array]:
    """One lazy uint8 (N,) prediction array per model."""
    return {
        name: images.map_blocks(
            predict_partition, name, job.models, job.ort_threads,
            drop_axis=1, dtype=np.uint8, meta=np.empty((0,), np.uint8), token=f"predict-{name}",
        )
        for name in MODEL_NAMES
    }


def confusion_array(labels: da.Array, predictions: da.Array) -> da.Array:
    """Lazy (10, 10) confusion counts, reduced over the partitions."""
    n_parts = len(labels.chunks[0])
    per_partition = da.map_blocks(
        partition_confusion, labels, predictions,
        new_axis=[1, 2], chunks=((1,) * n_parts, (10,), (10,)), dtype=np.int64,
        token="partition-confusion",
    )
    return per_partition.sum(axis=0)


def misclassified_array(labels: da.Array, predictions: da.Array, limit: int) -> da.Array:
    """Lazy (partitions, limit, 3) sample of misclassified rows: index, true, predicted."""
    offsets = np.cumsum((0, *labels.chunks[0][:-1]))
    n_parts = len(offsets)

    def sample(lab: np.ndarray, pred: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        index = block_info[0]["chunk-location"][0] if block_info else 0
        return partition_misclassified(lab, pred, int(offsets[index]), limit)

    return da.map_blocks(
        sample, labels, predictions, new_axis=[1, 2],
        chunks=((1,) * n_parts, (limit,), (3,)), dtype=np.int64, token="misclassified",
    )


def create_prediction_store(path: Path, n_images: int, partition_rows: int) -> dict[str, zarr.Array]:
    """Empty uint8 (N,) arrays, one per model, chunked exactly like the Dask partitions."""
    group = zarr.open_group(str(path), mode="w")
    chunk = max(1, min(partition_rows, n_images))
    return {
        name: group.create_array(
            name, shape=(n_images,), chunks=(chunk,), dtype=np.uint8,
            compressors=zarr.codecs.ZstdCodec(level=3), fill_value=0,
        )
        for name in MODEL_NAMES
    }


def score(client: Client, job: ScoreJob, show_progress: bool = True) -> ScoreResult:
    """Run the graph on `client`; write predictions to `job.predictions` atomically."""
    if job.predictions.exists():
        raise StoreExistsError(f"{job.predictions}: predictions already exist; choose another --out")
    images, labels = open_split(job)
    predictions = prediction_arrays(images, job)
    tmp = temporary_sibling(job.predictions)
    try:
        targets = create_prediction_store(tmp, images.shape[0], job.partition_rows)
        stored = da.store(
            [predictions[n] for n in MODEL_NAMES], [targets[n] for n in MODEL_NAMES],
            lock=False, compute=False,
        )
        confusions = [confusion_array(labels, predictions[n]) for n in MODEL_NAMES]
        samples = [
            misclassified_array(labels, predictions[n], job.sample_misclassified)
            for n in MODEL_NAMES
        ]
        start = time.perf_counter()
        with get_task_stream(client) as stream:
            futures = client.compute([stored, *confusions, *samples])
            if show_progress:
                progress(futures)
            results = client.gather(futures)
        wall = time.perf_counter() - start
        tmp.rename(job.predictions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ScoreResult(
        n_images=int(images.shape[0]),
        partitions=len(images.chunks[0]),
        confusion={n: np.asarray(c) for n, c in zip(MODEL_NAMES, results[1:3])},
        wall_seconds=wall,
        task_seconds=task_seconds_by_model(stream.data),
        misclassified={
            n: first_rows(np.asarray(m), job.sample_misclassified)
            for n, m in zip(MODEL_NAMES, results[3:])
        },
    )


def first_rows(samples: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` real (index, true, predicted) rows of stacked partition samples."""
    rows = samples.reshape(-1, 3)
    return rows[rows[:, 0] >= 0][:limit]


def task_seconds_by_model(records: list[dict[str, Any]]) -> dict[str, float]:
    """Summed compute time of each model's prediction tasks, from the scheduler's task stream."""
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        prefix = key_split(record["key"])
        for name in MODEL_NAMES:
            if prefix == f"predict-{name}":
                totals[name] += sum(
                    s["stop"] - s["start"] for s in record["startstops"] if s["action"] == "compute"
                )
    return {name: totals[name] for name in MODEL_NAMES}


def score_in_process(job: ScoreJob) -> dict[str, np.ndarray]:
    """The same predictions computed in this process without a cluster (the reference)."""
    images, _ = open_split(job)
    with dask.config.set(scheduler="synchronous"):
        arrays = prediction_arrays(images, job)
        return {name: arrays[name].compute() for name in MODEL_NAMES}
