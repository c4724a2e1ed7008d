"""Round two of hostile inputs: special files where a job reads or writes
its own files are refused at once, never waited on; a LocalCluster's dashboard stays on the
loopback; concurrent runs get their own default folders; names cannot drive the terminal and
ids cannot become spreadsheet formulas."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest
import zarr
from distributed import Client

from jobs import export as export_job
from jobs import score as score_job
from mnist_dist.cluster import ClusterSpec, local_cluster

REPO = Path(__file__).resolve().parents[1]
FAST = ["--no-progress", "--batch-sizes", "1", "--sweep-seconds", "0.02"]


def job(name: str, *args: str, cwd: Path = REPO, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    """`python -m jobs.<name> ARGS` as a user runs it; a hang fails the test at `timeout`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"jobs.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_fifo_at_the_run_lock_is_refused_not_waited_on(
    small_store: Path, small_models: Path, tmp_path: Path, local_client: Client,
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / "run.lock")
    done = job("score", "--store", str(small_store), "--models", str(small_models), "--out",
               str(out), "--scheduler", local_client.scheduler.address, *FAST)
    assert done.returncode == 5, done.stderr[-2000:]
    assert len(error_lines(done.stderr)) == 1 and "run.lock" in done.stderr
    assert "not a regular file" in error_lines(done.stderr)[0]
    assert "Traceback" not in done.stderr


def test_a_fifo_at_report_json_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "report.json")
    done = job("report", str(tmp_path))
    assert done.returncode == 11, done.stderr[-2000:]
    assert len(error_lines(done.stderr)) == 1 and "must be a regular file" in done.stderr


def listening_addresses(port: int) -> set[str]:
    """Addresses this process listens on at `port`."""
    return {c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def test_a_dashboard_given_only_a_port_binds_the_loopback_only() -> None:
    port = free_port()
    spec = ClusterSpec(n_workers=1, dashboard_address=f":{port}")
    with local_cluster(spec) as cluster:
        assert cluster.scheduler.http_server is not None
        assert listening_addresses(port) == {"127.0.0.1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_runs_started_together_get_their_own_default_folders(
    small_store: Path, small_models: Path, tmp_path: Path, local_client: Client,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "jobs.score", "--store", str(small_store), "--models",
            str(small_models), "--scheduler", local_client.scheduler.address, *FAST]
    jobs = [subprocess.Popen(args, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    results = [(j.communicate(timeout=300), j.returncode) for j in jobs]
    for (_, stderr), code in results:
        assert code == 0, stderr[-2000:]
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all((f / "report.json").is_file() for f in folders)


def test_control_characters_in_an_error_line_are_escaped(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    evil = tmp_path / "\x1b[2J\x1b]0;owned\x07file"
    evil.write_text("a file where --out needs a folder")
    code = score_job.main(["--store", str(small_store), "--models", str(small_models),
                           "--out", str(evil / "run"), *FAST])
    err = capsys.readouterr().err
    assert code == 5, err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b[2J" in err and len(error_lines(err)) == 1


def test_control_characters_in_a_log_line_are_escaped() -> None:
    code = ("import logging; from mnist_dist.cli.arguments import setup_logging; setup_logging(); "
            "logging.getLogger('mnist_dist.x').info('file %s', '\\x1b[2Jevil.png')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert "\x1b" not in done.stderr and "\\x1b[2Jevil.png" in done.stderr


FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "@SUM(1+1)", "+1+cmd", "-2+3", "\tx", "plain.png"]


def test_ids_a_spreadsheet_would_run_are_exported_as_text(
    small_store: Path, small_models: Path, tmp_path: Path, local_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = Path(shutil.copytree(small_store, tmp_path / "mnist.zarr"))
    root = zarr.open_group(str(store), mode="a")
    group = root.create_group("named")
    group.create_array("images", data=root["test/images"][:60], chunks=(30, 784))
    ids = group.create_array("ids", shape=(60,), dtype=str, chunks=(30,))
    ids[:] = np.array([FORMULAS[i % len(FORMULAS)] for i in range(60)], dtype=object)
    out = tmp_path / "run"
    assert score_job.main(["--store", str(store), "--models", str(small_models), "--split",
                           "named", "--out", str(out), "--scheduler",
                           local_client.scheduler.address, *FAST]) == 0
    assert export_job.main([str(out), "--format", "csv"]) == 0
    with (out / "predictions.csv").open(newline="") as f:
        written = [row["id"] for row in csv.DictReader(f)]
    expected = [FORMULAS[i % len(FORMULAS)] for i in range(60)]
    for got, want in zip(written, expected, strict=True):
        assert got == (want if want == "plain.png" else "'" + want)


def test_numeric_ids_are_left_alone() -> None:
    import pandas as pd

    from mnist_dist.exporting.tasks import as_spreadsheet_text

    numbers = pd.Series(np.arange(5, dtype=np.int64))
    assert as_spreadsheet_text(numbers).equals(numbers)


@pytest.mark.parametrize("text", ["![pixel](http://evil.example/t.png)", "[click](http://x.y)",
                                  "\\![a](b)", "<img src=x>"])
def test_report_text_forms_no_link_or_image_in_markdown(text: str) -> None:
    import json

    from mnist_dist.report.markdown import render_markdown

    report = json.loads((REPO / "tests" / "data" / "report-sample.json").read_text())
    report["created"] = text
    page = render_markdown(report)
    line = next(line for line in page.splitlines() if line.startswith("Run of "))
    assert "](" not in line.replace("\\](", "") and "<img" not in line
