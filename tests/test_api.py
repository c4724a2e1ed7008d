"""The public Python API (issue 21, first step): `md.load_models(...).predict` on NumPy and Dask
arrays, and `md.score(spec, client=...)` on the caller's own client."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client

import mnist_dist as md
from mnist_dist.errors import DataError, ModelNotFoundError, SpecError
from mnist_dist.models import cache
from mnist_dist.predict import MODEL_NAMES
from mnist_dist.predictor import output_names
from mnist_dist.scoring import ScoreJob, score_in_process
from mnist_dist.throughput import SweepSpec

REPO = Path(__file__).resolve().parents[1]


def test_the_public_names_are_listed_and_import_lazily() -> None:
    assert {"load_models", "Models", "score", "ScoreSpec"} <= set(md.__all__)
    assert all(hasattr(md, name) for name in md.__all__)
    heavy = ("distributed", "dask", "tensorflow", "matplotlib", "dask_ml", "onnxruntime")
    code = ("import sys, mnist_dist; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_predict_on_numpy_gives_every_output_of_both_models(
    small_models: Path, small_store: Path
) -> None:
    models = md.load_models(str(small_models))
    images = zarr.open_group(str(small_store), mode="r")["test/images"][:120]
    out = models.predict(images)
    assert sorted(out) == sorted(output_names(MODEL_NAMES))
    np.testing.assert_array_equal(out["knn"], models.knn.predict(images))
    np.testing.assert_array_equal(out["mlp"], models.mlp.predict(images))
    np.testing.assert_allclose(out["mlp_probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert out["knn_neighbours"].shape == (120, 3) and out["knn_distances"].dtype == np.float32
    square = models.predict(images.reshape(-1, 28, 28), models=("knn",))
    assert sorted(square) == ["knn", "knn_distances", "knn_neighbours"]
    np.testing.assert_array_equal(square["knn"], out["knn"])


def test_a_dask_array_gives_lazy_outputs_equal_to_the_main_jobs_and_loads_once_per_worker(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    models = md.load_models(str(small_models))
    assert len(pickle.dumps(models)) < 2_000  # travels by reference, not by value
    images = da.from_zarr(str(small_store), component="test/images").rechunk((70, 784))
    lazy = models.predict(images)
    assert isinstance(lazy["knn"], da.Array) and lazy["mlp_probabilities"].shape == (600, 10)
    before = local_client.run(lambda: cache.load_count)
    computed = local_client.compute(lazy, sync=True)
    after = local_client.run(lambda: cache.load_count)
    assert all(after[w] - before.get(w, 0) <= 1 for w in after), (before, after)
    reference = score_in_process(ScoreJob(store=str(small_store), run_dir=tmp_path,
                                          models=models.ref, partition_rows=250))
    for name in MODEL_NAMES:
        np.testing.assert_array_equal(computed[name], reference[name])
    np.testing.assert_array_equal(computed["knn"], models.predict(np.asarray(images))["knn"])


@pytest.mark.parametrize("bad", [np.zeros((3, 784), np.float32), np.zeros((3, 783), np.uint8),
                                 [[0] * 784]])
def test_bad_images_are_a_data_error_naming_what_was_expected(
    small_models: Path, bad: object
) -> None:
    models = md.load_models(str(small_models))
    with pytest.raises(DataError, match=r"uint8 of shape \(n, 784\)"):
        models.predict(bad)
    if isinstance(bad, np.ndarray):
        with pytest.raises(DataError, match=r"uint8 of shape \(n, 784\)"):
            models.predict(da.from_array(bad))


def test_missing_models_are_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        md.load_models(str(tmp_path / "nowhere"))


def test_score_uses_the_callers_client_leaves_it_open_and_reuses_its_loaded_models(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    spec = md.ScoreSpec(store=str(small_store), models=str(small_models), out=first,
                        partition_rows=200, show_progress=False,
                        sweep=SweepSpec(batch_sizes=()))
    report = md.score(spec, client=local_client)
    assert report["dataset"]["n_images"] == 600 and (first / "report.json").is_file()
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    loads = local_client.run(lambda: cache.load_count)
    again = md.score(md.ScoreSpec(**{**spec.__dict__, "out": second}), client=local_client)
    assert local_client.run(lambda: cache.load_count) == loads  # loaded models reused
    assert again["models"]["knn"]["confusion"] == report["models"]["knn"]["confusion"]
    assert local_client.status == "running"


@pytest.mark.parametrize("rows", [0, -5, 2.5, True])
def test_a_bad_partition_rows_is_a_spec_error_not_silently_the_default(rows: object) -> None:
    with pytest.raises(SpecError, match="partition_rows must be an integer >= 1"):
        md.ScoreSpec(partition_rows=rows)  # type: ignore[arg-type]


def test_a_spec_takes_its_run_folder_as_text(tmp_path: Path) -> None:
    assert md.ScoreSpec(out=str(tmp_path / "run")).out == tmp_path / "run"  # type: ignore[arg-type]
