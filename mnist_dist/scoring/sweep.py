"""Throughput vs batch size of each predictor, measured inside one worker process: the one
sweep spec and timing loop (the score report's table; `bench.sweep` adds its baselines and
rounds), and running it pinned to one worker that may leave."""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import Client, Future

from mnist_dist.cluster import workers_info
from mnist_dist.data.partitioning import SCORE_BYTES_PER_ROW
from mnist_dist.data.store import zarr_array
from mnist_dist.errors import ClusterError, SpecError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelPayload, load_predictors
from mnist_dist.observability.spans import SWEEP_SPAN, job_span
from mnist_dist.settings import setting_field

log = logging.getLogger(__name__)

SWEEP_ATTEMPTS = 3  # workers lost by one sweep before it gives up
SWEEP_POLL_SECONDS = 1.0  # how often a waiting sweep checks that its worker is still there
SWEEP_MEMORY_FRACTION = 0.5  # of a worker's memory limit the sweep's largest batch may need


@dataclass(frozen=True)
class SweepSpec:
    """Timing of each (predictor, batch size): at least `min_repeats` calls and `min_seconds`,
    stopping early once `max_seconds` is spent (at least one call) or at `max_repeats`."""

    batch_sizes: tuple[int, ...] = setting_field("score.batch-sizes", tuple)
    min_repeats: int = 1
    max_repeats: int = 50
    min_seconds: float = setting_field("score.sweep-seconds")
    max_seconds: float = math.inf
    timeout: float = setting_field("score.sweep-timeout")  # the whole sweep, waiting included

    def __post_init__(self) -> None:
        if any(size < 1 for size in self.batch_sizes):  # () switches the sweep off
            raise SpecError(
                f"batch sizes must be positive integers; got {self.batch_sizes} instead"
            )
        if not 1 <= self.min_repeats <= self.max_repeats:
            raise SpecError(
                f"need 1 <= min_repeats <= max_repeats; got {self.min_repeats}, "
                f"{self.max_repeats} instead"
            )
        if not math.isfinite(self.min_seconds) or self.min_seconds < 0:
            raise SpecError(
                f"sweep seconds must be a finite number >= 0; got {self.min_seconds} instead"
            )
        if math.isnan(self.max_seconds) or self.max_seconds <= 0:
            raise SpecError(f"max_seconds must be > 0; got {self.max_seconds} instead")
        if not math.isfinite(self.timeout) or self.timeout <= 0:
            raise SpecError(
                "mnist-dist.score.sweep-timeout must be a finite number of seconds > 0; "
                f"got {self.timeout} instead"
            )


def sample_images(store: str, split: str, n: int) -> np.ndarray:
    """The first `n` images of a split, repeated cyclically when the split is smaller."""
    images = zarr_array(store, f"{split}/images")
    head = np.asarray(images[: min(n, images.shape[0])])
    return np.resize(head, (n, head.shape[1])) if len(head) < n else head


def time_batches(
    predict: Any, images: np.ndarray, batch: int, spec: SweepSpec, warmup_rows: int | None = None
) -> list[float]:
    """Seconds of each call of `predict` on `batch` images (different rows each call), after
    one warm-up call on `warmup_rows` rows (default: the whole batch)."""
    predict(images[: batch if warmup_rows is None else min(batch, warmup_rows)])
    times: list[float] = []
    spent = 0.0
    while len(times) < spec.max_repeats:
        offset = (len(times) * batch) % max(1, len(images) - batch + 1)
        start = time.perf_counter()
        predict(images[offset : offset + batch])
        times.append(time.perf_counter() - start)
        spent += times[-1]
        enough = len(times) >= spec.min_repeats and spent >= spec.min_seconds
        if enough or spent >= spec.max_seconds:
            break
    return times


def batch_rate(model: str, batch: int, times: list[float]) -> dict[str, Any]:
    """Median seconds per batch and images/s of one (model, batch size)."""
    median = statistics.median(times)
    return {"model": model, "batch_size": batch, "seconds_per_batch": median,
            "images_per_second": batch / median}


def batch_sweep(
    ref: ModelRef, store: str, split: str, spec: SweepSpec, ort_threads: int = 1,
    payload: ModelPayload | None = None,
) -> list[dict[str, Any]]:
    """For each model and batch size: median seconds per batch and images/s. Runs on a worker."""
    predictors = load_predictors(ref, ort_threads, payload)
    images = sample_images(store, split, max(spec.batch_sizes))
    rows = []
    for name, predict in (("knn", predictors.knn.predict), ("mlp", predictors.mlp.predict)):
        for batch in spec.batch_sizes:
            times = time_batches(predict, images, batch, spec)
            rate = batch_rate(name, batch, times)
            rows.append({**rate, "ms_per_image": 1e3 * rate["seconds_per_batch"] / batch,
                         "repeats": len(times)})
    return rows



def measure_on_one_worker(
    client: Client, ref: ModelRef, store: str, split: str, sweep: SweepSpec, ort_threads: int,
    payload: Future | None = None,
) -> list[dict[str, Any]]:
    """The batch-size sweep of `split`'s images, run inside one worker so it sees what the
    tasks see; under its own span, apart from the scoring graph's."""
    if not sweep.batch_sizes:
        return []
    with job_span(SWEEP_SPAN):
        return run_on_one_worker(
            client, sweep.timeout, batch_sweep, ref, store, split, sweep, ort_threads, payload,
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
