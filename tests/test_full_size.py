"""The study's figures from full-size training on the default `seed` split (slow: ~2 minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store, open_store
from mnist_dist.models.knn import GemmKnn, load_knn, predict_sklearn
from mnist_dist.models.mlp import OnnxMlp
from mnist_dist.training import TrainSpec, train_models

pytestmark = pytest.mark.slow

STUDY_KNN_PER_DIGIT = [98.1, 99.2, 94.1, 95.0, 93.6, 94.1, 97.2, 92.7, 89.9, 92.0]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, vendored: RawMnist) -> tuple[Path, dict]:
    """Seed-split store and models trained with the study's settings (10 epochs)."""
    root = tmp_path_factory.mktemp("full")
    store = build_store(vendored, root / "mnist.zarr")
    manifest = train_models(TrainSpec(store=store, models=root / "models"))
    return root, manifest


def per_digit_percent(predictions: np.ndarray, labels: np.ndarray) -> list[float]:
    return [round(100 * float((predictions[labels == d] == d).mean()), 1) for d in range(10)]


def test_knn_reproduces_the_study_exactly(full: tuple[Path, dict]) -> None:
    root, manifest = full
    group = open_store(root / "mnist.zarr")
    x_test, y_test = group["test/images"][:], group["test/labels"][:]
    assert len(x_test) == 14_000
    predictions = GemmKnn(load_knn(root / "models")).predict(x_test)
    assert float((predictions == y_test).mean()) == pytest.approx(0.9465, abs=5e-6)
    assert per_digit_percent(predictions, y_test) == STUDY_KNN_PER_DIGIT
    assert manifest["models"]["knn"]["test_accuracy"] == pytest.approx(0.9465, abs=5e-6)


def test_fast_knn_equals_scikit_learn_on_the_whole_test_split(full: tuple[Path, dict]) -> None:
    root, _ = full
    group = open_store(root / "mnist.zarr")
    x_test = group["test/images"][:]
    model = load_knn(root / "models")
    np.testing.assert_array_equal(GemmKnn(model).predict(x_test), predict_sklearn(model, x_test))


def test_mlp_meets_the_study_accuracy_and_onnx_matches_keras(full: tuple[Path, dict]) -> None:
    root, manifest = full
    mlp = manifest["models"]["mlp"]
    # train_models verified ONNX against Keras on every test image (argmax and |dp| <= 1e-4).
    assert mlp["onnx_max_abs_diff"] <= 1e-4
    assert mlp["test_accuracy"] >= 0.970
    group = open_store(root / "mnist.zarr")
    onnx = OnnxMlp.load(root / "models" / "mlp.onnx")
    accuracy = float((onnx.predict(group["test/images"][:]) == group["test/labels"][:]).mean())
    assert accuracy == pytest.approx(mlp["test_accuracy"])
