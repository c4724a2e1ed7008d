"""A run folder is used by one run at a time (run.lock), and its paths are checked before any
work: a file at or above --out, a folder where a run file goes, no empty folder left behind."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import score as score_job
from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.errors import StoreExistsError
from mnist_dist.run_state import LOCK_FILE, RUN_FILE, locked_run_folder, run_lock

FAST = ["--no-progress", "--workers", "1", "--batch-sizes", "1", "--sweep-seconds", "0.02"]


@pytest.fixture()
def live_pid() -> Iterator[int]:
    """The pid of a process that is alive while the test runs."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def write_lock(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "started": "2026-01-01T00:00:00+00:00"}))
    return path


def test_a_held_lock_refuses_a_second_run_and_is_released_after(tmp_path: Path) -> None:
    with run_lock(tmp_path) as owner:
        recorded = json.loads((tmp_path / LOCK_FILE).read_text())
        assert recorded == owner and recorded["host"] == socket.gethostname()
        with (pytest.raises(StoreExistsError, match=rf"in use by process {owner['pid']} on "),
              run_lock(tmp_path)):
            pass
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == owner  # the refusal kept it
    assert not (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_released_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), run_lock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()
    with run_lock(tmp_path):  # free again
        pass


def test_a_live_process_lock_is_held(tmp_path: Path, live_pid: int) -> None:
    lock = write_lock(tmp_path, live_pid)
    before = lock.read_bytes()
    with pytest.raises(StoreExistsError, match=rf"in use by process {live_pid} "), run_lock(tmp_path):
        pass
    assert lock.read_bytes() == before


@pytest.mark.parametrize("content", [None, b"", b"{garbage", b"[1]"])
def test_another_hosts_or_an_unreadable_lock_is_held(tmp_path: Path, content: bytes | None
                                                     ) -> None:
    lock = write_lock(tmp_path, dead_pid(), host="some-other-host.example")
    if content is not None:
        lock.write_bytes(content)
    with pytest.raises(StoreExistsError, match="in use by"), run_lock(tmp_path):
        pass
    assert lock.exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    write_lock(tmp_path, dead_pid())
    with run_lock(tmp_path) as owner:
        assert json.loads((tmp_path / LOCK_FILE).read_text()) == owner
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing stale left beside it


def test_score_refuses_a_folder_in_use_with_one_line(
    small_store: Path, small_models: Path, tmp_path: Path, live_pid: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    write_lock(out, live_pid)
    code = score_job.main(["--store", str(small_store), "--models", str(small_models), *FAST,
                           "--out", str(out), "--resume"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 5, errors
    assert len(errors) == 1 and f"in use by process {live_pid}" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # no work started


@pytest.mark.parametrize("where", ["at", "under"])
def test_out_at_or_under_a_file_is_one_line(
    small_store: Path, small_models: Path, tmp_path: Path, where: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    out = mine if where == "at" else mine / "run"
    code = score_job.main(["--store", str(small_store), "--models", str(small_models), *FAST,
                           "--out", str(out)])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 5, errors
    assert len(errors) == 1 and f"{mine} is a file" in errors[0]
    assert mine.read_text() == "mine"


@pytest.mark.parametrize("name", ["report.html", "report.md", "run.json"])
def test_a_folder_where_a_run_file_goes_is_refused_before_work(
    small_store: Path, small_models: Path, tmp_path: Path, name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    code = score_job.main(["--store", str(small_store), "--models", str(small_models), *FAST,
                           "--out", str(out)])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 5, errors
    assert len(errors) == 1 and f"{out / name} is a folder" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == [name]


def test_writing_a_file_over_a_folder_is_a_project_error(tmp_path: Path) -> None:
    (tmp_path / "report.html").mkdir()
    with pytest.raises(StoreExistsError, match="is a folder"):
        write_bytes_atomic(tmp_path / "report.html", b"<html>")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_cluster_leaves_no_run_folder(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "run"
    code = score_job.main(["--store", str(small_store), "--models", str(small_models), *FAST,
                           "--out", str(out), "--scheduler", f"tcp://127.0.0.1:{free_port()}",
                           "--connect-timeout", "1"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 9, errors
    assert len(errors) == 1 and "cannot reach Dask scheduler" in errors[0]
    assert not out.exists()


def test_a_failed_run_keeps_a_folder_it_did_not_create(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    with pytest.raises(RuntimeError), locked_run_folder(out):
        raise RuntimeError("cluster gone")
    assert out.is_dir() and not any(out.iterdir())
    with pytest.raises(RuntimeError), locked_run_folder(tmp_path / "new"):
        (tmp_path / "new" / RUN_FILE).write_text("{}")  # the run had started: keep it
        raise RuntimeError("cluster gone")
    assert (tmp_path / "new" / RUN_FILE).exists()
