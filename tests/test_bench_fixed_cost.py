"""The bench's fixed-cost section: a one-partition `md.score` on a warm client and `python -m
jobs.score` with a fresh LocalCluster. Timings are noisy: only structure and arithmetic are
checked, never a figure's size."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from mnist_dist.bench import endtoend, fixed_cost
from mnist_dist.bench.render import fixed_cost_lines
from mnist_dist.cluster import ort_threads_for
from mnist_dist.data.store import open_store
from mnist_dist.models.artifacts import ModelRef

SMALL_TEST = 600  # test digits of the small_store fixture


def check_split(run: dict[str, Any], n_images: int) -> None:
    """wall ≥ task ≥ 0, fixed = wall − task, one partition of `n_images` digits."""
    assert run["wall_seconds"] >= run["task_seconds"] >= 0
    assert run["fixed_seconds"] == pytest.approx(run["wall_seconds"] - run["task_seconds"])
    assert (run["n_images"], run["partitions"]) == (n_images, 1)


@pytest.fixture(scope="module")
def warm_run(
    local_client: Client, small_store: Path, small_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], fixed_cost.FixedCostJob, Path]:
    ref = ModelRef.from_directory(small_models)
    endtoend.warm(local_client, ref, ort_threads_for(local_client))  # as the bench does first
    workdir = tmp_path_factory.mktemp("fixed-cost")
    measured, job = fixed_cost.warm(local_client, str(small_store), "test", ref, False, workdir)
    return measured, job, workdir


@pytest.mark.cluster
def test_warm_splits_wall_into_task_and_fixed(
    warm_run: tuple[dict[str, Any], fixed_cost.FixedCostJob, Path], local_client: Client,
) -> None:
    measured, job, workdir = warm_run
    check_split(measured, SMALL_TEST)
    assert measured["runs"] == fixed_cost.WARM_RUNS == len(measured["fixed_seconds_runs"])
    assert measured["fixed_seconds"] == statistics.median(measured["fixed_seconds_runs"])
    assert (job.split, job.rows) == ("test", SMALL_TEST)
    assert not list(workdir.glob("fixed-warm-*"))  # each run's folder is removed
    # The bench's client is the caller's: used, never closed.
    assert local_client.status == "running"
    assert local_client.submit(sum, [1, 2]).result() == 3


@pytest.mark.cluster
def test_fresh_runs_the_users_command(
    warm_run: tuple[dict[str, Any], fixed_cost.FixedCostJob, Path],
) -> None:
    _, job, workdir = warm_run
    measured = fixed_cost.fresh(job, workdir)
    check_split(measured, SMALL_TEST)
    assert measured["command"] == (
        f"python -m jobs.score --store STORE --models {job.models} --split test --out OUT "
        f"--no-sweep --no-progress --partition-rows {SMALL_TEST}")
    assert not (workdir / "fixed-fresh").exists()


def test_small_job_holds_the_first_digits_in_one_partition(
    small_store: Path, small_models: Path, tmp_path: Path,
) -> None:
    ref = ModelRef.from_directory(small_models)
    job = fixed_cost.small_job(str(small_store), "test", ref, tmp_path / "small.zarr", images=100)
    root = open_store(job.store)
    assert root["test/images"].shape == (100, 784) and root["test/images"].chunks == (250, 784)
    assert (job.rows, job.models) == (100, ref.directory)
    spec = job.spec(tmp_path / "out")
    assert (spec.partition_rows, spec.throughput, spec.show_progress) == (100, False, False)


def run_of(wall: float, task: float) -> dict[str, Any]:
    return {"n_images": 1000, "partitions": 1, "wall_seconds": wall, "task_seconds": task,
            "fixed_seconds": wall - task, "runs": 3}


def test_targets_are_maxima_met_not_met_or_not_measured() -> None:
    fixed = fixed_cost.section(run_of(1.2, 0.5), run_of(20.0, 0.6))
    assert fixed["targets"] == {"warm_fixed_seconds": 1.0, "fresh_wall_seconds": 15.0}
    assert fixed["met"] == {"warm_fixed_seconds": True, "fresh_wall_seconds": False}
    rows = {row["figure"]: row for row in fixed_cost.target_rows(fixed)}
    assert rows["warm_fixed_seconds"]["value"] == pytest.approx(0.7)
    assert rows["fresh_wall_seconds"]["value"] == 20.0
    assert rows["fresh_wall_seconds"]["met"] is False
    quick = fixed_cost.section(run_of(3.0, 0.5), None)
    assert quick["fresh"] is None
    assert quick["met"] == {"warm_fixed_seconds": False, "fresh_wall_seconds": None}
    assert {row["figure"]: row["met"] for row in fixed_cost.target_rows(quick)} == quick["met"]


def test_table_lines_show_both_runs_or_the_skip() -> None:
    lines = fixed_cost_lines({"fixed_cost": fixed_cost.section(run_of(1.25, 0.5),
                                                               run_of(12.5, 0.75))})
    assert lines[0].startswith("fixed cost: one partition")
    assert lines[1].startswith("warm client, md.score (median of 3)")
    assert lines[1].split()[-4:] == ["1,000", "1.25", "0.50", "0.75"]
    assert lines[2].startswith("fresh LocalCluster, python -m jobs.score")
    assert lines[2].split()[-4:] == ["1,000", "12.50", "0.75", "11.75"]
    quick = fixed_cost_lines({"fixed_cost": fixed_cost.section(run_of(1.0, 0.5), None)})
    assert quick[2].endswith("skipped (--quick)")
    assert fixed_cost_lines({}) == []  # a document from before the section
