"""The score job end to end: inputs ready, scoring on Dask, throughput sweep, report files."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from distributed import Client, Future, performance_report

from mnist_dist import scoring
from mnist_dist.atomic import temporary_sibling
from mnist_dist.cluster import (
    ClusterSpec,
    check_store_readable,
    check_versions,
    client_for,
    cluster_facts,
    cluster_faults,
    ort_threads_for,
    ship_models_if_needed,
    workers_info,
)
from mnist_dist.data.store import check_split, zarr_array
from mnist_dist.ensure import ensure_models, ensure_store
from mnist_dist.errors import ClusterError, SpecError
from mnist_dist.locations import absolute, is_url
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import validate_models
from mnist_dist.partitioning import SCORE_BYTES_PER_ROW, score_partition_rows
from mnist_dist.predict import MODEL_NAMES
from mnist_dist.report.document import build_report, write_report
from mnist_dist.report.render import render_report
from mnist_dist.run_state import PERFORMANCE_REPORT, locked_run_folder, new_run_folder
from mnist_dist.scoring import ScoreJob, ScoreResult
from mnist_dist.settings import setting_field
from mnist_dist.storage import check_buckets
from mnist_dist.throughput import SweepSpec, batch_sweep
from mnist_dist.training import TrainSpec, check_model_folder
from mnist_dist.worker_memory import rss

log = logging.getLogger(__name__)

SWEEP_ATTEMPTS = 3  # workers lost by one sweep before it gives up
SWEEP_POLL_SECONDS = 1.0  # how often a waiting sweep checks that its worker is still there
SWEEP_MEMORY_FRACTION = 0.5  # of a worker's memory limit the sweep's largest batch may need


def default_out() -> Path:
    """A new run folder per invocation (`runs/score-<time>-<pid>`)."""
    return new_run_folder("score")


@dataclass(frozen=True)
class ScoreSpec:
    """Everything `python -m jobs.score` needs; defaults are what a laptop user gets.

    `store` and `models` are local paths or fsspec URLs (`file://`, `s3://`, …) that the
    workers read directly; `predictions` (default `OUT/predictions.zarr`) is where they write.
    Partitions hold `partition_rows` rows, or else as many whole chunks as fit `partition_mb`.
    """

    store: str = setting_field("store")
    models: str = setting_field("models")
    out: Path = field(default_factory=default_out)
    predictions: str = ""
    split: str = setting_field("score.split")
    partition_mb: float = setting_field("score.partition-mb")
    partition_rows: int | None = None
    model_names: tuple[str, ...] = MODEL_NAMES
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    sweep: SweepSpec = field(default_factory=SweepSpec)
    train_epochs: int = setting_field("train.epochs")
    show_progress: bool = True
    performance_report: bool = False
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))  # a str from a Python caller
        rows = self.partition_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise SpecError(f"partition_rows must be an integer >= 1, or None for partition_mb; "
                            f"got {rows!r} instead")


def ensure_inputs(spec: ScoreSpec) -> tuple[str, ModelRef]:
    """Absolute store location and a verified model reference; local ones are built if missing."""
    store, models = absolute(spec.store), absolute(spec.models)
    if not is_url(store) and not is_url(models) and not Path(models).exists():
        # ensure_models trains only into a missing folder: refuse before building anything
        # when its models would land in the wrong place.
        check_model_folder(TrainSpec(store=Path(store), models=Path(models),
                                     epochs=spec.train_epochs))
    if not is_url(store):
        ensure_store(Path(store))
        if not is_url(models):
            ensure_models(Path(models), Path(store), spec.train_epochs)
    return store, ModelRef.from_location(models)


def score(spec: ScoreSpec, *, client: Client | None = None) -> dict[str, Any]:
    """Run the main job on `client` (left open), or on a LocalCluster started for it; returns
    the report document (also written to `spec.out/report.json`, `.html` and `.md`).

    >>> import mnist_dist as md                                           # doctest: +SKIP
    >>> report = md.score(md.ScoreSpec(split="test"), client=client)     # doctest: +SKIP
    >>> report["models"]["knn"]["accuracy"]                              # doctest: +SKIP
    """
    check_buckets({"--store": spec.store, "--models": spec.models,
                   "--predictions": spec.predictions})
    store, ref = ensure_inputs(spec)
    manifest = validate_models(ref)  # before any work: a malformed model is one error line
    check_split(store, spec.split)  # here, not on a worker: bad data is one error line
    rows = spec.partition_rows or score_partition_rows(store, spec.split, spec.partition_mb)
    with locked_run_folder(spec.out), cluster_faults():
        return score_and_report(spec, store, ref, manifest, rows, client)


def score_and_report(
    spec: ScoreSpec, store: str, ref: ModelRef, manifest: dict[str, Any], rows: int,
    caller: Client | None = None,
) -> dict[str, Any]:
    """Score on the cluster (the `caller`'s client, or a new one), measure throughput, write
    report.json and its renderings."""
    with client_for(spec.cluster, caller) as client:
        check_versions(client)
        check_store_readable(client, store, spec.split)
        check_sweep_memory(client, spec.sweep)
        payload = ship_models_if_needed(client, ref)
        ort_threads = ort_threads_for(client)
        job = ScoreJob(
            store=store, run_dir=spec.out, models=ref, predictions=spec.predictions,
            split=spec.split, partition_rows=rows, ort_threads=ort_threads,
            model_names=spec.model_names, resume=spec.resume,
        )
        started = time.perf_counter()
        with optional_performance_report(spec):
            result = scoring.score(client, job, spec.show_progress, payload)
        log.info("scored %d images in %.1f s; measuring throughput vs batch size",
                 result.n_images, time.perf_counter() - started)
        throughput = measure_on_one_worker(client, ref, store, spec, ort_threads, payload)
        cluster = {**cluster_facts(client), "ort_threads": ort_threads,
                   "models_shipped": payload is not None,
                   "worker_rss_bytes": worker_memory(client)}
    dataset = {
        "store": store, "split": spec.split, "partition_rows": rows,
        "store_split": zarr.open_group(store, mode="r").attrs.get("split"),
    }
    outputs = {"predictions": job.predictions, "models": ref.directory}
    if spec.performance_report:
        outputs["performance_report"] = str((spec.out / PERFORMANCE_REPORT).resolve())
    gallery = gallery_pixels(store, spec.split, result)
    report = build_report(result, dataset, cluster, manifest, throughput, outputs, gallery)
    write_report(report, spec.out)
    render_report(report, spec.out)
    return report


def gallery_pixels(store: str, split: str, result: ScoreResult) -> dict[str, np.ndarray]:
    """Pixels (k, 784) of each model's sampled misclassified digits: a few rows, not the data."""
    images = zarr_array(store, f"{split}/images")
    return {
        name: np.asarray(images.get_orthogonal_selection((rows[:, 0], slice(None))))
        if len(rows) else np.empty((0, 784), np.uint8)
        for name, rows in result.misclassified.items()
    }


@contextlib.contextmanager
def optional_performance_report(spec: ScoreSpec) -> Iterator[None]:
    """Dask's performance report around the scoring graph, when asked for: written aside, then
    renamed to OUT/dask-performance.html (replacing a link there, never what it points to)."""
    if not spec.performance_report:
        yield
        return
    tmp = temporary_sibling(spec.out / PERFORMANCE_REPORT)
    try:
        with performance_report(filename=str(tmp)):
            yield
        os.replace(tmp, spec.out / PERFORMANCE_REPORT)
    finally:
        tmp.unlink(missing_ok=True)


def worker_memory(client: Client) -> dict[str, int]:
    """Resident memory of each worker process after the run (models loaded), in bytes."""
    return client.run(rss)


def measure_on_one_worker(
    client: Client, ref: ModelRef, store: str, spec: ScoreSpec, ort_threads: int,
    payload: Future | None = None,
) -> list[dict[str, Any]]:
    """The batch-size sweep, run inside one worker so it sees what the tasks see."""
    if not spec.sweep.batch_sizes:
        return []
    return run_on_one_worker(
        client, spec.sweep.timeout, batch_sweep, ref, store, spec.split, spec.sweep,
        ort_threads, payload,
    )


def check_sweep_memory(client: Client, sweep: SweepSpec) -> None:
    """SpecError before any work when the sweep's largest batch would not fit in a worker's
    memory limit (about SCORE_BYTES_PER_ROW per row, as a scoring partition)."""
    if not sweep.batch_sizes:
        return
    limits = [w.get("memory_limit") or 0
              for w in workers_info(client).values()]
    limit = min((m for m in limits if m), default=0)  # 0: no limit
    needed = max(sweep.batch_sizes) * SCORE_BYTES_PER_ROW
    if limit and needed > limit * SWEEP_MEMORY_FRACTION:
        raise SpecError(
            f"--batch-sizes: a batch of {max(sweep.batch_sizes)} images needs about "
            f"{needed / 2**20:.0f} MiB in one worker, more than {SWEEP_MEMORY_FRACTION:.0%} of "
            f"its memory limit ({limit / 2**20:.0f} MiB); choose smaller batch sizes"
        )


def run_on_one_worker(client: Client, timeout: float, function: Any, *args: Any) -> Any:
    """`function(*args)` pinned to one worker; pinned again to another when that worker leaves
    (a restarted worker has a new address), a ClusterError after `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for _ in range(SWEEP_ATTEMPTS):
        workers = workers_info(client)
        if not workers:
            raise ClusterError("no worker is left to run the throughput sweep")
        worker = min(workers)
        future = client.submit(function, *args, workers=[worker], allow_other_workers=False,
                               pure=False)
        try:
            done, result = wait_while_worker_lives(client, future, worker, deadline, timeout)
        finally:
            future.cancel()  # no-op once finished; frees a task stuck on a departed worker
        if done:
            return result
        log.warning("worker %s left during the throughput sweep; running it on another worker",
                    worker)
    raise ClusterError(f"the throughput sweep lost its worker {SWEEP_ATTEMPTS} times; "
                       "the workers may lack memory for its batch sizes (--batch-sizes)")


def wait_while_worker_lives(
    client: Client, future: Future, worker: str, deadline: float, timeout: float
) -> tuple[bool, Any]:
    """(True, result) once `future` is done; (False, None) as soon as `worker` is gone."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClusterError(
                f"the throughput sweep did not finish within {timeout:g} s (setting "
                "mnist-dist.score.sweep-timeout); use smaller --batch-sizes or --sweep-seconds"
            )
        try:
            return True, future.result(timeout=min(SWEEP_POLL_SECONDS, remaining))
        except TimeoutError:
            if worker not in workers_info(client):
                return False, None
