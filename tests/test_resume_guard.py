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
