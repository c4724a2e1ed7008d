"""Faults across hosts: `python -m jobs.score --scheduler tcp://10.77.0.x:8786` run on a test bed
of network-namespace hosts (tests/hosts.py) while a worker host dies and a new one joins, while a
worker's link is down for seconds, with a worker the scheduler never reaches, and when the
scheduler's host dies (then `--resume` on a new scheduler). Every finished run writes the same
predictions, bit for bit, as a run without faults."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from mnist_dist.models.artifacts import write_manifest
from mnist_dist.models.outputs import OUTPUT_ARRAYS
from tests.conftest import SMALL_TEST
from tests.helpers import small_knn_model, write_model_dir
from tests.hosts import SUBNET, Bed, host_bed
from tests.test_cluster_processes import wait_for_markers

pytestmark = pytest.mark.cluster

PARTITION_ROWS = 20
PARTITIONS = SMALL_TEST // PARTITION_ROWS  # of the small store's test digits
ARRAYS = [array for name in OUTPUT_ARRAYS for array, _, _ in OUTPUT_ARRAYS[name]]
CUT_SECONDS = 3.0  # how long a link stays down mid-run
JOB_SECONDS = 240.0


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models without TensorFlow: a KNN over the small store's 3,000 training digits, a tiny
    ONNX MLP, and the manifest sections the score job reads."""
    directory = write_model_dir(tmp_path_factory.mktemp("host-models") / "models",
                                small_knn_model(3000))
    write_manifest(directory, {"models": {
        "knn": {"train_seconds": 0.1, "test_accuracy": 0.9, "artifacts": ["knn.npz", "knn.json"]},
        "mlp": {"train_seconds": 0.2, "test_accuracy": 0.8, "artifacts": ["mlp.onnx", "mlp.json"]},
    }})
    return directory


def job_args(store: Path, models: Path, scheduler: str, out: Path, sweep: bool = False
             ) -> list[str]:
    """`jobs.score` flags of the runs here: small partitions, 5 s for the scheduler and each
    worker to answer, and a short throughput sweep when `sweep`."""
    return ["--scheduler", scheduler, "--store", str(store), "--models", str(models),
            "--out", str(out), "--partition-rows", str(PARTITION_ROWS), "--no-progress",
            "--connect-timeout", "5", *(["--sweep", "--batch-sizes", "1,10", "--sweep-seconds",
                                         "0.02"] if sweep else ["--no-sweep"])]


def start_cluster(bed: Bed, *workers: str, scheduler: str = "sched") -> str:
    """A scheduler host and one host per worker name, all started at once; the scheduler's
    address, once every worker has registered."""
    address = bed.start_scheduler(scheduler, wait=False)
    for name in workers:
        bed.start_worker(name, address, wait=False)
    bed.wait_ready(scheduler, *workers)
    return address


def finish(job: subprocess.Popen[str]) -> tuple[int, str]:
    """Exit code and stderr of `job`, once it ends."""
    _, err = job.communicate(timeout=JOB_SECONDS)
    return job.returncode, err


def predictions_of(out: Path) -> dict[str, np.ndarray]:
    """Every per-image array of a run's predictions.zarr."""
    group = zarr.open_group(str(out / "predictions.zarr"), mode="r")
    return {name: group[name][:] for name in ARRAYS}


def report_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


def markers(out: Path) -> int:
    """Partitions finished so far."""
    return len(list((out / "partitions").glob("*.json")))


def assert_same_predictions(out: Path, clean: dict[str, np.ndarray]) -> None:
    """Every array of the run equals the clean run's, bit for bit (NaN included)."""
    written = predictions_of(out)
    for name, expected in clean.items():
        np.testing.assert_array_equal(written[name], expected, err_msg=name, strict=True)


@pytest.fixture(scope="module")
def clean(small_store: Path, models: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, np.ndarray]:
    """The predictions of a run without faults on two worker hosts."""
    root = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as env, host_bed(root) as bed:
        env.setenv("MNIST_DIST_HOME", str(root / "home"))
        scheduler = start_cluster(bed, "w1", "w2")
        code, err = finish(bed.start_job("client", *job_args(small_store, models, scheduler,
                                                               root / "run")))
    assert code == 0, err[-3000:]
    assert report_of(root / "run")["dataset"]["partitions"] == PARTITIONS
    return predictions_of(root / "run")


def test_a_worker_host_lost_mid_run_and_a_new_host_joining_change_nothing(
    small_store: Path, models: Path, clean: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with host_bed(tmp_path) as bed:
        # One worker host: after its loss only the new host can finish the run.
        scheduler = start_cluster(bed, "w1")
        job = bed.start_job("client", *job_args(small_store, models, scheduler, out))
        wait_for_markers(out, 3, job)
        bed.lose("w1")
        done_at_loss = markers(out)
        bed.start_worker("w2", scheduler)
        code, err = finish(job)
    assert code == 0, err[-3000:]
    assert done_at_loss < PARTITIONS, "the run finished before the host was lost"
    assert_same_predictions(out, clean)
    assert report_of(out)["cluster"]["workers"] == 1  # the new host


def test_a_worker_link_cut_for_seconds_mid_run_changes_nothing(
    small_store: Path, models: Path, clean: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with host_bed(tmp_path) as bed:
        scheduler = start_cluster(bed, "w1", "w2")
        job = bed.start_job("client", *job_args(small_store, models, scheduler, out))
        wait_for_markers(out, 3, job)
        bed.cut("w2")
        time.sleep(CUT_SECONDS)  # the fault's length, not a wait for something
        running_at_restore = job.poll() is None
        bed.restore("w2")
        code, err = finish(job)
    assert code == 0, err[-3000:]
    assert running_at_restore, "the run finished while the link was down"
    assert_same_predictions(out, clean)
    assert report_of(out)["cluster"]["workers"] == 2


def test_workers_the_scheduler_cannot_reach_fail_a_job_alone_and_are_left_out_among_others(
    small_store: Path, models: Path, clean: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with host_bed(tmp_path) as bed:
        scheduler = bed.start_scheduler("sched")
        # w0 tells the scheduler an address no host has (.100: the first worker in sorted
        # order, the one the throughput sweep would pick); its own link to it works.
        bed.start_worker("w0", scheduler, advertise=f"{SUBNET}.100")
        alone, alone_err = finish(bed.start_job(
            "client0", *job_args(small_store, models, scheduler, tmp_path / "alone")))
        cut = bed.start_worker("w1", scheduler, wait=False)
        for name in ("w2", "w3"):
            bed.start_worker(name, scheduler, wait=False)
        bed.wait_ready("w1")
        bed.cut("w1")  # right after it registered
        bed.wait_ready("w2", "w3")
        started = time.monotonic()
        code, err = finish(bed.start_job("client", *job_args(small_store, models, scheduler,
                                                             out, sweep=True)))
        elapsed = time.monotonic() - started
    unreachable = (f"tcp://{SUBNET}.100:", f"tcp://{cut.address}:")
    errors = [line for line in alone_err.splitlines() if line.startswith("error:")]
    assert alone == 9 and len(errors) == 1, alone_err[-3000:]
    assert "no worker answered the Dask scheduler within 5s" in errors[0]
    assert unreachable[0] in errors[0] and "Traceback" not in alone_err
    assert code == 0, err[-3000:]
    warnings = [line for line in err.splitlines()
                if "WARNING" in line and any(address in line for address in unreachable)]
    assert len(warnings) == 1 and all(a in warnings[0] for a in unreachable), err[-3000:]
    assert report_of(out)["cluster"]["workers"] == 2
    assert_same_predictions(out, clean)
    assert elapsed < 120  # a bound on a hang, not a speed claim


def test_the_scheduler_host_lost_mid_run_is_one_error_and_resume_on_a_new_one_finishes(
    small_store: Path, models: Path, clean: dict[str, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with host_bed(tmp_path) as bed:
        args = job_args(small_store, models, start_cluster(bed, "w1", "w2"), out)
        job = bed.start_job("client", *args)
        wait_for_markers(out, 3, job)
        bed.lose("sched")
        code, err = finish(job)
        kept = markers(out)
        for name in ("w1", "w2"):
            bed.lose(name)
        scheduler = start_cluster(bed, "w3", "w4", scheduler="sched2")
        args[args.index("--scheduler") + 1] = scheduler
        resumed, resumed_err = finish(bed.start_job("client2", *args, "--resume"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 9 and len(errors) == 1, err[-3000:]
    assert "Traceback" not in err
    assert "the Dask scheduler" in errors[0] and "--resume" in errors[0]
    assert 3 <= kept < PARTITIONS
    assert resumed == 0, resumed_err[-3000:]
    assert report_of(out)["dataset"]["partitions_computed"] == PARTITIONS - kept
    assert_same_predictions(out, clean)
