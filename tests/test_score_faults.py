"""Cluster faults under a running score job: the throughput sweep's worker leaving or taking
too long, project errors raised in tasks, the scheduler dying, Ctrl-C (issue 11)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from mnist_dist.cluster import project_error_filter, quiet_project_errors
from mnist_dist.errors import ClusterError, SpecError
from mnist_dist.score_job import check_sweep_memory, run_on_one_worker
from mnist_dist.throughput import SweepSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def own_client() -> Iterator[Client]:
    """A 2-worker LocalCluster of this test's own (its workers may be killed), 1 GiB each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0", memory_limit="1GiB") as cluster, \
            Client(cluster) as client:
        yield client


def test_the_sweep_moves_to_another_worker_when_its_worker_dies(
    own_client: Client, tmp_path: Path
) -> None:
    flag = str(tmp_path / "died-once")

    def die_once(path: str) -> int:
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)  # the worker process dies mid-task, as on an OOM kill
        return os.getpid()

    first = min(own_client.scheduler_info()["workers"])
    pid = run_on_one_worker(own_client, 120.0, die_once, flag)
    assert os.path.exists(flag)  # the first try killed its worker
    assert first not in own_client.scheduler_info()["workers"]
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
