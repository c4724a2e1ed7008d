"""`--resume` continues only its own run: it never adopts another run's predictions store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from jobs import score as score_job

FAST = ["--no-progress", "--workers", "2", "--batch-sizes", "1", "--sweep-seconds", "0.02"]


def test_resume_on_a_new_out_refuses_another_runs_predictions(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--store", str(small_store), "--models", str(small_models), *FAST]
    assert score_job.main([*data, "--out", str(tmp_path / "first")]) == 0
    theirs = tmp_path / "first" / "predictions.zarr"
    before = {name: zarr.open_group(str(theirs), mode="r")[name][:] for name in ("knn", "mlp")}
    capsys.readouterr()
    code = score_job.main([*data, "--out", str(tmp_path / "second"), "--resume",
                           "--predictions", str(theirs)])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 5
    assert len(errors) == 1 and "predictions already exist" in errors[0]
    for name, values in before.items():
        np.testing.assert_array_equal(zarr.open_group(str(theirs), mode="r")[name][:], values)
    assert not (tmp_path / "second" / "run.json").exists()



@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_a_corrupt_run_json_is_one_error_line_naming_it(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_bytes(content)
    code = score_job.main(["--store", str(small_store), "--models", str(small_models), *FAST,
                           "--out", str(out), "--resume"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 3, errors
    assert len(errors) == 1 and errors[0].startswith("error: ") and "run.json" in errors[0]
    assert (out / "run.json").read_bytes() == content


def test_a_corrupt_partition_marker_is_one_error_line_naming_it(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--store", str(small_store), "--models", str(small_models), *FAST]
    out = tmp_path / "run"
    assert score_job.main([*data, "--out", str(out)]) == 0
    (out / "report.json").unlink()  # an interrupted run: every partition done, no report yet
    marker = min((out / "partitions").glob("*.json"))
    marker.write_bytes(b"{truncated")
    capsys.readouterr()
    code = score_job.main([*data, "--out", str(out), "--resume"])
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 3, errors
    assert len(errors) == 1 and marker.name in errors[0]
