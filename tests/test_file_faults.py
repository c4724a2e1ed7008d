"""A full disk or a refused file operation is one `error:` line with its documented code, never
a traceback or a silent exit 0: disk full under the predictions mid-run (10; `--resume` then
finishes), while writing report.html (10; `jobs.report` then finishes), a read-only `--out` or
export target (16), an export under a file (16) or to a full disk (10). Any other failure is one
line and exit 1.

Real file systems: each test mounts a small tmpfs (root, as in CI) and unmounts it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import export as export_job
from jobs import report as report_job
from jobs import score as score_job
from mnist_dist.cli.arguments import TRACEBACK_VARIABLE, run_job
from mnist_dist.errors import EXIT_CODES, DiskSpaceError, FileSystemError

PAGE = 4096
README = Path(__file__).resolve().parents[1] / "README.md"


@contextmanager
def tmpfs(path: Path, size: int, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` (read-only if asked), unmounted at the end."""
    path.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()}): these tests need root, "
                    "as CI has")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A file taking all of `disk`'s free space but `leave` bytes; returns it."""
    stats = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - leave))
    return filler


def allocated(*paths: Path) -> int:
    """Bytes the files `paths` (and those under them) take on a tmpfs (whole pages)."""
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    return sum(-(-f.stat().st_size // PAGE) * PAGE for f in files)


def score(client: Client, store: Path, models: Path, out: Path, *flags: str,
          capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """`jobs.score` on `client`'s cluster as a user runs it; exit code and `error:` lines."""
    code = score_job.main(["--scheduler", client.scheduler.address, "--store", str(store),
                           "--models", str(models), "--out", str(out), "--no-progress",
                           "--batch-sizes", "1", "--sweep-seconds", "0.01", *flags])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def clean_run(small_store: Path, small_models: Path, local_client: Client,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the small store on an ordinary disk: the reference."""
    out = tmp_path_factory.mktemp("clean") / "run"
    code = score_job.main(["--scheduler", local_client.scheduler.address, "--store",
                           str(small_store), "--models", str(small_models), "--out", str(out),
                           "--no-progress", "--batch-sizes", "1", "--sweep-seconds", "0.01"])
    assert code == 0
    return out


def test_disk_full_under_the_predictions_is_exit_10_and_resume_finishes(
    small_store: Path, small_models: Path, local_client: Client, clean_run: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with tmpfs(tmp_path / "disk", 1024 * 1024) as disk:
        filler = fill(disk, 10 * PAGE)  # the store's metadata fits, its chunks do not
        predictions = disk / "predictions.zarr"
        flags = ("--predictions", str(predictions))
        code, errors = score(local_client, small_store, small_models, tmp_path / "run", *flags,
                             capsys=capsys)
        assert code == EXIT_CODES[DiskSpaceError] and len(errors) == 1
        assert "not enough disk space" in errors[0] and "--resume" in errors[0]
        filler.unlink()
        code, errors = score(local_client, small_store, small_models, tmp_path / "run", *flags,
                             "--resume", capsys=capsys)
        assert code == 0, errors
        finished = zarr.open_group(str(predictions), mode="r")
        reference = zarr.open_group(str(clean_run / "predictions.zarr"), mode="r")
        for name in ("knn", "mlp", "mlp_probabilities"):
            assert np.array_equal(finished[name][:], reference[name][:])


def test_disk_full_while_writing_report_html_says_how_to_finish(
    small_store: Path, small_models: Path, local_client: Client, clean_run: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    before_html = allocated(*(clean_run / name for name in ("run.json", "partitions",
                                                              "report.json")))
    size = 8 * 1024 * 1024
    with tmpfs(tmp_path / "disk", size) as disk:
        filler = fill(disk, before_html + 8 * PAGE)  # report.json fits, report.html does not
        out = disk / "run"
        code, errors = score(local_client, small_store, small_models, out, "--predictions",
                             str(tmp_path / "predictions.zarr"), capsys=capsys)
        assert code == EXIT_CODES[DiskSpaceError] and len(errors) == 1, errors
        assert "report.json is written" in errors[0]
        assert f"python -m jobs.report {out}" in errors[0]
        assert (out / "report.json").is_file() and not (out / "report.html").exists()
        filler.unlink()
        assert report_job.main([str(out)]) == 0  # what the line said to do
        assert (out / "report.html").stat().st_size > 0


def test_a_read_only_out_is_exit_16_naming_it(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with tmpfs(tmp_path / "ro", 1024 * 1024, read_only=True) as disk:
        code, errors = score(local_client, small_store, small_models, disk / "run",
                             capsys=capsys)
    assert code == EXIT_CODES[FileSystemError] == 16 and len(errors) == 1
    assert f"{disk / 'run'}: Read-only file system" in errors[0]


def export(run: Path, target: Path, capsys: pytest.CaptureFixture[str]
           ) -> tuple[int, list[str]]:
    """`jobs.export RUN --out TARGET`; exit code and stderr lines."""
    code = export_job.main([str(run), "--out", str(target)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def test_export_to_a_full_or_read_only_disk_or_under_a_file_is_one_line(
    clean_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with tmpfs(tmp_path / "full", 1024 * 1024) as disk:
        fill(disk, 2 * PAGE)
        code, errors = export(clean_run, disk / "table.parquet", capsys)
        assert code == EXIT_CODES[DiskSpaceError] and len(errors) == 1
        assert f"writing {disk / 'table.parquet'}" in errors[0]
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # nothing half-written
    with tmpfs(tmp_path / "ro", 1024 * 1024, read_only=True) as disk:
        code, errors = export(clean_run, disk / "table.parquet", capsys)
        assert code == EXIT_CODES[FileSystemError] and len(errors) == 1
        assert "Read-only file system" in errors[0]
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    code, errors = export(clean_run, a_file / "table.parquet", capsys)
    assert code == EXIT_CODES[FileSystemError] and len(errors) == 1 and str(a_file) in errors[0]
    assert a_file.read_text() == "mine"


def test_an_unexpected_failure_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken() -> int:
        raise RuntimeError("something\nunforeseen")

    monkeypatch.delenv(TRACEBACK_VARIABLE, raising=False)
    assert run_job(broken) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: unexpected RuntimeError: something unforeseen (a bug")
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(RuntimeError):  # where a developer asks for the traceback
        run_job(broken)


def test_the_readme_documents_every_exit_code() -> None:
    table = README.read_text().split("### Exit codes")[1].split("###")[0]
    for code in {0, 1, 2, 130, *EXIT_CODES.values()}:
        assert f"\n| {code} | " in table, f"exit code {code} is not in README.md"


def test_a_full_disk_is_the_jobs_only_line_on_stderr(
    small_store: Path, small_models: Path, tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "disk", 1024 * 1024) as disk:
        fill(disk, 10 * PAGE)
        done = subprocess.run(
            [sys.executable, "-m", "jobs.score", "--store", str(small_store), "--models",
             str(small_models), "--out", str(tmp_path / "run"), "--predictions",
             str(disk / "predictions.zarr"), "--no-progress", "--workers", "1"],
            capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == EXIT_CODES[DiskSpaceError]
    # Not the workers' "Compute Failed" traceback, nor their cancelled-task warnings.
    other = [line for line in done.stderr.splitlines() if " INFO mnist_dist." not in line]
    assert len(other) == 1 and other[0].startswith("error: not enough disk space"), other
