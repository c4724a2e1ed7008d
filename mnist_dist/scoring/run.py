"""The score job end to end: inputs ready, scoring on Dask, throughput sweep, report files."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed import Client, performance_report

from mnist_dist.atomic import temporary_sibling
from mnist_dist.cluster import (
    check_store_readable,
    check_versions,
    client_for,
    cluster_facts,
    cluster_faults,
    ort_threads_for,
    ship_models_if_needed,
)
from mnist_dist.data.partitioning import SCORE_BYTES_PER_ROW, partition_rows
from mnist_dist.data.splits import Split, stamped_split
from mnist_dist.data.store import ROOT_METADATA, STORE_GROUPS
from mnist_dist.ensure import trained_models
from mnist_dist.errors import StoreNotFoundError, file_faults
from mnist_dist.locations import absolute, is_url, local_path
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelFiles, startup_facts
from mnist_dist.observability.spans import add_phases_to_performance_report
from mnist_dist.preparation.store import ensure_store
from mnist_dist.report.document import build_report, name_samples, write_report
from mnist_dist.report.render import render_report
from mnist_dist.report.schema import REPORT_NAME
from mnist_dist.run_state import PERFORMANCE_REPORT, locked_run_folder
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.result import ScoreResult
from mnist_dist.scoring.spec import ScoreJob, ScoreSpec
from mnist_dist.scoring.sweep import check_sweep_memory, measure_on_one_worker
from mnist_dist.settings import effective_settings
from mnist_dist.storage import check_buckets, storage_errors
from mnist_dist.worker_memory import rss
from mnist_dist.worker_plugins import models_loaded_on_join

log = logging.getLogger(__name__)


def ensure_inputs(spec: ScoreSpec) -> tuple[str, ModelFiles]:
    """Absolute store location and the models, read and validated once; local ones are built
    if missing, once the split is known to be there (or to be built)."""
    store = absolute(spec.store)
    check_split_can_exist(store, spec.split)
    models = trained_models(absolute(spec.models), store, spec.train_epochs)
    if not is_url(store):
        ensure_store(Path(store))
    return store, models


def check_split_can_exist(store: str, split: str) -> None:
    """Before anything is built or trained: StoreNotFoundError when the local `store` holds no
    `split`, or does not exist and would be built without it (a store on object storage is
    never built here: its split is checked when it is opened)."""
    if is_url(store):
        return
    folder = Path(local_path(store))
    if (folder / split / ROOT_METADATA).is_file():
        return
    if folder.is_dir():
        found = sorted(p.name for p in folder.iterdir() if (p / ROOT_METADATA).is_file())
        raise StoreNotFoundError(f"{store}: split {split!r} not found in the store (its groups: "
                                 f"{', '.join(found) or 'none'}); add it with jobs.ingest")
    if split not in STORE_GROUPS:
        raise StoreNotFoundError(
            f"split {split!r} not found: there is no store at {store}, and a store built from "
            f"MNIST holds only {' and '.join(STORE_GROUPS)}; pass the store that holds it with "
            "--store (relative paths start from the working directory)")


def run(spec: ScoreSpec, *, client: Client | None = None) -> ScoreResult:
    """Run the main job on `client` (left open), or on a LocalCluster started for it; writes
    `spec.out/report.json`, `.html` and `.md` and returns them as a `ScoreResult`.

    >>> import mnist_dist as md                                           # doctest: +SKIP
    >>> result = md.score(md.ScoreSpec(split="test"), client=client)     # doctest: +SKIP
    >>> result.accuracy["knn"]                                           # doctest: +SKIP
    0.9465
    """
    with storage_errors(locations=(spec.store, spec.models, spec.predictions)):
        check_buckets({"--store": spec.store, "--models": spec.models,
                       "--predictions": spec.predictions})
        return score_split(spec, client)


def score_split(spec: ScoreSpec, client: Client | None) -> ScoreResult:
    """The run itself (see `run`)."""
    # Before any work: a malformed model is one error line.
    store, models = ensure_inputs(spec)
    # Here, not on a worker: bad data is one error line; the stamp first, so a change
    # after it is seen.
    stamp, split = stamped_split(store, spec.split)
    rows = spec.partition_rows or partition_rows(spec.partition_mb, SCORE_BYTES_PER_ROW,
                                                 split.pixels.chunks[0])
    with locked_run_folder(spec.out), \
            file_faults(f"writing {spec.out}" + (f" and {spec.predictions}"
                                                 if spec.predictions else ""),
                        then="free some and finish the run with --resume"), cluster_faults():
        report = score_and_report(spec, split, models, rows, client, stamp)
    return ScoreResult(report=report, out=spec.out)


def score_and_report(
    spec: ScoreSpec, split: Split, models: ModelFiles, rows: int, caller: Client | None,
    stamp: str,
) -> dict[str, Any]:
    """Score the checked `split` (whose `split_stamp` was `stamp` before it was read) on the
    `caller`'s client or a new one, then write report.json and its renderings."""
    with client_for(spec.cluster, caller) as client:
        report = score_on(client, spec, split, models, rows, stamp)
    publish_report(report, spec.out)
    return report


def score_on(
    client: Client, spec: ScoreSpec, split: Split, models: ModelFiles, rows: int, stamp: str,
) -> dict[str, Any]:
    """Score `split` on `client` in partitions of `rows`, measure throughput when the spec asks
    for it; returns the report, not yet written (a caller may add sections first)."""
    ref, store = models.ref, split.location
    sweep = spec.measures_throughput(split.labels is not None)
    log.info("checking the workers (library versions, the store) and loading the models on "
             "each")
    check_versions(client)
    check_store_readable(client, store, spec.split)
    if sweep:
        check_sweep_memory(client, spec.sweep)
    ort_threads = ort_threads_for(client)
    payload = ship_models_if_needed(client, ref, ort_threads, models.files)
    job = ScoreJob(
        store=store, run_dir=spec.out, models=ref, predictions=spec.predictions,
        split=spec.split, partition_rows=rows, ort_threads=ort_threads,
        model_names=spec.model_names, resume=spec.resume, keep_going=spec.keep_going,
    )
    with models_loaded_on_join(client, ref, ort_threads, models.files if payload is not None else None):
        started = time.perf_counter()
        with optional_performance_report(spec):
            result = score_graph(client, job, spec.show_progress, payload,
                                 checked=(stamp, split), files=models.files)
        if spec.performance_report and result.time_phases:
            add_phases_to_performance_report(spec.out / PERFORMANCE_REPORT, result.time_phases)
        log.info("scored %d images in %.1f s", result.n_images, time.perf_counter() - started)
        throughput = []
        if sweep and result.failed:
            log.warning("no throughput sweep: %d partition(s) could not be scored",
                        len(result.failed))
        elif sweep:
            log.info("measuring throughput vs batch size %s", list(spec.sweep.batch_sizes))
            throughput = measure_on_one_worker(client, ref, store, spec.split, spec.sweep,
                                               ort_threads, payload)
        cluster = {**cluster_facts(client), "ort_threads": ort_threads,
                   "models_shipped": payload is not None,
                   "worker_rss_bytes": worker_memory(client)}
        startup, kernels = worker_startup(client, ref, ort_threads)
    dataset = {"store": store, "split": spec.split, "partition_rows": rows,
               "store_split": split.store_attrs.get("split")}
    outputs = {"predictions": job.predictions, "models": ref.directory}
    if spec.performance_report:
        outputs["performance_report"] = str((spec.out / PERFORMANCE_REPORT).resolve())
    report = build_report(result, dataset, cluster, models.manifest, throughput, outputs,
                          result.gallery, settings=settings_of(spec), startup=startup,
                          kernels=kernels)
    if split.ids is not None:
        name_samples(report, split.ids)
    return report


def publish_report(report: dict[str, Any], out: Path) -> None:
    """report.json, report.html and report.md of `report` in the run folder `out`."""
    write_report(report, out)
    with file_faults(f"writing the renderings of {out / REPORT_NAME}",
                     then=f"report.json is written: once fixed, `python -m jobs.report {out}` "
                     "renders report.html and report.md"):
        render_report(report, out)


def settings_of(spec: ScoreSpec) -> dict[str, Any]:
    """The effective settings with the values this spec ran with (a Python caller's
    `partition_mb=40` is recorded as 40, whatever the configuration says)."""
    settings = effective_settings()
    settings.update(store=spec.store, models=spec.models)
    settings["score"].update({
        "split": spec.split, "partition-mb": spec.partition_mb,
        "batch-sizes": list(spec.sweep.batch_sizes), "sweep-seconds": spec.sweep.min_seconds,
        "sweep-timeout": spec.sweep.timeout,
    })
    settings["train"]["epochs"] = spec.train_epochs
    settings["cluster"].update({
        "connect-timeout": spec.cluster.connect_timeout,
        "threads-per-worker": spec.cluster.threads_per_worker,
        "dashboard-address": spec.cluster.dashboard_address,
    })
    return settings


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


def worker_startup(client: Client, ref: ModelRef, ort_threads: int
                   ) -> tuple[dict[str, float], dict[str, dict[str, str]]]:
    """Seconds each worker that answers took to load the models of `ref` (on joining, at the
    job's start or in its first task), and the KNN GEMM kernels it chose then; a worker still
    loading them is left out."""
    facts = client.run(startup_facts, ref, ort_threads, on_error="return")
    loaded = {w: f for w, f in facts.items() if isinstance(f, dict)}
    return ({w: f["seconds"] for w, f in loaded.items()},
            {w: f["kernels"] for w, f in loaded.items() if f["kernels"]})


def worker_memory(client: Client) -> dict[str, int]:
    """Resident memory of each worker process that answers after the run (models loaded), in
    bytes; one the scheduler lost touch with meanwhile is left out, as the run is done."""
    return {w: r for w, r in client.run(rss, on_error="return").items() if isinstance(r, int)}


