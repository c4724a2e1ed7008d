"""The export job from Python: `md.export(spec, client=...)` on the caller's own client, its
`ExportResult`, and `md.read_predictions(run)`, the run's predictions as a lazy Dask DataFrame."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import Client, get_task_stream

import mnist_dist as md
from mnist_dist.errors import SpecError, StoreNotFoundError
from mnist_dist.scoring.sweep import SweepSpec
from tests.test_export import make_run

N, CHUNK = 600, 200  # the small store's test split; the scored run's partition rows
COLUMNS = ("id", "knn", "mlp", "mlp_probability", "agree", "label")


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory: pytest.TempPathFactory, small_store: Path, small_models: Path,
               local_client: Client) -> Path:
    """A finished `md.score` run of the small store's test split, in 200-row chunks."""
    run = tmp_path_factory.mktemp("api-export") / "run"
    md.score(md.ScoreSpec(store=str(small_store), models=str(small_models), out=run,
                          partition_rows=CHUNK, show_progress=False,
                          sweep=SweepSpec(batch_sizes=())), client=local_client)
    return run


def test_export_uses_the_callers_client_and_leaves_it_open(
    scored_run: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    spec = md.ExportSpec(run=scored_run, out=str(tmp_path / "p.parquet"))
    with get_task_stream(client=local_client) as stream:
        result = md.export(spec, client=local_client)
    assert stream.data  # the table was computed on the caller's workers
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    assert result == md.ExportResult(path=tmp_path / "p.parquet", format="parquet", rows=N,
                                     columns=COLUMNS)
    table = pd.read_parquet(result.path)
    assert len(table) == N and tuple(table.columns) == COLUMNS
    labels = zarr.open_group(str(small_store), mode="r")["test/labels"][:]
    assert np.array_equal(table["label"], labels) and np.array_equal(table["id"], np.arange(N))


@pytest.mark.parametrize("ids", [False, True], ids=["row-index", "string-ids"])
def test_read_predictions_is_lazy_and_equals_the_exported_parquet(
    scored_run: Path, small_store: Path, tmp_path: Path, ids: bool,
) -> None:
    run = scored_run
    if ids:  # a run whose predictions store holds the split's ids (as jobs.ingest makes them)
        store = tmp_path / "mnist.zarr"
        shutil.copytree(small_store, store)
        run = tmp_path / "run"
        run.mkdir()
        make_run(run, store, ids=True)
    with dask.config.set({"mnist-dist.export.partition-rows": 250}):
        frame = md.read_predictions(str(run))
    assert isinstance(frame, dd.DataFrame) and frame.npartitions > 1
    exported = pd.read_parquet(md.export(md.ExportSpec(run=run)).path)
    computed = frame.compute(scheduler="threads")
    assert list(computed.columns) == list(exported.columns)
    assert len(computed) == len(exported) == N
    for name in exported.columns:
        assert computed[name].dtype == exported[name].dtype, name
        assert np.array_equal(computed[name].to_numpy(), exported[name].to_numpy()), name


def test_read_predictions_of_a_folder_that_is_not_a_run_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="expected the folder of a jobs.score run"):
        md.read_predictions(tmp_path)


def test_the_result_renders_its_figures_and_escapes_hostile_text(
    scored_run: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "<script>alert(1)</script>" / "p.csv"
    result = md.export(md.ExportSpec(run=scored_run, format="csv", out=out))
    page = result._repr_html_()
    assert result.rows == N and result.format == "csv" and result.path == out
    assert f"{result.rows:,}" in page and "csv" in page
    assert all(f"<code>{name}</code>" in page for name in result.columns)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    big = md.ExportResult(path="s3://b/t.parquet", format="parquet", rows=1_234_567,
                          columns=("id", "<b>x</b>"))._repr_html_()
    assert "1,234,567" in big and "s3://b/t.parquet" in big
    assert "<b>x</b>" not in big and "&lt;b&gt;x&lt;/b&gt;" in big


@pytest.mark.parametrize("kwargs,match", [
    ({"run": "r", "format": "xlsx"}, "format must be one of parquet, csv; got 'xlsx' instead"),
    ({"run": 42}, "run must be the path of a jobs.score run folder; got 42 instead"),
    ({"run": ""}, "run must be the path of a jobs.score run folder; got '' instead"),
    ({"run": "r", "out": 3}, "out must be a path, a URL or None"),
])
def test_a_bad_spec_is_a_spec_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        md.ExportSpec(**kwargs)  # type: ignore[arg-type]


def test_a_spec_takes_its_run_folder_as_text(tmp_path: Path) -> None:
    spec = md.ExportSpec(run=str(tmp_path / "run"), format="csv")  # type: ignore[arg-type]
    assert spec.run == tmp_path / "run" and spec.target() == tmp_path / "run" / "predictions.csv"
