"""The fixed cost of a one-partition score job (wall time minus task time), on the bench's warm
client (`md.score(spec, client=client)`) and the way a user runs it (`python -m jobs.score`,
which starts and closes its own LocalCluster)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store, zarr_array
from mnist_dist.errors import MnistDistError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.report.document import REPORT_NAME
from mnist_dist.scoring.run import run as score  # md.score
from mnist_dist.scoring.spec import ScoreSpec  # md.ScoreSpec

log = logging.getLogger(__name__)

IMAGES = 1000  # a one-partition job on 1,000 digits
# Maxima, in seconds: reported met or not, never failing the run.
TARGETS: dict[str, tuple[float, str]] = {
    "warm_fixed_seconds": (1.0, "one-partition md.score on a warm client, wall − task"),
    "fresh_wall_seconds": (15.0, "python -m jobs.score on 1,000 digits, fresh LocalCluster"),
}
WARM_RUNS = 3  # the median is reported; one when quick
FRESH_TIMEOUT = 600.0


@dataclass(frozen=True)
class FixedCostJob:
    """One partition holding every digit of `split` in `store` (rows: its N), scored with the
    models at `models`: as a `ScoreSpec` for a client, or as the `jobs.score` command line."""

    store: str
    split: str
    models: str
    rows: int

    def spec(self, out: Path) -> ScoreSpec:
        """The Python caller's spec: no throughput sweep, no progress bar."""
        return ScoreSpec(store=self.store, models=self.models, out=out, split=self.split,
                         partition_rows=self.rows, throughput=False, show_progress=False)

    def command(self, out: Path) -> list[str]:
        """The user's command line, run by this interpreter."""
        return [sys.executable, "-m", "jobs.score", "--store", self.store, "--models",
                self.models, "--split", self.split, "--out", str(out), "--no-sweep",
                "--no-progress", "--partition-rows", str(self.rows)]


def small_job(store: str, split: str, ref: ModelRef, path: Path, images: int = IMAGES
              ) -> FixedCostJob:
    """A store at `path` whose `test` split holds the first `images` digits of `split` (same
    chunk rows; its train split repeats them, unread), and the one-partition job scoring it."""
    pixels, labels = zarr_array(store, f"{split}/images"), zarr_array(store, f"{split}/labels")
    n = min(images, int(pixels.shape[0]))
    x, y = np.asarray(pixels[:n]), np.asarray(labels[:n])
    raw = RawMnist(x_train=x, y_train=y, x_test=x, y_test=y,
                   source=f"bench: first {n} digits of {store}/{split}")
    built = build_store(raw, path.resolve(), split="canonical", chunk_rows=int(pixels.chunks[0]))
    return FixedCostJob(store=str(built), split="test", models=ref.directory, rows=n)


def split_time(wall: float, report: dict[str, Any]) -> dict[str, Any]:
    """Wall seconds of a run, its task seconds (the partitions' model seconds, summed over the
    models) and the rest: fixed = wall − task."""
    task = float(sum(model["task_seconds"] for model in report["models"].values()))
    return {"n_images": report["dataset"]["n_images"],
            "partitions": report["dataset"]["partitions"],
            "wall_seconds": wall, "task_seconds": task, "fixed_seconds": wall - task}


def warm(
    client: Client, store: str, split: str, ref: ModelRef, quick: bool, workdir: Path,
) -> tuple[dict[str, Any], FixedCostJob]:
    """`WARM_RUNS` (one when `quick`) one-partition `md.score` calls on `client` (models
    already loaded on its workers), each timed in this process around the call; the run of
    median fixed cost, and the job (its store under `workdir`) for `fresh`."""
    job = small_job(store, split, ref, workdir / "fixed-cost.zarr")
    runs = 1 if quick else WARM_RUNS
    samples = []
    for index in range(runs):
        out = workdir / f"fixed-warm-{index}"
        try:
            started = time.perf_counter()
            result = score(job.spec(out), client=client)
            samples.append(split_time(time.perf_counter() - started, result.report))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    median = sorted(samples, key=lambda s: s["fixed_seconds"])[len(samples) // 2]
    log.info("fixed cost on a warm client: %.2f s of %.2f s wall", median["fixed_seconds"],
             median["wall_seconds"])
    return {**median, "runs": runs,
            "fixed_seconds_runs": [s["fixed_seconds"] for s in samples]}, job


def fresh(job: FixedCostJob, workdir: Path, timeout: float = FRESH_TIMEOUT) -> dict[str, Any]:
    """`python -m jobs.score` on `job` in a subprocess (a fresh LocalCluster, started and
    closed by the job), timed around the subprocess; task seconds from its report.json."""
    out = (workdir / "fixed-fresh").resolve()
    command = job.command(out)
    try:
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise MnistDistError(f"fixed cost: `{' '.join(command[1:])}` exited "
                                 f"{done.returncode}: {done.stderr.strip()[-2000:]}")
        report = json.loads((out / REPORT_NAME).read_text())
    except subprocess.TimeoutExpired as exc:
        raise MnistDistError(f"fixed cost: `{' '.join(command[1:])}` ran past {timeout:g} s; "
                             "expected a one-partition job to finish well within it") from exc
    finally:
        shutil.rmtree(out, ignore_errors=True)
    timing = split_time(wall, report)
    log.info("fixed cost with a fresh LocalCluster: %.2f s of %.2f s wall",
             timing["fixed_seconds"], wall)
    return {**timing, "command": "python -m jobs.score " + " ".join(
        {str(out): "OUT", job.store: "STORE"}.get(part, part) for part in command[3:])}


def section(warm_run: dict[str, Any], fresh_run: dict[str, Any] | None) -> dict[str, Any]:
    """bench.json's `fixed_cost`: both runs (`fresh` None when skipped: --quick), the targets
    and whether each is met (None: not measured)."""
    values = {"warm_fixed_seconds": warm_run["fixed_seconds"],
              "fresh_wall_seconds": None if fresh_run is None else fresh_run["wall_seconds"]}
    return {"warm": warm_run, "fresh": fresh_run,
            "targets": {name: maximum for name, (maximum, _) in TARGETS.items()},
            "met": {name: None if values[name] is None else values[name] <= TARGETS[name][0]
                    for name in TARGETS}}


def target_rows(fixed: dict[str, Any]) -> list[dict[str, Any]]:
    """The section's targets as rows of bench.json's `targets` (maxima, like the others)."""
    values = {"warm_fixed_seconds": fixed["warm"]["fixed_seconds"],
              "fresh_wall_seconds": (fixed["fresh"] or {}).get("wall_seconds")}
    return [{"figure": name, "meaning": meaning, "value": values[name], "target": maximum,
             "met": fixed["met"][name]} for name, (maximum, meaning) in TARGETS.items()]
