"""`jobs.score --images` has the start-up checks of the store path: models validated
on the client, versions checked across the cluster, models given by URL and shipped to workers
that cannot read them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import numpy as np
import pytest
import zarr
from distributed import Client
from PIL import Image

from jobs import score as score_job
from mnist_dist import cluster
from mnist_dist.errors import EXIT_CODES, ClusterError, ModelFormatError, ModelNotFoundError
from mnist_dist.models import cache
from mnist_dist.models.artifacts import write_manifest
from tests.helpers import small_knn_model, vendored_mnist, write_model_dir


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A small complete model folder whose manifest has the `models` section training writes."""
    directory = write_model_dir(tmp_path / "models", small_knn_model(200))
    write_manifest(directory, {"models": {
        "knn": {"train_seconds": 0.1, "test_accuracy": 0.9, "artifacts": ["knn.npz", "knn.json"]},
        "mlp": {"train_seconds": 0.2, "test_accuracy": 0.8, "artifacts": ["mlp.onnx", "mlp.json"]},
    }})
    return directory


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "digits"
    folder.mkdir()
    raw = vendored_mnist()
    for i in range(3):
        Image.fromarray(raw.x_test[i].reshape(28, 28)).save(folder / f"{raw.y_test[i]}_{i}.png")
    return folder


def copy_to_memory(local: Path, url: str) -> None:
    """Copy a folder into this process's in-memory fsspec filesystem (workers cannot see it)."""
    fs = fsspec.filesystem("memory")
    for path in local.iterdir():
        fs.pipe(f"{url}/{path.name}", path.read_bytes())


def run(images: Path, models: str, out: Path, client: Client, *more: str) -> int:
    return score_job.main(["--images", str(images), "--models", models, "--out", str(out),
                           "--scheduler", client.scheduler.address, "--labels-from-names", *more])


def test_models_given_by_url_are_shipped_to_workers_that_cannot_read_them(
    models: Path, images: Path, tmp_path: Path, local_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "memory://images-startup-models"
    copy_to_memory(models, url)
    code = run(images, url, tmp_path / "run", local_client)
    assert code == 0, capsys.readouterr().err[-2000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["cluster"]["models_shipped"] is True
    assert report["outputs"]["models"] == url
    assert report["images"]["n_scored"] == 3 and report["dataset"]["n_images"] == 3
    predictions = zarr.open_group(report["outputs"]["predictions"], mode="r")
    assert sorted(map(str, predictions["ids"][:])) == sorted(str(p) for p in images.iterdir())


def test_local_models_the_workers_can_read_are_not_shipped(
    models: Path, images: Path, tmp_path: Path, local_client: Client,
) -> None:
    assert run(images, str(models), tmp_path / "run", local_client) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["cluster"]["models_shipped"] is False
    assert report["outputs"]["models"] == str(models.resolve())


def test_other_versions_on_the_workers_are_refused_before_scoring(
    models: Path, images: Path, tmp_path: Path, local_client: Client,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    client_pid = os.getpid()

    def versions() -> dict[str, str | None]:  # sent by value: workers answer with their pid
        return {"mnist-dist": "client" if os.getpid() == client_pid else "worker"}

    monkeypatch.setattr(cluster, "package_versions", versions)
    code = run(images, str(models), tmp_path / "run", local_client)
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CODES[ClusterError]
    assert len(errors) == 1 and "library versions differ across the cluster" in errors[0]
    assert not (tmp_path / "run" / "report.json").exists()


@pytest.mark.parametrize(("damage", "named"), [
    (lambda d: (d / "knn.json").write_text('{"n_neighbors": 0}'), "knn.json"),
    (lambda d: (d / "mlp.onnx").write_bytes(np.random.default_rng(0).bytes(4096)), "mlp.onnx"),
])
def test_a_malformed_model_is_one_line_before_any_work(
    models: Path, images: Path, tmp_path: Path, local_client: Client,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, damage, named: str,
) -> None:
    damage(models)
    write_manifest(models, {"models": json.loads((models / "manifest.json").read_text())["models"]})
    monkeypatch.setattr(cache, "_cache", {})
    code = run(images, str(models), tmp_path / "run", local_client)
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CODES[ModelFormatError] == 14
    assert len(errors) == 1 and errors[0].startswith(f"error: {models.resolve() / named}: ")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_models_at_a_url_that_holds_none_are_one_line(
    images: Path, tmp_path: Path, local_client: Client, capsys: pytest.CaptureFixture[str],
) -> None:
    code = run(images, "memory://no-models-here", tmp_path / "run", local_client)
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CODES[ModelNotFoundError]
    assert len(errors) == 1 and "memory://no-models-here/manifest.json" in errors[0]
