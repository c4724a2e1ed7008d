"""The README's main command as a new user runs it, and the study's figures from its full-size
training on the default `seed` split (slow: ~4 minutes)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from dask.system import cpu_count

from mnist_dist.bench.knn_inputs import hard_inputs
from mnist_dist.data.expand import DeformParams
from mnist_dist.data.store import open_store
from mnist_dist.models.knn import GemmKnn, load_knn, predict_sklearn
from mnist_dist.preparation.tasks import generate_partition
from mnist_dist.settings import package_default
from mnist_dist.training.scaler import fit_scaler
from tests.test_console import TF_NOISE
from tests.test_score_job import check_report

pytestmark = pytest.mark.slow

STUDY_KNN_PER_DIGIT = [98.1, 99.2, 94.1, 95.0, 93.6, 94.1, 97.2, 92.7, 89.9, 92.0]
# MLP accuracy depends on the float rounding of training, which differs between machines of
# one kind: it is tested over seeds, not one run. The study's seed plus the first two others.
EXTRA_SEEDS = (0, 1)
STUDY_MLP_MEAN, STUDY_MLP_EACH = 0.970, 0.967


@dataclass(frozen=True)
class MainCommand:
    """What the README's main command did: its folder, exit status and console."""

    cwd: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def main_command(tmp_path_factory: pytest.TempPathFactory) -> MainCommand:
    """`python -m jobs.score` as a new user runs it, from a folder that is not the repository,
    with the data home (MNIST_DIST_HOME) empty: it builds the seed-split store, trains the
    study's models (10 epochs, seed 42) and scores the test split."""
    home, cwd = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("elsewhere")
    done = subprocess.run([sys.executable, "-m", "jobs.score"], cwd=cwd, capture_output=True,
                          text=True, timeout=900, check=False,
                          env={**os.environ, "MNIST_DIST_HOME": str(home)})
    return MainCommand(cwd, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def full(main_command: MainCommand) -> tuple[Path, dict]:
    """The data home the main command filled: seed-split store and models trained with the
    study's settings."""
    assert main_command.returncode == 0, main_command.stderr
    root = Path(re.search(r"models (\S+) not found: training them", main_command.stderr)[1]
                ).parent
    manifest = json.loads((root / "models" / "manifest.json").read_text())
    return root, manifest


def test_the_main_command_informs_without_noise_and_points_to_the_report(
    main_command: MainCommand, full: tuple[Path, dict],
) -> None:
    assert not TF_NOISE.search(main_command.stderr), TF_NOISE.findall(main_command.stderr)
    for noise in ("still alive", "Traceback", "INFO distributed.", "INFO tf2onnx"):
        assert noise not in main_command.stderr
    assert "training the MLP" in main_command.stderr  # its silent start announced
    (run,) = (main_command.cwd / "runs").iterdir()  # only the run lands in the working folder
    assert sorted(p.name for p in main_command.cwd.iterdir()) == ["runs"]
    report = run.relative_to(main_command.cwd) / "report.html"
    assert main_command.stdout.strip().splitlines()[-1] == f"report: {report}"
    assert sorted(p.name for p in full[0].iterdir()) == ["mnist.zarr", "models"]


def test_the_main_command_builds_everything_offline_and_reports(
    main_command: MainCommand, full: tuple[Path, dict],
) -> None:
    assert "building it from the vendored MNIST" in main_command.stderr
    assert "training them" in main_command.stderr
    (run,) = (main_command.cwd / "runs").iterdir()
    report = json.loads((run / "report.json").read_text())
    check_report(report, 14_000, tuple(package_default("score.batch-sizes")),
                 workers=cpu_count())
    assert report["models"]["knn"]["accuracy"] == pytest.approx(0.9465)


@pytest.fixture(scope="module")
def test_split(full: tuple[Path, dict]) -> tuple[np.ndarray, np.ndarray]:
    """The 14,000 test images uint8 (n, 784) and labels (n,)."""
    group = open_store(full[0] / "mnist.zarr")
    return group["test/images"][:], group["test/labels"][:]


@pytest.fixture(scope="module")
def other_seeds(full: tuple[Path, dict], test_split: tuple[np.ndarray, np.ndarray]
                ) -> dict[int, dict[str, Any]]:
    """The study's MLP trained with each of EXTRA_SEEDS and exported: per seed the ONNX path and
    Keras' own probabilities float32 (n, 10) on the test split."""
    from mnist_dist.models.mlp_train import MlpSettings, export_onnx, train_mlp

    root, _ = full
    group = open_store(root / "mnist.zarr")
    x_train, y_train = group["train/images"][:], group["train/labels"][:]
    scaler = fit_scaler(x_train, group["train/images"].chunks[0])
    trained = {}
    for seed in EXTRA_SEEDS:
        model = train_mlp(x_train, y_train, scaler, MlpSettings(seed=seed))
        path = root / f"mlp-seed{seed}.onnx"
        export_onnx(model, scaler, path)
        keras_proba = model.predict(scaler.transform(test_split[0], np.float32),
                                    batch_size=1000, verbose=0)
        trained[seed] = {"onnx": path, "keras_proba": keras_proba}
    return trained


def onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """A plain onnxruntime session's output for uint8 images: independent of `OnnxMlp`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [node.name for node in session.get_inputs()]
    return session.run(None, {name: images})[0]


def per_digit_percent(predictions: np.ndarray, labels: np.ndarray) -> list[float]:
    return [round(100 * float((predictions[labels == d] == d).mean()), 1) for d in range(10)]


def test_knn_reproduces_the_study_exactly(
    full: tuple[Path, dict], test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    root, manifest = full
    x_test, y_test = test_split
    assert len(x_test) == 14_000
    predictions = GemmKnn(load_knn(root / "models")).predict(x_test)
    assert float((predictions == y_test).mean()) == pytest.approx(0.9465, abs=5e-6)
    assert per_digit_percent(predictions, y_test) == STUDY_KNN_PER_DIGIT
    assert manifest["models"]["knn"]["test_accuracy"] == pytest.approx(0.9465, abs=5e-6)


def test_fast_knn_equals_scikit_learn_on_the_whole_test_split(
    full: tuple[Path, dict], test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    model = load_knn(full[0] / "models")
    np.testing.assert_array_equal(GemmKnn(model).predict(test_split[0]),
                                  predict_sklearn(model, test_split[0]))


def test_fast_knn_equals_scikit_learn_on_deformed_and_hard_digits(
    full: tuple[Path, dict], test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    # The full 56,000-reference model on 20,000 expanded-set deformations of the test digits
    # and on the bench's hard inputs (noise, border ink, single pixels, one-pixel edits of
    # training digits, shifts): where bounds are loosest and groups least alike.
    model = load_knn(full[0] / "models")
    deformed, _ = generate_partition(*test_split, 0, 20_000, 14, DeformParams())
    hard = np.concatenate(list(hard_inputs(test_split[0][:1_000], model.reference).values()))
    for queries in (deformed, hard):
        np.testing.assert_array_equal(GemmKnn(model).predict(queries),
                                      predict_sklearn(model, queries))


def test_manifest_records_the_exported_mlps_accuracy(
    full: tuple[Path, dict], test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    root, manifest = full
    x_test, y_test = test_split
    correct = int((onnx_probabilities(root / "models" / "mlp.onnx", x_test).argmax(axis=1)
                   == y_test).sum())
    # Session options may differ from the scoring ones: allow one near-tie to flip.
    assert abs(manifest["models"]["mlp"]["test_accuracy"] * len(y_test) - correct) <= 1


def test_onnx_export_equals_keras_on_the_whole_test_split(
    other_seeds: dict[int, dict[str, Any]], test_split: tuple[np.ndarray, np.ndarray]
) -> None:
    for seed, trained in other_seeds.items():
        onnx_proba = onnx_probabilities(trained["onnx"], test_split[0])
        keras_proba = trained["keras_proba"]
        assert float(np.abs(onnx_proba - keras_proba).max()) <= 1e-4, seed
        np.testing.assert_array_equal(onnx_proba.argmax(axis=1), keras_proba.argmax(axis=1))


def test_mlp_accuracy_over_three_seeds_meets_the_study(
    full: tuple[Path, dict], other_seeds: dict[int, dict[str, Any]],
    test_split: tuple[np.ndarray, np.ndarray],
) -> None:
    """The study's three runs: 97.41, 97.20, 97.1 %. Ours: seed 42 (the manifest) and two more."""
    root, _ = full
    x_test, y_test = test_split
    paths = {42: root / "models" / "mlp.onnx",
             **{seed: trained["onnx"] for seed, trained in other_seeds.items()}}
    accuracies = {seed: float((onnx_probabilities(path, x_test).argmax(axis=1) == y_test).mean())
                  for seed, path in paths.items()}
    print(f"MLP test accuracy by seed: {accuracies}")
    assert statistics.mean(accuracies.values()) >= STUDY_MLP_MEAN, accuracies
    assert min(accuracies.values()) >= STUDY_MLP_EACH, accuracies
