"""A job never waits without end: a `--scheduler` address where another kind of server answers is
refused within `--connect-timeout`; a run whose workers are all paused (Dask pauses a worker at
its memory limit) or all gone stops after `cluster.stall-timeout` seconds with one line, exit 9,
and `--resume` then finishes it."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client, LocalCluster
from distributed.core import Status

from jobs import score as score_job
from mnist_dist.errors import EXIT_CODES, ClusterError
from mnist_dist.waiting import stall_cause

STALL_SECONDS = 3.0


@pytest.fixture()
def http_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; its address as a Dask scheduler address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def score(address: str, store: Path, models: Path, out: Path, *flags: str,
          capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """`jobs.score` on the scheduler at `address`; exit code and `error:` lines."""
    code = score_job.main(["--scheduler", address, "--store", str(store), "--models",
                           str(models), "--out", str(out), "--no-progress", "--batch-sizes", "1",
                           "--sweep-seconds", "0.01", *flags])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def test_a_scheduler_address_of_an_http_server_is_refused_within_the_connect_timeout(
    http_server: str, small_store: Path, small_models: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code, errors = score(http_server, small_store, small_models, tmp_path / "run",
                         "--connect-timeout", "2", capsys=capsys)
    assert code == EXIT_CODES[ClusterError] and len(errors) == 1
    assert f"cannot reach Dask scheduler {http_server} within 2s" in errors[0]
    assert time.monotonic() - started < 30  # a bound on a hang, not a speed claim


def pause(dask_worker: Any) -> None:
    """On a worker: pause it as Dask does at its memory limit (no new task starts)."""
    dask_worker.status = Status.paused


@contextmanager
def own_cluster() -> Iterator[Client]:
    """A LocalCluster of two worker processes of this test's own, without memory limits (so
    nothing but the test pauses or resumes them)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", memory_limit=0,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


@pytest.mark.cluster
def test_every_worker_paused_or_gone_stops_the_run_after_the_stall_timeout(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    with dask.config.set({"mnist-dist.cluster.stall-timeout": STALL_SECONDS}), \
            own_cluster() as client:
        address = client.scheduler.address
        client.run(pause)
        code, errors = score(address, small_store, small_models, out, capsys=capsys)
        assert code == EXIT_CODES[ClusterError] and len(errors) == 1, errors
        assert "every worker (2) is paused" in errors[0] and "--resume" in errors[0]
        # The paused workers then leave: none is left.
        threading.Timer(2.0, client.retire_workers, kwargs={"close_workers": True}).start()
        code, errors = score(address, small_store, small_models, out, "--resume",
                             capsys=capsys)
        assert code == EXIT_CODES[ClusterError] and len(errors) == 1, errors
        assert "no worker is left" in errors[0]
    with own_cluster() as client:  # a cluster that can run it: --resume finishes the run
        code, errors = score(client.scheduler.address, small_store, small_models, out,
                             "--resume", capsys=capsys)
    assert code == 0, errors
    assert (out / "report.json").is_file()


def test_the_stall_cause_names_what_stops_the_workers() -> None:
    assert stall_cause({}) == "no worker is left"
    paused = {"tcp://a": {"status": "paused"}, "tcp://b": {"status": "paused"}}
    assert stall_cause(paused).startswith("every worker (2) is paused")
    assert stall_cause({**paused, "tcp://c": {"status": "running"}}) is None
