"""Partial failure, opt-in: with `--keep-going` a partition that cannot be read fails alone, the
others are scored and reported, the exit code says so, and `--resume` retries only the failed
ones. Jobs run as users run them (`jobs.score.main(argv)`), on the session's LocalCluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import mnist_dist as md
from jobs import score as score_job
from mnist_dist.errors import EXIT_CODES, PartitionsFailedError, SpecError
from tests.test_nothing_lost import OUTPUTS, args, one_error, predictions, run, store

__all__ = ["args", "store"]  # fixtures used by this module's tests

BAD_CHUNK = Path("test", "images", "c", "1", "0")  # rows 250-500: partitions 2, 3 and 4 of 100


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Write `data` (of the file's size) over the file at `path`, keeping its inode and
    modification time: the store's listing, and so its stamp, stay the same (a transient fault)."""
    before = path.stat()
    assert len(data) == before.st_size
    with path.open("r+b") as file:
        file.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_keep_going_scores_the_other_partitions_and_resume_retries_only_the_failed(
    store: Path, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    clean = tmp_path / "clean"
    assert run(score_job, [*args, "--out", str(clean)], capsys)[0] == 0
    expected = predictions(clean / "predictions.zarr")
    original = (store / BAD_CHUNK).read_bytes()
    overwrite_in_place(store / BAD_CHUNK, b"\xff" * len(original))

    out = tmp_path / "run"
    capsys.readouterr()
    code = score_job.main([*args, "--out", str(out), "--keep-going"])
    captured = capsys.readouterr()
    assert code == EXIT_CODES[PartitionsFailedError] == 17, captured.err
    one_error(captured.err.splitlines(), "3 of 6 partitions", "--resume")
    failed_lines = [line for line in captured.out.splitlines() if line.startswith("FAILED")]
    assert len(failed_lines) == 3 and all("c/1/0" in line for line in failed_lines)
    report = json.loads((out / "report.json").read_text())
    failed = report["failed_partitions"]
    assert [(f["index"], f["start"], f["stop"]) for f in failed] == \
        [(2, 200, 300), (3, 300, 400), (4, 400, 500)]
    assert all("DataError" in f["cause"] and "c/1/0" in f["cause"] for f in failed)
    assert report["dataset"]["n_images"] == 300 and report["dataset"]["partitions"] == 6
    for model in report["models"].values():
        assert np.sum(model["confusion"]) == 300
    assert report["throughput"] == []  # not measured on a split it could not read whole
    for page in ("report.html", "report.md"):
        assert "INCOMPLETE: 3 partition(s), 300 images" in (out / page).read_text()
    found = predictions(out / "predictions.zarr")
    scored = np.r_[0:200, 500:600]
    for name in OUTPUTS:
        np.testing.assert_array_equal(found[name][scored], expected[name][scored])
    assert sorted(p.name for p in (out / "partitions").glob("*.failed.json")) == \
        ["000002.failed.json", "000003.failed.json", "000004.failed.json"]

    (out / "report.json").unlink()  # as a run stopped before its report would leave it
    overwrite_in_place(store / BAD_CHUNK, original)  # the fault was transient
    code, errors = run(score_job, [*args, "--out", str(out), "--resume", "--keep-going"], capsys)
    assert code == 0, errors
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["partitions_computed"] == 3  # only the failed ones, again
    assert "failed_partitions" not in report and report["dataset"]["n_images"] == 600
    assert not list((out / "partitions").glob("*.failed.json"))
    found = predictions(out / "predictions.zarr")
    for name in OUTPUTS:
        np.testing.assert_array_equal(found[name], expected[name])


def test_without_keep_going_the_first_failed_partition_stops_the_run(
    store: Path, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    original = (store / BAD_CHUNK).read_bytes()
    overwrite_in_place(store / BAD_CHUNK, b"\xff" * len(original))
    out = tmp_path / "run"
    code, errors = run(score_job, [*args, "--out", str(out)], capsys)
    assert code == 3, errors
    one_error(errors, "c/1/0", "cannot be decoded")
    assert not list((out / "partitions").glob("*.failed.json"))


def test_a_run_whose_every_partition_fails_is_one_error(
    store: Path, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for chunk in sorted((store / "test" / "images" / "c").glob("*/0")):
        overwrite_in_place(chunk, b"\xff" * chunk.stat().st_size)
    out = tmp_path / "run"
    code, errors = run(score_job, [*args, "--out", str(out), "--keep-going"], capsys)
    assert code == 17, errors
    one_error(errors, "every partition failed", "partition 0 (rows 0-100)", "c/0/0")
    assert not (out / "report.json").exists()
    assert len(list((out / "partitions").glob("*.failed.json"))) == 6


def test_keep_going_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match="keep_going must be True or False; got 'yes'"):
        md.ScoreSpec(keep_going="yes")  # type: ignore[arg-type]
