"""Fresh workers (LocalCluster only): the main job on workers that have just started, so that
its timing includes each worker's model load as `jobs.score`'s does, against the in-process
loop that loads the models inside its timing too (in a fresh process: a process loads them
once); and a worker joining the running cluster, with the job's model loader registered, until
its models are usable. On both sides the code is imported before the timing (the same module:
an interpreter's start-up, not the job's), the models are not."""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

from mnist_dist.bench import endtoend
from mnist_dist.bench.endtoend import dask_run, in_process_run
from mnist_dist.cluster import ClusterSpec, local_cluster, workers_info
from mnist_dist.errors import MnistDistError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_seconds
from mnist_dist.worker_plugins import models_loaded_on_join

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0  # seconds for a joining worker to start and load the models
POLL_SECONDS = 0.02


def in_fresh_process(store: str, split: str, ref: ModelRef, rows: int, ort_threads: int,
                     threads: int, workdir: Path) -> dict[str, Any]:
    """`in_process_run` with the model load inside its timing, in a new interpreter (spawned:
    nothing loaded; its imports happen before the timing starts, as a worker's do)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(in_process_run, store, split, ref, rows, ort_threads, threads,
                           workdir, True).result()


def worker_ready(cluster: LocalCluster, client: Client, ref: ModelRef, ort_threads: int,
                 timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """Scale `cluster` up by one worker with the job's model loader registered (as
    `jobs.score` does), wait for it to join, then until its models are loaded: the seconds its
    load took from joining (`load_seconds`, measured on the worker) and the seconds this
    client waited after seeing it join."""
    before = set(workers_info(client))
    with models_loaded_on_join(client, ref, ort_threads, None):
        cluster.scale(len(before) + 1)
        client.wait_for_workers(len(before) + 1, timeout=timeout)
        joined = time.perf_counter()
        new = min(set(workers_info(client)) - before)
        while (seconds := client.run(load_seconds, ref, ort_threads, workers=[new])[new]) is None:
            if time.perf_counter() - joined > timeout:
                raise MnistDistError(f"bench: worker {new} had not loaded the models "
                                     f"{timeout:g} s after joining")
            time.sleep(POLL_SECONDS)
        waited = time.perf_counter() - joined
    return {"worker": new, "load_seconds": seconds, "waited_after_join_seconds": waited}


def measure(cluster: ClusterSpec, facts: dict[str, Any], store: str, split: str,
            ref: ModelRef, rows: int, ort_threads: int, repeats: int, workdir: Path
            ) -> dict[str, Any]:
    """bench.json's `fresh_workers`: `repeats` rounds of the default job on a new LocalCluster
    shaped like the bench's (models loaded inside the timing) then a joining worker, and the
    in-process loop in a fresh process; ratios of the medians."""
    empty = {"runs": [], "score_over_in_process_with_load": None, "worker_ready_seconds": None}
    if cluster.scheduler is not None:
        return {"skipped": "fresh workers are timed only on a LocalCluster (a scheduler was "
                "given)", **empty}
    n_workers, threads = facts["workers"], facts["threads"]
    shape = ClusterSpec(n_workers=n_workers, threads_per_worker=max(1, threads // n_workers))
    runs = []
    for _ in range(repeats):
        with local_cluster(shape) as fresh, Client(fresh) as client:
            client.run(importlib.import_module, endtoend.__name__)  # as the fresh process's
            dask = dask_run(client, store, split, ref, rows, ort_threads, workdir)
            ready = worker_ready(fresh, client, ref, ort_threads)
        local = in_fresh_process(store, split, ref, rows, ort_threads, threads, workdir)
        runs.append({"images": dask["images"], "dask_seconds": dask["seconds"],
                     "in_process_seconds": local["seconds"], **ready})
        log.info("fresh workers: Dask %.2f s, one fresh process %.2f s (both loading the "
                 "models); a joining worker ready in %.2f s", dask["seconds"], local["seconds"],
                 ready["load_seconds"])
    dask_seconds = statistics.median(r["dask_seconds"] for r in runs)
    local_seconds = statistics.median(r["in_process_seconds"] for r in runs)
    return {
        "skipped": None, "partition_rows": rows, "workers": n_workers, "runs": runs,
        "dask_images_per_second": runs[0]["images"] / dask_seconds,
        "in_process_images_per_second": runs[0]["images"] / local_seconds,
        "score_over_in_process_with_load": local_seconds / dask_seconds,
        "worker_ready_seconds": statistics.median(r["load_seconds"] for r in runs),
    }
