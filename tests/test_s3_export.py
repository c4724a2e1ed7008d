"""jobs.export on object storage, against the real SeaweedFS server (tests/conftest_s3.py): a run
whose predictions are on s3:// exports from there, and `--out s3://…` writes there."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import s3fs

from jobs import export
from mnist_dist.data.store import zarr_array
from tests.conftest_s3 import S3Server
from tests.test_s3 import run_score

FAST = ["--no-progress", "--batch-sizes", "1", "--sweep-seconds", "0.01",
        "--partition-rows", "250"]


def test_a_run_with_predictions_on_s3_exports_to_disk_and_to_s3(
    s3_server: S3Server, small_store: Path, small_models: Path, tmp_path: Path,
) -> None:
    s3fs.S3FileSystem().mkdir("exports")
    predictions = f"s3://exports/{secrets.token_hex(4)}/predictions.zarr"
    run = tmp_path / "run"
    done = run_score("--store", str(small_store), "--models", str(small_models),
                     "--predictions", predictions, "--workers", "1", "--out", str(run), *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    stored = {name: np.asarray(zarr_array(predictions, name)[:])
              for name in ("knn", "mlp", "mlp_probabilities")}
    expected = stored["mlp_probabilities"][np.arange(600), stored["mlp"]]

    assert export.main([str(run)]) == 0  # read from S3, written beside the run
    url = f"s3://exports/{secrets.token_hex(4)}/predictions.parquet"
    assert export.main([str(run), "--out", url]) == 0
    for table in (pd.read_parquet(run / "predictions.parquet"), pd.read_parquet(url)):
        assert np.array_equal(table["knn"], stored["knn"])
        assert np.array_equal(table["mlp"], stored["mlp"])
        assert np.array_equal(table["mlp_probability"].to_numpy(), expected)
        assert np.array_equal(table["id"], np.arange(600)) and len(table["label"]) == 600
    folder = url.rsplit("/", 1)[0].removeprefix("s3://")
    assert [p.rsplit("/", 1)[1] for p in s3fs.S3FileSystem().ls(folder, refresh=True)] == [
        "predictions.parquet"]  # the temporary was moved, not left behind

    csv = url.replace(".parquet", ".csv")
    assert export.main([str(run), "--format", "csv", "--out", csv]) == 0
    assert pd.read_csv(csv)["mlp"].tolist() == stored["mlp"].tolist()
    assert export.main([str(run), "--out", url]) == 5  # never replaces an existing output
