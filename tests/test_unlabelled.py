"""Scoring a split without labels: the same predictions as the labelled split, and the richer
predictions store (MLP probabilities, KNN neighbours and distances, ids), made atomically."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import score as score_job
from mnist_dist.data.splits import split_stamp
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.knn import load_knn, predict_sklearn, vote
from mnist_dist.models.outputs import OUTPUT_ARRAYS
from mnist_dist.run_state import start_run
from mnist_dist.scoring.graph import job_identity, partition_ranges, score_graph, score_in_process
from mnist_dist.scoring.predictions import COMPLETE
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.scoring.summaries import THRESHOLDS, combine_summaries, prediction_summary

ROWS = 250  # the small store's chunk rows; partitions of 100 rows cross them


def copy_split(store: Path, out: Path, name: str, ids: bool = False) -> Path:
    """A copy of `store` with split `name`: the test split's images only (and ids if asked)."""
    shutil.copytree(store, out)
    root = zarr.open_group(str(out), mode="a")
    images = root["test/images"][:]
    group = root.create_group(name)
    group.create_array("images", data=images, chunks=(ROWS, 784))
    if ids:
        ids_array = group.create_array("ids", shape=(len(images),), dtype=str, chunks=(ROWS,))
        ids_array[:] = np.array([f"scans/{i:04d}.png" for i in range(len(images))], dtype=object)
    return out


@pytest.fixture(scope="module")
def unlabelled_store(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_split(small_store, tmp_path_factory.mktemp("unlabelled") / "copy.zarr", "new",
                      ids=True)


def make_job(store: Path, models: Path, out: Path, split: str, rows: int = 100) -> ScoreJob:
    return ScoreJob(store=str(store), run_dir=out, models=ModelRef.from_directory(models),
                    split=split, partition_rows=rows)


@pytest.fixture(scope="module")
def runs(small_store: Path, unlabelled_store: Path, small_models: Path, local_client: Client,
         tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The labelled test split and its unlabelled copy, each scored once on the cluster."""
    base = tmp_path_factory.mktemp("runs")
    labelled = make_job(small_store, small_models, base / "test", "test")
    unlabelled = make_job(unlabelled_store, small_models, base / "new", "new")
    return {"test": (labelled, score_graph(local_client, labelled, show_progress=False)),
            "new": (unlabelled, score_graph(local_client, unlabelled, show_progress=False))}


def stored(job: ScoreJob) -> zarr.Group:
    return zarr.open_group(job.predictions, mode="r")


def test_unlabelled_split_gives_the_predictions_of_the_labelled_one(runs: dict) -> None:
    (test_job, test), (new_job, new) = runs["test"], runs["new"]
    assert new.labelled is False and new.confusion == {} and new.misclassified == {}
    assert test.labelled is True and new.n_images == test.n_images == 600
    arrays = [a for name in OUTPUT_ARRAYS for a, _, _ in OUTPUT_ARRAYS[name]]
    for name in arrays:
        np.testing.assert_array_equal(stored(new_job)[name][:], stored(test_job)[name][:])
    for name in ("knn", "mlp"):
        np.testing.assert_array_equal(new.predictions.predicted[name],
                                      test.predictions.predicted[name])
    np.testing.assert_array_equal(new.predictions.agreement, test.predictions.agreement)
    labels = zarr.open_group(test_job.store, mode="r")["test/labels"][:]
    for name in ("least_confident", "disagreements"):
        labelled_rows = [dict(row) for row in getattr(test.predictions, name)]
        assert all(row.pop("true") == labels[row["index"]] for row in labelled_rows)
        assert "true" not in getattr(new.predictions, name)[0]
        assert getattr(new.predictions, name) == labelled_rows
    assert stored(new_job).attrs[COMPLETE] is True


def test_store_arrays_are_chunked_like_the_partitions(runs: dict) -> None:
    job, _ = runs["new"]
    group = stored(job)
    assert group["mlp_probabilities"].dtype == np.float32
    assert group["mlp_probabilities"].chunks == (100, 10)
    assert group["knn_distances"].dtype == np.float32 and group["knn_distances"].chunks == (100, 3)
    assert group["knn_neighbours"].dtype.kind == "i" and group["knn_neighbours"].shape == (600, 3)
    assert group["knn"].chunks == group["mlp"].chunks == group["ids"].chunks == (100,)


def test_probabilities_sum_to_one_and_their_argmax_is_the_mlp_digit(runs: dict) -> None:
    group = stored(runs["new"][0])
    probabilities = group["mlp_probabilities"][:]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), group["mlp"][:])


def test_neighbours_reproduce_the_knn_vote(runs: dict, small_models: Path,
                                           unlabelled_store: Path) -> None:
    group = stored(runs["new"][0])
    knn = load_knn(small_models)
    neighbours = group["knn_neighbours"][:]
    assert neighbours.min() >= 0 and neighbours.max() < len(knn.reference)
    voted = vote(knn.labels[neighbours])
    np.testing.assert_array_equal(voted, group["knn"][:])
    images = zarr.open_group(str(unlabelled_store), mode="r")["new/images"][:]
    np.testing.assert_array_equal(voted, predict_sklearn(knn, images))


def test_distances_are_ascending_and_the_true_nearest_in_float64(
    runs: dict, small_models: Path, unlabelled_store: Path
) -> None:
    group = stored(runs["new"][0])
    knn = load_knn(small_models)
    distances, neighbours = group["knn_distances"][:], group["knn_neighbours"][:]
    assert (np.diff(distances, axis=1) >= 0).all()
    images = zarr.open_group(str(unlabelled_store), mode="r")["new/images"][:]
    queries = knn.scaler.transform(images, np.float64)
    reference = knn.scaler.transform(knn.reference, np.float64)
    for row in range(0, 600, 37):
        direct = np.sqrt(np.square(queries[row] - reference).sum(axis=1))
        np.testing.assert_array_equal(distances[row], direct[neighbours[row]].astype(np.float32))
        np.testing.assert_allclose(distances[row], np.sort(direct)[:3], rtol=1e-6)


def test_ids_are_copied_and_split_without_ids_has_none(runs: dict,
                                                       unlabelled_store: Path) -> None:
    source = zarr.open_group(str(unlabelled_store), mode="r")["new/ids"][:]
    np.testing.assert_array_equal(stored(runs["new"][0])["ids"][:], source)
    assert "ids" not in stored(runs["test"][0])


def test_a_half_made_predictions_store_is_made_again_on_resume(
    unlabelled_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(unlabelled_store, small_models, tmp_path / "run", "new", rows=300)
    start_run(job.run_dir, job_identity(job, 600, split_stamp(job.store, job.split)),
              resume=False, ranges=partition_ranges(600, 300))
    half = zarr.open_group(job.predictions, mode="w")  # as if killed after its first array
    half.create_array("knn", shape=(600,), chunks=(300,), dtype="uint8", fill_value=0)
    result = score_graph(local_client, replace(job, resume=True), show_progress=False)
    group = stored(job)
    assert group.attrs[COMPLETE] is True and "mlp_probabilities" in group
    expected = score_in_process(job)
    for name in ("knn", "mlp"):
        np.testing.assert_array_equal(group[name][:], expected[name])
    assert result.partitions_computed == 2


def test_partition_summaries_combine_to_the_summary_of_all_rows() -> None:
    rng = np.random.default_rng(0)
    n = 500
    probabilities = rng.dirichlet(np.full(10, 0.3), n).astype(np.float32)
    outputs = {"mlp": probabilities.argmax(axis=1).astype(np.uint8),
               "mlp_probabilities": probabilities,
               "knn": rng.integers(0, 10, n).astype(np.uint8),
               "knn_neighbours": rng.integers(0, 3000, (n, 3)),
               "knn_distances": np.sort(rng.random((n, 3)), axis=1).astype(np.float32)}
    whole = prediction_summary(outputs, 0, limit=12)
    bounds = [0, 7, 120, 333, 334, 500]
    parts = [prediction_summary({k: v[a:b] for k, v in outputs.items()}, a, limit=12)
             for a, b in itertools.pairwise(bounds)]
    combined = combine_summaries(parts, ("knn", "mlp"), limit=12)
    assert combined.least_confident == whole["least_confident"]
    assert combined.disagreements == whole["disagreements"]
    np.testing.assert_array_equal(combined.agreement, whole["agreement"])
    np.testing.assert_array_equal(combined.confidence, whole["confidence"])
    top = probabilities.max(axis=1)
    assert combined.under.tolist() == [int((top < t).sum()) for t in THRESHOLDS]
    assert combined.confidence.sum() == n == combined.predicted["mlp"].sum()
    lowest = np.argsort(top, kind="stable")[:12]
    assert [row["index"] for row in combined.least_confident] == lowest.tolist()
    assert np.trace(combined.agreement) == int((outputs["knn"] == outputs["mlp"]).sum())


def test_score_job_on_a_split_without_labels_writes_a_report_without_accuracy(
    unlabelled_store: Path, small_models: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = ["--store", str(unlabelled_store), "--models", str(small_models), "--out", str(out),
            "--split", "new", "--no-progress", "--workers", "2", "--batch-sizes", "1,10",
            "--sweep-seconds", "0.05"]
    assert score_job.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "mnist-dist-report/2" and report["dataset"]["n_images"] == 600
    assert "accuracy" not in report["models"]["knn"] and "accuracy" not in report["models"]["mlp"]
    predictions = zarr.open_group(str(out / "predictions.zarr"), mode="r")
    section = report["predictions"]
    assert section["counts"]["mlp"] == np.bincount(predictions["mlp"][:], minlength=10).tolist()
    agree = float(np.mean(predictions["knn"][:] == predictions["mlp"][:]))
    assert section["agreement"]["rate"] == pytest.approx(agree)
    knn = load_knn(small_models)
    item = section["disagreements"][0]
    assert predictions["knn"][item["index"]] != predictions["mlp"][item["index"]]
    rows = predictions["knn_neighbours"][item["index"]].tolist()
    assert [n["row"] for n in item["neighbours"]] == rows
    shown = base64.b64decode(item["neighbours"][0]["pixels_b64"])
    assert shown == knn.reference[rows[0]].tobytes()
    html = (out / "report.html").read_text()
    assert 'id="predictions"' in html and 'id="accuracy"' not in html
