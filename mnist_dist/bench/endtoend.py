"""End-to-end scoring (Zarr in → predictions + metrics out) on Dask and in one process, the
dask-ml peers, scaling over workers, and per-worker peak memory."""

from __future__ import annotations

import logging
import shutil
import statistics
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import zarr
from distributed import Client
from threadpoolctl import threadpool_limits

from mnist_dist.bench.baselines import parallel_post_fit_knn, parallel_post_fit_onnx
from mnist_dist.cluster import ClusterSpec, local_cluster
from mnist_dist.data.store import zarr_array
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors
from mnist_dist.models.knn import KnnModel
from mnist_dist.models.outputs import predict_partition
from mnist_dist.models.scaler import Scaler
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.predictions import create_prediction_store
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.scoring.tasks import score_block
from mnist_dist.worker_memory import peak_rss, reset_peak_rss, rss

log = logging.getLogger(__name__)


def warm_worker(ref: ModelRef, ort_threads: int) -> int:
    """Load both models into this process's cache; returns its resident bytes afterwards."""
    load_predictors(ref, ort_threads)
    return rss()


def warm(client: Client, ref: ModelRef, ort_threads: int) -> dict[str, int]:
    """Models loaded on every worker (outside any timing); resident bytes per worker."""
    return client.run(warm_worker, ref, ort_threads)


def job_for(
    store: str, split: str, ref: ModelRef, rows: int, ort_threads: int, workdir: Path, tag: str
) -> ScoreJob:
    """A scoring job writing into a fresh folder under `workdir`."""
    run_dir = workdir / f"{tag}-{rows}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    return ScoreJob(store=store, run_dir=run_dir, models=ref, split=split, partition_rows=rows,
                    ort_threads=ort_threads)


def dask_run(
    client: Client, store: str, split: str, ref: ModelRef, rows: int, ort_threads: int,
    workdir: Path,
) -> dict[str, Any]:
    """One `score()` run: wall seconds and each worker's peak resident bytes during it."""
    job = job_for(store, split, ref, rows, ort_threads, workdir, "dask")
    try:
        client.run(reset_peak_rss)
        result = score_graph(client, job, show_progress=False)
        peaks = client.run(peak_rss)
    finally:
        shutil.rmtree(job.run_dir, ignore_errors=True)
    return {"seconds": result.wall_seconds, "images": result.n_images,
            "partitions": result.partitions, "peak_rss": peaks}


def in_process_run(
    store: str, split: str, ref: ModelRef, rows: int, ort_threads: int, threads: int,
    workdir: Path, load_inside: bool = False,
) -> dict[str, Any]:
    """The same work without Dask: the same per-partition task body (read Zarr, both models,
    write Zarr, confusion) on a pool of `threads` threads, BLAS single-threaded per call.
    The models are loaded before the timing, or inside it when `load_inside` (run it in a
    fresh process then: a process loads them once)."""
    job = job_for(store, split, ref, rows, ort_threads, workdir, "inproc")
    images = zarr_array(store, f"{split}/images")
    labels = zarr_array(store, f"{split}/labels")
    n_images = int(images.shape[0])
    if not load_inside:
        load_predictors(ref, ort_threads)

    def one(index: int) -> dict[str, Any]:
        start = index * rows
        return score_block(np.asarray(images[start : start + rows]),
                           np.asarray(labels[start : start + rows]), index, start, job)

    try:
        create_prediction_store(job, n_images, run_id="bench-inproc")
        started = time.perf_counter()
        if load_inside:
            load_predictors(ref, ort_threads)
        with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
            markers = list(pool.map(one, range(-(-n_images // rows))))
        confusion = {name: np.sum([m["confusion"][name] for m in markers], axis=0)
                     for name in job.model_names}
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(job.run_dir, ignore_errors=True)
    return {"seconds": seconds, "images": n_images, "partitions": len(markers),
            "correct": {name: int(np.trace(c)) for name, c in confusion.items()}}


def end_to_end(
    client: Client, store: str, split: str, ref: ModelRef, partition_sizes: tuple[int, ...],
    ort_threads: int, threads: int, repeats: dict[int, int], workdir: Path,
) -> list[dict[str, Any]]:
    """Dask vs one process for each partition size (`repeats[rows]` runs of each, alternating,
    so both see the same machine load); the ratio of medians is Dask's efficiency."""
    rows_out = []
    for rows in partition_sizes:
        dask_runs, local_runs = [], []
        for _ in range(repeats.get(rows, 1)):
            dask_runs.append(dask_run(client, store, split, ref, rows, ort_threads, workdir))
            local_runs.append(
                in_process_run(store, split, ref, rows, ort_threads, threads, workdir)
            )
        n_images = dask_runs[0]["images"]
        dask_seconds = statistics.median(r["seconds"] for r in dask_runs)
        local_seconds = statistics.median(r["seconds"] for r in local_runs)
        peaks: dict[str, int] = {}
        for run in dask_runs:
            for worker, value in run["peak_rss"].items():
                peaks[worker] = max(peaks.get(worker, 0), value)
        rows_out.append({
            "partition_rows": rows, "partitions": dask_runs[0]["partitions"], "images": n_images,
            "dask_seconds": [r["seconds"] for r in dask_runs],
            "in_process_seconds": [r["seconds"] for r in local_runs],
            "dask_images_per_second": n_images / dask_seconds,
            "in_process_images_per_second": n_images / local_seconds,
            "dask_over_in_process": local_seconds / dask_seconds,
            "worker_peak_rss": peaks,
            "max_worker_peak_rss": max(peaks.values()) if peaks else None,
        })
        log.info("partition %d: Dask %.0f images/s, one process %.0f images/s", rows,
                 rows_out[-1]["dask_images_per_second"],
                 rows_out[-1]["in_process_images_per_second"])
    return rows_out


def standardise(block: np.ndarray, scaler: Scaler) -> np.ndarray:
    """Standardised float64 pixels of a uint8 block: what the scikit-learn reference is fed."""
    return scaler.transform(block, np.float64)


def timed_compute(array: da.Array) -> tuple[float, np.ndarray]:
    """Seconds to compute `array` on the current client, and its value."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        # dask-ml ships the estimator inside the graph; Dask warns about it on every run.
        warnings.simplefilter("ignore", UserWarning)
        value = array.compute()
    return time.perf_counter() - start, np.asarray(value)


def peers(
    client: Client, store: str, split: str, ref: ModelRef, knn_model: KnnModel, rows: int,
    ort_threads: int,
) -> dict[str, Any]:
    """Ours vs dask-ml `ParallelPostFit` over the same dask array, predictions only, per model."""
    images = da.from_zarr(store, component=f"{split}/images", chunks=(rows, 784))
    n_images = int(images.shape[0])
    meta = np.empty((0,), dtype=np.uint8)
    out: dict[str, Any] = {"partition_rows": rows, "images": n_images}
    for name in ("knn", "mlp"):
        ours = images.map_blocks(predict_partition, name, ref, ort_threads, drop_axis=1,
                                 dtype=np.uint8, meta=meta)
        if name == "knn":
            standardised = images.map_blocks(standardise, knn_model.scaler, dtype=np.float64)
            peer = parallel_post_fit_knn(knn_model).predict(standardised)
            label = "ParallelPostFit(KNeighborsClassifier(3))"
        else:
            peer = parallel_post_fit_onnx(ref).predict(images)
            label = "ParallelPostFit(ONNX predict)"
        ours_seconds, ours_values = timed_compute(ours)
        peer_seconds, peer_values = timed_compute(peer)
        out[name] = {
            "peer": label,
            "ours_images_per_second": n_images / ours_seconds,
            "peer_images_per_second": n_images / peer_seconds,
            "ours_over_peer": peer_seconds / ours_seconds,
            "predictions_agree": float((ours_values == peer_values).mean()),
        }
        log.info("%s: ours %.0f images/s, %s %.0f images/s", name,
                 out[name]["ours_images_per_second"], label, out[name]["peer_images_per_second"])
    return out


def scaling(
    worker_counts: tuple[int, ...], store: str, split: str, ref: ModelRef, rows: int,
    workdir: Path, reuse: dict[int, dict[str, Any]],
) -> list[dict[str, Any]]:
    """End-to-end images/s with 1, 2, … single-threaded local workers, and per core."""
    results = []
    for n_workers in worker_counts:
        if n_workers in reuse:
            run = reuse[n_workers]
        else:
            spec = ClusterSpec(n_workers=n_workers, threads_per_worker=1)
            with local_cluster(spec) as cluster, Client(cluster) as client:
                warm(client, ref, 1)
                run = dask_run(client, store, split, ref, rows, 1, workdir)
        rate = run["images"] / run["seconds"]
        results.append({"workers": n_workers, "cores": n_workers, "images_per_second": rate,
                        "images_per_second_per_core": rate / n_workers,
                        "max_worker_peak_rss": max(run["peak_rss"].values())})
        log.info("%d worker(s): %.0f images/s", n_workers, rate)
    return results


def subset_store(store: str, split: str, n_rows: int, path: Path) -> str:
    """A store holding the first `n_rows` of `split` (same chunks), for memory-vs-size runs."""
    target = zarr.open_group(str(path), mode="w")
    for name in ("images", "labels"):
        array = zarr_array(store, f"{split}/{name}")
        part = np.asarray(array[:n_rows])
        created = target.create_array(f"{split}/{name}", shape=part.shape, dtype=part.dtype,
                                      chunks=array.chunks)
        created[...] = part
    return str(path)


def memory_vs_images(
    client: Client, store: str, split: str, ref: ModelRef, rows: int, ort_threads: int,
    workdir: Path, full_run: dict[str, Any],
) -> dict[str, Any]:
    """Peak worker memory scoring half the images vs all of them, same partition size."""
    n_images = int(full_run["images"])
    half = subset_store(store, split, max(1, n_images // 2), workdir / "half.zarr")
    try:
        half_run = dask_run(client, half, split, ref, rows, ort_threads, workdir)
    finally:
        shutil.rmtree(workdir / "half.zarr", ignore_errors=True)
    full_peak = max(full_run["worker_peak_rss"].values())
    half_peak = max(half_run["peak_rss"].values())
    return {
        "partition_rows": rows,
        "runs": [{"images": half_run["images"], "max_worker_peak_rss": half_peak},
                 {"images": n_images, "max_worker_peak_rss": full_peak}],
        "peak_ratio_full_over_half": full_peak / half_peak,
    }
