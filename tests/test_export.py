"""jobs.export: a run's predictions store as Parquet/CSV, one row per image, read back equal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import Client, get_task_stream

import mnist_dist as md
from jobs import export
from mnist_dist.errors import EXIT_CODES, DataError
from mnist_dist.exporting.graph import export_frame
from mnist_dist.exporting.source import locate
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.spec import ScoreJob

ROOT = Path(__file__).resolve().parent.parent
N, CHUNK = 600, 250  # the small store's test split and its chunk rows


def make_run(run: Path, store: Path, split: str = "test", ids: bool = False,
             drop: str | None = None, n: int = N) -> dict[str, np.ndarray]:
    """A run folder as jobs.score leaves it: run.json and a predictions store of `n` rows in
    `CHUNK`-row chunks (the partitions); returns the arrays written."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 10)).astype(np.float32)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arrays: dict[str, np.ndarray] = {
        "knn": rng.integers(0, 10, n).astype(np.uint8),
        "mlp": proba.argmax(axis=1).astype(np.uint8),
        "mlp_probabilities": proba.astype(np.float32),
    }
    if ids:
        arrays["ids"] = np.array([f"scans/{i:05d}.png" for i in range(n)],
                                 dtype=np.dtypes.StringDType())
    group = zarr.open_group(str(run / "predictions.zarr"), mode="w")
    for name, values in arrays.items():
        if name != drop:
            group.create_array(name, shape=values.shape, dtype=values.dtype,
                               chunks=(CHUNK, *values.shape[1:]))[...] = values
    identity = {"store": str(store), "split": split, "n_images": n, "partition_rows": CHUNK,
                "predictions": str(run / "predictions.zarr")}
    (run / "run.json").write_text(json.dumps(identity))
    (run / "report.json").write_text("{}")  # only its presence matters: the run finished
    return arrays


def test_parquet_read_back_with_pandas_equals_the_predictions_store(
    tmp_path: Path, small_store: Path,
) -> None:
    arrays = make_run(tmp_path / "run", small_store)
    labels = np.asarray(zarr.open_group(str(small_store), mode="r")["test/labels"])
    with dask.config.set({"mnist-dist.export.partition-rows": 250}):
        target = md.export(md.ExportSpec(run=tmp_path / "run", format="parquet")).path
    table = pd.read_parquet(target)
    assert target == tmp_path / "run" / "predictions.parquet"
    assert list(table.columns) == ["id", "knn", "mlp", "mlp_probability", "agree", "label"]
    assert np.array_equal(table["id"], np.arange(N))
    assert np.array_equal(table["knn"], arrays["knn"]) and table["knn"].dtype == np.uint8
    assert np.array_equal(table["mlp"], arrays["mlp"])
    expected = arrays["mlp_probabilities"][np.arange(N), arrays["mlp"]]
    assert np.array_equal(table["mlp_probability"].to_numpy(), expected)
    assert table["mlp_probability"].dtype == np.float32
    assert np.array_equal(table["agree"], arrays["knn"] == arrays["mlp"])
    assert np.array_equal(table["label"], labels)
    assert len(list(target.glob("*.parquet"))) == 3  # one part per 250-row partition


def test_export_runs_on_its_own_threads_not_on_a_default_client(
    tmp_path: Path, small_store: Path, local_client: Client,
) -> None:
    make_run(tmp_path / "run", small_store)
    with get_task_stream(client=local_client) as stream:
        target = md.export(md.ExportSpec(run=tmp_path / "run", format="csv")).path
    assert len(pd.read_csv(target)) == N
    assert stream.data == []  # the default client's workers may lack this process's credentials


def test_csv_with_ids_and_without_labels(tmp_path: Path, small_store: Path) -> None:
    store = tmp_path / "mnist.zarr"
    shutil.copytree(small_store, store)
    group = zarr.open_group(str(store), mode="r+")
    group.create_group("new").create_array("images", shape=(N, 784), dtype=np.uint8)
    arrays = make_run(tmp_path / "run", store, split="new", ids=True)
    spec = md.ExportSpec(run=tmp_path / "run", format="csv", out=tmp_path / "p.csv")
    target = md.export(spec).path
    table = pd.read_csv(target)
    assert "label" not in table.columns
    assert table["id"].tolist() == [str(i) for i in arrays["ids"]]
    assert np.array_equal(table["mlp"], arrays["mlp"])
    assert np.allclose(table["mlp_probability"],
                       arrays["mlp_probabilities"][np.arange(N), arrays["mlp"]], atol=1e-7)


def test_partitions_are_whole_chunks_of_the_predictions_store(
    tmp_path: Path, small_store: Path,
) -> None:
    make_run(tmp_path / "run", small_store)
    source = locate(tmp_path / "run")
    sizes = {rows: [len(part) for part in export_frame(source, rows).partitions]
             for rows in (1, 250, 499, 500, 10**6)}
    assert sizes == {1: [250, 250, 100], 250: [250, 250, 100], 499: [250, 250, 100],
                     500: [500, 100], 10**6: [600]}


def test_a_scored_run_exports_its_predictions_and_labels(
    tmp_path: Path, small_store: Path, small_models: Path, local_client: Client,
) -> None:
    job = ScoreJob(store=str(small_store), run_dir=tmp_path / "run", split="test",
                   models=ModelRef.from_directory(small_models), partition_rows=100)
    score_graph(local_client, job, show_progress=False)
    (tmp_path / "run" / "report.json").write_text("{}")  # score_job writes it last
    result = md.export(md.ExportSpec(run=tmp_path / "run", format="parquet"))
    table = pd.read_parquet(result.path)
    predictions = zarr.open_group(job.predictions, mode="r")
    mlp, proba = predictions["mlp"][:], predictions["mlp_probabilities"][:]
    assert np.array_equal(table["knn"], predictions["knn"][:])
    assert np.array_equal(table["mlp"], mlp)
    assert np.array_equal(table["mlp_probability"].to_numpy(), proba[np.arange(N), mlp])
    assert np.array_equal(table["label"], zarr.open_group(str(small_store))["test/labels"][:])
    assert np.array_equal(table["id"], np.arange(N))


def bad_runs(tmp_path: Path, store: Path) -> dict[str, Path]:
    """Run folders that cannot be exported, by why."""
    (tmp_path / "empty").mkdir()
    runs = {"no run.json": tmp_path / "empty"}
    for name, kwargs in {"no mlp_probabilities": {"drop": "mlp_probabilities"},
                         "labels of another length": {"n": 590}}.items():
        run = tmp_path / name.replace(" ", "-")
        run.mkdir()
        make_run(run, store, **kwargs)  # type: ignore[arg-type]
        runs[name] = run
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    make_run(unfinished, store)
    (unfinished / "report.json").unlink()
    runs["unfinished"] = unfinished
    gone = tmp_path / "no-predictions"
    gone.mkdir()
    make_run(gone, store)
    shutil.rmtree(gone / "predictions.zarr")
    runs["no predictions"] = gone
    altered = tmp_path / "digit-200"
    altered.mkdir()
    make_run(altered, store)
    knn = zarr.open_array(str(altered / "predictions.zarr" / "knn"), mode="r+")
    knn[300] = 200
    runs["a digit of 200"] = altered
    return runs


def test_predictions_holding_no_digit_are_refused_naming_the_row(
    tmp_path: Path, small_store: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    run = bad_runs(tmp_path, small_store)["a digit of 200"]
    assert export.main([str(run), "--format", "csv"]) == EXIT_CODES[DataError]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {run / 'predictions.zarr'}/knn: row 300 holds 200; "
                           "expected a digit 0-9")


def test_a_bad_run_is_one_error_line_and_writes_nothing(
    tmp_path: Path, small_store: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    for why, run in bad_runs(tmp_path, small_store).items():
        before = sorted(p.name for p in run.iterdir())
        code = export.main([str(run), "--format", "parquet"])
        err = capsys.readouterr().err
        assert code not in (0, 2), why
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (why, err)
        assert sorted(p.name for p in run.iterdir()) == before, why


def test_an_existing_output_is_never_replaced(
    tmp_path: Path, small_store: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    make_run(tmp_path / "run", small_store)
    (tmp_path / "taken.csv").write_text("mine\n")
    assert export.main([str(tmp_path / "run"), "--format", "csv",
                        "--out", str(tmp_path / "taken.csv")]) == 5
    assert (tmp_path / "taken.csv").read_text() == "mine\n"
    assert capsys.readouterr().err.startswith("error: ")


def test_export_as_users_run_it(tmp_path: Path, small_store: Path) -> None:
    make_run(tmp_path / "run", small_store)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "jobs.export", str(tmp_path / "run"),
                           "--format", "csv"], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(tmp_path / "run" / "predictions.csv")) == N
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
