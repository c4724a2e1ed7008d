"""The public Python API: `md.load_models(...).predict` on NumPy and Dask
arrays, and `md.score(spec, client=...)` on the caller's own client."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client

import mnist_dist as md
from mnist_dist.data.splits import Split, checked_rows
from mnist_dist.errors import DataError, ModelNotFoundError, SpecError
from mnist_dist.models import artifacts, cache
from mnist_dist.models.outputs import MODEL_NAMES
from mnist_dist.predictor import output_names
from mnist_dist.scoring.graph import score_in_process
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.scoring.sweep import SweepSpec

REPO = Path(__file__).resolve().parents[1]


def test_the_public_names_are_listed_and_import_lazily() -> None:
    assert {"load_models", "Models", "score", "ScoreSpec"} <= set(md.__all__)
    assert set(md.__all__) == set(md._EXPORTS) | {"__version__", "installed_versions"}
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
    result = md.score(spec, client=local_client)
    report = result.report
    assert report["dataset"]["n_images"] == 600 and (first / "report.json").is_file()
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    loads = local_client.run(lambda: cache.load_count)
    again = md.score(md.ScoreSpec(**{**spec.__dict__, "out": second}), client=local_client)
    assert local_client.run(lambda: cache.load_count) == loads  # loaded models reused
    assert again.report["models"]["knn"]["confusion"] == report["models"]["knn"]["confusion"]
    assert local_client.status == "running"


@pytest.mark.parametrize("rows", [0, -5, 2.5, True])
def test_a_bad_partition_rows_is_a_spec_error_not_silently_the_default(rows: object) -> None:
    with pytest.raises(SpecError, match="partition_rows must be an integer >= 1"):
        md.ScoreSpec(partition_rows=rows)  # type: ignore[arg-type]


def test_a_spec_takes_its_run_folder_as_text(tmp_path: Path) -> None:
    assert md.ScoreSpec(out=str(tmp_path / "run")).out == tmp_path / "run"  # type: ignore[arg-type]


def labelled_spec(small_store: Path, small_models: Path, out: Path, **kw: object) -> md.ScoreSpec:
    return md.ScoreSpec(store=str(small_store), models=str(small_models), out=out,
                        partition_rows=200, show_progress=False, **kw)  # type: ignore[arg-type]


def unlabelled_copy(small_store: Path, where: Path) -> Path:
    """A copy of the small store with a split `new`: the test images without labels."""
    store = where / "unlabelled.zarr"
    shutil.copytree(small_store, store)
    root = zarr.open_group(str(store), mode="a")
    root.create_group("new").create_array("images", data=root["test/images"][:],
                                          chunks=(200, 784))
    return store


def test_the_result_is_typed_renders_in_a_notebook_and_gives_the_predictions(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    result = md.score(labelled_spec(small_store, small_models, tmp_path / "run",
                                    sweep=SweepSpec(batch_sizes=(1, 10), min_seconds=0.01)),
                      client=local_client)
    assert isinstance(result, md.ScoreResult) and result.labelled and result.n_images == 600
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.report == report and result.report_html.is_file()
    assert result.accuracy == {n: m["accuracy"] for n, m in report["models"].items()}
    html = result._repr_html_()
    knn = report["models"]["knn"]
    assert f"{100 * knn['accuracy']:.2f}%" in html and "600 images" in html
    assert all(f"<td>{100 * a:.1f}</td>" in html for a in knn["per_class_accuracy"])
    assert result.summary().splitlines()[0].startswith("scored 600 images")
    frame = result.predictions
    assert frame.npartitions >= 1
    stored = zarr.open_group(str(tmp_path / "run" / "predictions.zarr"), mode="r")
    np.testing.assert_array_equal(frame["knn"].compute().to_numpy(), stored["knn"][:])
    np.testing.assert_array_equal(frame["mlp"].compute().to_numpy(), stored["mlp"][:])
    assert report["throughput"]  # a labelled split is timed by default


def test_a_split_without_labels_skips_the_sweep_unless_asked_and_says_so_in_html(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    store = unlabelled_copy(small_store, tmp_path)
    quick = SweepSpec(batch_sizes=(1,), min_seconds=0.01)
    default = md.score(labelled_spec(store, small_models, tmp_path / "a", split="new",
                                     sweep=quick), client=local_client)
    assert not default.labelled and default.accuracy == {}
    assert default.report["throughput"] == []
    asked = md.score(labelled_spec(store, small_models, tmp_path / "b", split="new",
                                   sweep=quick, throughput=True), client=local_client)
    assert {row["batch_size"] for row in asked.report["throughput"]} == {1}
    counts = default.report["predictions"]["counts"]["knn"]
    assert "predicted digits" in default._repr_html_()
    assert f"<td>{counts[0]:,}</td>" in default._repr_html_()
    off = md.score(labelled_spec(small_store, small_models, tmp_path / "c", sweep=quick,
                                 throughput=False), client=local_client)
    assert off.labelled and off.report["throughput"] == []


def test_the_report_records_the_settings_the_spec_ran_with(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
) -> None:
    spec = md.ScoreSpec(store=str(small_store), models=str(small_models), out=tmp_path / "run",
                        partition_mb=40.0, show_progress=False, throughput=False)
    settings = md.score(spec, client=local_client).report["effective_settings"]
    assert settings["score"]["partition-mb"] == 40.0  # not the configured 20
    assert settings["store"] == str(small_store)


def test_the_split_is_checked_once_per_run(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    def counting(split: Split) -> int:
        calls.append(split.name)
        return checked_rows(split)

    monkeypatch.setattr("mnist_dist.data.splits.checked_rows", counting)
    md.score(labelled_spec(small_store, small_models, tmp_path / "run", throughput=False),
             client=local_client)
    assert calls == ["test"]


@pytest.mark.parametrize("value", ["yes", 1])
def test_a_bad_throughput_switch_is_a_spec_error(value: object) -> None:
    with pytest.raises(SpecError, match="throughput must be True, False or None"):
        md.ScoreSpec(throughput=value)  # type: ignore[arg-type]


# Zarr metadata documents (zarr.json) the client reads in one run of both models: the store's
# root (twice: ensure_store, open_split), the split and its two arrays, the predictions store
# made (root and 5 arrays) and checked for lost chunks (again). Before the client read each thing once: 103.
MAX_METADATA_READS = 25


def test_the_client_reads_each_model_file_once_and_metadata_a_bounded_number_of_times(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files: collections.Counter[str] = collections.Counter()
    metadata: collections.Counter[str] = collections.Counter()
    read_location = artifacts.read_location
    get = zarr.storage.LocalStore.get

    def counting_read(location: str) -> bytes:
        files[location.rsplit("/", 1)[-1]] += 1
        return read_location(location)

    async def counting_get(self: zarr.storage.LocalStore, key: str, *args: object,
                           **kwargs: object) -> object:
        if key.endswith("zarr.json"):
            metadata[key] += 1
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(artifacts, "read_location", counting_read)
    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    reads = []
    for rows in (100, 300):  # 6 partitions, then 2
        files.clear()
        metadata.clear()
        md.score(md.ScoreSpec(store=str(small_store), models=str(small_models),
                              out=tmp_path / str(rows), partition_rows=rows,
                              show_progress=False, throughput=False), client=local_client)
        # Every artifact, the saved KNN index included, read and verified once.
        assert files == {name: 1 for name in (*artifacts.ARTIFACTS, "knn_index.npz")}
        reads.append(sum(metadata.values()))
    assert reads[0] == reads[1] <= MAX_METADATA_READS, (reads, metadata)
