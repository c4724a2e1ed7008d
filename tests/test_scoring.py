"""The Dask scoring graph on a real LocalCluster: same answers as one process, models shipped once."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client, LocalCluster

from mnist_dist.cluster import check_versions, package_versions, version_mismatches
from mnist_dist.errors import StoreExistsError, StoreNotFoundError
from mnist_dist.metrics import confusion_matrix
from mnist_dist.models import cache
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.outputs import MODEL_NAMES
from mnist_dist.scoring.graph import score_graph, score_in_process
from mnist_dist.scoring.spec import ScoreJob


def make_job(store: Path, models: Path, out: Path, rows: int) -> ScoreJob:
    return ScoreJob(
        store=str(store), run_dir=out, models=ModelRef.from_directory(models),
        partition_rows=rows,
    )


@pytest.mark.parametrize("rows", [7, 250, 333, 1000])
def test_dask_matches_one_process_for_any_partition_size(
    rows: int, small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path, rows)
    result = score_graph(local_client, job, show_progress=False)
    expected = score_in_process(job)
    labels = zarr.open_group(str(small_store), mode="r")["test/labels"][:]
    written = zarr.open_group(job.predictions, mode="r")
    assert result.n_images == len(labels) == 600
    assert result.partitions == -(-600 // rows)
    for name in MODEL_NAMES:
        np.testing.assert_array_equal(written[name][:], expected[name])
        np.testing.assert_array_equal(result.confusion[name], confusion_matrix(labels, expected[name]))
        assert result.task_seconds[name] > 0


def test_misclassified_sample_points_at_real_mistakes(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path, 100)
    result = score_graph(local_client, job, show_progress=False)
    labels = zarr.open_group(str(small_store), mode="r")["test/labels"][:]
    predictions = zarr.open_group(job.predictions, mode="r")
    for name in MODEL_NAMES:
        rows = result.misclassified[name]
        wrong = np.flatnonzero(labels != predictions[name][:])
        assert len(rows) == min(job.sample_misclassified, len(wrong))
        for index, true, predicted in rows:
            assert labels[index] == true != predicted == predictions[name][index]


def test_models_load_once_per_worker_and_tasks_carry_only_a_reference(
    small_store: Path, small_models: Path, tmp_path: Path
) -> None:
    ref = ModelRef.from_directory(small_models)
    assert len(pickle.dumps(ref)) < 2_000  # what each task carries: a path and checksums
    with LocalCluster(n_workers=2, threads_per_worker=2, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        for run in range(2):
            job = make_job(small_store, small_models, tmp_path / str(run), 50)
            score_graph(client, job, show_progress=False)
        loads = client.run(lambda: cache.load_count)
    assert set(loads.values()) == {1}, loads


def test_existing_predictions_are_never_overwritten(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path, 250)
    zarr.open_group(job.predictions, mode="w").attrs["keep"] = "x"
    with pytest.raises(StoreExistsError, match="predictions already exist"):
        score_graph(local_client, job, show_progress=False)
    assert zarr.open_group(job.predictions, mode="r").attrs["keep"] == "x"


def test_failed_run_leaves_no_partial_predictions(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path, 250)
    broken = ScoreJob(**{**job.__dict__, "split": "missing"})
    with pytest.raises(StoreNotFoundError, match="split 'missing' not found"):
        score_graph(local_client, broken, show_progress=False)
    assert list(tmp_path.iterdir()) == []


def test_resume_recomputes_only_missing_partitions(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path / "run", 100)
    full = score_graph(local_client, job, show_progress=False)
    markers = sorted((tmp_path / "run" / "partitions").iterdir())
    assert len(markers) == full.partitions == 6
    for lost in markers[::2]:  # as if interrupted: three partitions never finished
        lost.unlink()
    kept = {m.name: m.stat().st_mtime_ns for m in markers[1::2]}
    resumed = score_graph(local_client, replace(job, resume=True), show_progress=False)
    assert resumed.partitions_computed == 3 and resumed.partitions == 6
    assert {m.name: m.stat().st_mtime_ns for m in markers[1::2]} == kept
    for name in MODEL_NAMES:
        np.testing.assert_array_equal(resumed.confusion[name], full.confusion[name])
        np.testing.assert_array_equal(resumed.misclassified[name], full.misclassified[name])


def test_a_run_in_progress_is_not_restarted_without_resume(
    small_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = make_job(small_store, small_models, tmp_path / "run", 300)
    score_graph(local_client, job, show_progress=False)
    with pytest.raises(StoreExistsError, match="unfinished run; pass --resume"):
        score_graph(local_client, job, show_progress=False)
    other = replace(job, partition_rows=200, resume=True)
    with pytest.raises(StoreExistsError, match="cannot resume, the run differs in partition_rows"):
        score_graph(local_client, other, show_progress=False)


def test_version_check_passes_on_a_consistent_cluster_and_names_a_stray_worker(
    local_client: Client,
) -> None:
    check_versions(local_client)  # the same environment everywhere: no error
    ours = package_versions()
    assert ours["mnist-dist"] and ours["zarr"]
    stray = {**ours, "zarr": "2.18.0"}
    problems = version_mismatches(ours, {"tcp://a:1": ours, "tcp://b:2": stray})
    assert problems == [f"worker tcp://b:2 has zarr 2.18.0 (client {ours['zarr']})"]
