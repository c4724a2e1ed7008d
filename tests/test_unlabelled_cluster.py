"""A split without labels on real scheduler/worker processes: a worker killed mid-run and a
client killed and resumed change nothing, as for a labelled split."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from tests.test_cluster_processes import (
    FAST,
    medium,  # noqa: F401 - the fixture, used by name
    medium_reference,  # noqa: F401 - the fixture, used by name
    process_cluster,
    report_of,
    run_job,
    scheduler_transitions,
    start_job,
    tasks_lost_with_a_worker_and_recomputed,
    wait_for_markers,
)

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def unlabelled_medium(medium: tuple[Path, Path]) -> tuple[Path, Path]:  # noqa: F811
    """The medium store with a split `new`: its 10,000 test images, no labels."""
    store, models = medium
    root = zarr.open_group(str(store), mode="a")
    if "new" not in root:
        root.create_group("new").create_array("images", data=root["test/images"][:],
                                              chunks=(200, 784))
    return store, models


def assert_same_predictions(run: Path, reference: dict[str, np.ndarray]) -> None:
    """The run's predictions store equals the labelled reference; its report has no accuracy."""
    group = zarr.open_group(str(run / "predictions.zarr"), mode="r")
    for name, expected in reference.items():
        np.testing.assert_array_equal(group[name][:], expected)
    np.testing.assert_array_equal(group["mlp_probabilities"][:].argmax(axis=1), group["mlp"][:])
    report = report_of(run)
    assert report["schema"] == "mnist-dist-report/2"
    assert report["predictions"]["counts"]["knn"] == np.bincount(
        reference["knn"], minlength=10).tolist()


def test_a_worker_killed_mid_run_of_an_unlabelled_split_changes_nothing(
    unlabelled_medium: tuple[Path, Path], medium_reference: dict[str, np.ndarray],  # noqa: F811
    tmp_path: Path,
) -> None:
    store, models = unlabelled_medium
    run = tmp_path / "run"
    with process_cluster(tmp_path / "cluster") as address:
        job = start_job("--scheduler", address, "--store", str(store), "--models", str(models),
                        "--split", "new", "--partition-rows", "200", "--out", str(run), *FAST)
        done_before = wait_for_markers(run, 3, job)
        with Client(address, timeout=30) as client:
            _, victim_pid = min(client.run(os.getpid).items())
        os.kill(victim_pid, signal.SIGKILL)
        _, stderr = job.communicate(timeout=300)
        with Client(address, timeout=30) as client:
            transitions = client.run_on_scheduler(scheduler_transitions)
    assert job.returncode == 0, stderr[-3000:]
    assert len(done_before) < 50, "the run finished before the worker was killed"
    assert tasks_lost_with_a_worker_and_recomputed(transitions), "no task was lost and rerun"
    assert_same_predictions(run, medium_reference)


def test_an_interrupted_unlabelled_run_resumes_without_recomputing(
    unlabelled_medium: tuple[Path, Path], medium_reference: dict[str, np.ndarray],  # noqa: F811
    tmp_path: Path,
) -> None:
    store, models = unlabelled_medium
    run = tmp_path / "run"
    args = ["--store", str(store), "--models", str(models), "--split", "new",
            "--partition-rows", "200", "--out", str(run), "--workers", "2", *FAST]
    job = start_job(*args)
    wait_for_markers(run, 3, job)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in (run / "partitions").glob("*.json")}
    assert 3 <= len(finished) < 50
    resumed = run_job(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in (run / "partitions").glob("*.json")}
    assert {name: after[name] for name in finished} == finished
    assert report_of(run)["dataset"]["partitions_computed"] == 50 - len(finished)
    assert_same_predictions(run, medium_reference)
