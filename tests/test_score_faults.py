"""Cluster faults under a running score job: the throughput sweep's worker leaving or taking
too long, project errors raised in tasks, the scheduler dying, Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

from mnist_dist.cluster import ort_threads_for, workers_info
from mnist_dist.errors import ClusterError, SpecError
from mnist_dist.scoring.sweep import SweepSpec, check_sweep_memory, run_on_one_worker
from mnist_dist.worker_plugins import project_error_filter, quiet_project_errors
from tests.test_cluster_processes import (
    FAST,
    process_cluster,
    report_of,
    run_job,
    start_job,
    wait_for_markers,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def own_client() -> Iterator[Client]:
    """A 2-worker LocalCluster of this test's own (its workers may be killed), 1 GiB each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit="1GiB") as cluster, \
            Client(cluster) as client:
        yield client


def test_every_worker_is_seen_while_the_clients_cached_info_refreshes() -> None:
    """The client's periodic refresh (every 5 ms here) caches scheduler info without workers;
    a job that read that cache once saw no workers (ort_threads_for failed with min() of
    nothing in CI)."""
    with dask.config.set({"distributed.client.scheduler-info-interval": "5ms"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                         dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        seen = [len(workers_info(client)) for _ in range(300)]
        threads = [ort_threads_for(client) for _ in range(50)]
    assert seen == [2] * 300
    assert min(threads) >= 1


def test_the_sweep_moves_to_another_worker_when_its_worker_dies(
    own_client: Client, tmp_path: Path
) -> None:
    flag = str(tmp_path / "died-once")

    def die_once(path: str) -> int:
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)  # the worker process dies mid-task, as on an OOM kill
        return os.getpid()

    first = min(workers_info(own_client))
    pid = run_on_one_worker(own_client, 120.0, die_once, flag)
    assert os.path.exists(flag)  # the first try killed its worker
    assert first not in workers_info(own_client)
    assert pid in own_client.run(os.getpid).values()  # the second ran on a live worker


def test_a_sweep_past_its_timeout_is_one_cluster_error(own_client: Client) -> None:
    with pytest.raises(ClusterError, match=r"did not finish within 2 s \(setting "
                                           r"mnist-dist.score.sweep-timeout\)"):
        run_on_one_worker(own_client, 2.0, time.sleep, 60)


def test_a_sweep_too_large_for_the_workers_memory_is_refused_up_front(own_client: Client
                                                                      ) -> None:
    with pytest.raises(SpecError, match=r"--batch-sizes: a batch of 100000 images needs about "
                                        r"977 MiB in one worker"):
        check_sweep_memory(own_client, SweepSpec(batch_sizes=(1, 100_000)))
    check_sweep_memory(own_client, SweepSpec(batch_sizes=(1, 1000)))
    check_sweep_memory(own_client, SweepSpec(batch_sizes=()))


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_sweep_timeout_setting_is_a_spec_error(timeout: float) -> None:
    with pytest.raises(SpecError, match="mnist-dist.score.sweep-timeout must be"):
        SweepSpec(timeout=timeout)


def compute_failed(exception_text: str) -> logging.LogRecord:
    """A record like the one a worker logs for a failed task (distributed.worker)."""
    return logging.LogRecord(
        "distributed.worker", logging.ERROR, "worker.py", 1,
        "Compute Failed\nKey:       %s\nState:     %s\nTask:  %s\nException: %r\n"
        "Traceback: %r\n",
        ("score-partition-1", "executing", "<Task score_block>", exception_text,
         '  File "scoring.py", line 1\n'), None,
    )


def worker_filters() -> list[str]:
    return [getattr(f, "__name__", type(f).__name__)
            for f in logging.getLogger("distributed.worker").filters]


def test_a_project_error_in_a_task_is_not_logged_by_the_worker(own_client: Client) -> None:
    assert not project_error_filter(compute_failed(
        "DataError('store/test/images: chunk(s) c/1/0 cannot be decoded')"))
    assert not project_error_filter(compute_failed("ModelFormatError('knn.npz: truncated')"))
    assert not project_error_filter(compute_failed("ChecksumError('a subclass')"))
    assert project_error_filter(compute_failed("ValueError('a bug, not bad data')"))
    assert project_error_filter(logging.LogRecord(
        "distributed.worker", logging.ERROR, "w.py", 1, "DataError(%s)", ("x",), None))
    quiet_project_errors(own_client)
    assert all("project_error_filter" in names
               for names in own_client.run(worker_filters).values())


def score_args(store: Path, models: Path, run: Path) -> list[str]:
    return ["--store", str(store), "--models", str(models), "--partition-rows", "5",
            "--out", str(run), *FAST]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.cluster
def test_the_scheduler_dying_mid_run_is_one_line_and_the_run_resumes(
    small_store: Path, small_models: Path, tmp_path: Path
) -> None:
    run, state = tmp_path / "run", tmp_path / "cluster"
    with process_cluster(state) as address:
        job = start_job("--scheduler", address, *score_args(small_store, small_models, run))
        wait_for_markers(run, 2, job)
        os.kill(int((state / "scheduler.pid").read_text()), signal.SIGKILL)
        _, stderr = job.communicate(timeout=120)
    assert job.returncode == 9, stderr[-3000:]
    assert len(error_lines(stderr)) == 1, stderr[-3000:]
    assert "Dask scheduler" in error_lines(stderr)[0]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert not (run / "report.json").exists()
    with process_cluster(tmp_path / "cluster-2") as address:
        resumed = run_job("--scheduler", address, *score_args(small_store, small_models, run),
                          "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert report_of(run)["dataset"]["n_images"] == 600


def test_ctrl_c_is_one_line_and_exit_130(small_store: Path, small_models: Path, tmp_path: Path
                                         ) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    job = subprocess.Popen(  # its own process group, as a shell gives a foreground job
        [sys.executable, "-m", "jobs.score", "--workers", "2",
         *score_args(small_store, small_models, run)],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_for_markers(run, 2, job)
    os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: the job and its LocalCluster's workers
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr[-3000:]
    assert error_lines(stderr) == ["error: interrupted"], stderr[-3000:]
    assert "Traceback" not in stderr and "WARNING" not in stderr, stderr[-3000:]
    assert not (run / "run.lock").exists()  # released on the way out
