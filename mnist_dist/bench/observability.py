"""What the job's observability costs: the main job end to end with spans, fine performance
metrics and its /metrics reporting on, and with all of them off (the `SWITCH` setting), in
paired rounds on the same warm client so both see the same machine load."""

from __future__ import annotations

import logging
import shutil
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.config
from distributed import Client

from mnist_dist.bench.endtoend import job_for
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.observability.spans import SWITCH
from mnist_dist.scoring.graph import score_graph

if TYPE_CHECKING:
    from mnist_dist.bench.run import BenchSpec

log = logging.getLogger(__name__)

FIGURE = "observability_overhead"
MAXIMUM = 0.02  # of end-to-end throughput
MEANING = "end-to-end throughput lost to spans, fine metrics and /metrics reporting (paired)"
ROUNDS = 7  # pairs of runs, on then off or off then on, alternating; 2 when quick


def timed_run(client: Client, store: str, split: str, ref: ModelRef, rows: int,
              ort_threads: int, workdir: Path, on: bool) -> float:
    """Seconds of one whole `score_graph` call (the time table's query included) with the
    job's observability `on` or off."""
    job = job_for(store, split, ref, rows, ort_threads, workdir, "observed" if on else "bare")
    try:
        with dask.config.set({SWITCH: on}):
            started = time.perf_counter()
            score_graph(client, job, show_progress=False)
            return time.perf_counter() - started
    finally:
        shutil.rmtree(job.run_dir, ignore_errors=True)


def measure(client: Client, spec: BenchSpec, store: str, ref: ModelRef, ort_threads: int,
            workdir: Path) -> dict[str, Any]:
    """bench.json's `observability`: paired on/off rounds at the default partition size; the
    overhead is 1 − the median of the rounds' off/on time ratios (throughput lost)."""
    rows, rounds = spec.default_partition_rows, 2 if spec.quick else ROUNDS
    on_seconds, off_seconds = [], []
    for index in range(rounds):
        for on in (True, False) if index % 2 == 0 else (False, True):
            seconds = timed_run(client, store, spec.split, ref, rows, ort_threads, workdir, on)
            (on_seconds if on else off_seconds).append(seconds)
    ratios = [off / on for on, off in zip(on_seconds, off_seconds, strict=True)]
    overhead = 1.0 - statistics.median(ratios)
    log.info("observability overhead: %.1f%% of end-to-end throughput (%d paired rounds)",
             100 * overhead, rounds)
    return {"partition_rows": rows, "rounds": rounds, "on_seconds": on_seconds,
            "off_seconds": off_seconds, "off_over_on": ratios, "overhead": overhead,
            "target": MAXIMUM, "met": overhead <= MAXIMUM}


def target_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    """The section's target as a row of bench.json's `targets` (a maximum)."""
    return [{"figure": FIGURE, "meaning": MEANING, "value": section["overhead"],
             "target": MAXIMUM, "met": section["met"]}]
