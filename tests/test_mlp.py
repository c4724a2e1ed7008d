"""MLP: training architecture, ONNX export (raw uint8 in), verification and the ORT predictor."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_dist.data.sources import load_vendored
from mnist_dist.errors import DataError, ModelNotFoundError, ModelValidationError
from mnist_dist.models.mlp import OnnxMlp, OrtSettings
from mnist_dist.models.scaler import Scaler

N_TRAIN = 8000
N_TEST = 1000
# Batch 32 gives enough steps in one epoch on 8000 digits to pass 0.85 with a wide margin.
TINY = {"epochs": 1, "batch_size": 32}


@dataclass(frozen=True)
class Trained:
    """A 1-epoch model, its scaler, its ONNX export and the held-out digits."""

    model: Any
    scaler: Scaler
    onnx_path: Path
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from mnist_dist.models.mlp_train import MlpSettings, export_onnx, train_mlp

    raw = load_vendored()
    x, y = raw.x_train[:N_TRAIN], raw.y_train[:N_TRAIN]
    scaler = Scaler.from_moments(x.mean(axis=0), x.var(axis=0))
    model = train_mlp(x, y, scaler, MlpSettings(**TINY))
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    export_onnx(model, scaler, path)
    return Trained(model, scaler, path, raw.x_test[:N_TEST], raw.y_test[:N_TEST])


@pytest.fixture(scope="module")
def onnx_mlp(trained: Trained) -> OnnxMlp:
    return OnnxMlp.load(trained.onnx_path)


def test_architecture_is_the_studys(trained: Trained) -> None:
    import keras

    layers = trained.model.layers
    assert trained.model.input_shape == (None, 784)
    assert [type(layer) for layer in layers] == [keras.layers.Dense, keras.layers.Dropout] * 3 + [
        keras.layers.Dense
    ]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [256, 128, 64, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu"] * 3 + ["softmax"]
    assert [layer.rate for layer in layers if isinstance(layer, keras.layers.Dropout)] == [0.2] * 3
    assert dense[0].kernel.shape == (784, 256)


def test_export_verifies_and_argmax_agrees(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    import onnxruntime as ort

    from mnist_dist.models.mlp_train import verify_onnx

    max_diff = verify_onnx(trained.model, trained.scaler, trained.onnx_path, trained.x_test)
    keras_proba = trained.model.predict(
        trained.scaler.transform(trained.x_test, np.float32), verbose=0
    )
    # A plain session, independent of OnnxMlp and verify_onnx: the reported figure is the truth.
    session = ort.InferenceSession(str(trained.onnx_path), providers=["CPUExecutionProvider"])
    (onnx_proba,) = session.run(None, {"pixels": trained.x_test})
    measured = float(np.abs(onnx_proba - keras_proba).max())
    assert measured <= 1e-4
    assert max_diff == pytest.approx(measured, rel=0.01, abs=1e-9)
    np.testing.assert_array_equal(onnx_mlp.predict(trained.x_test), keras_proba.argmax(axis=1))


def test_export_leaves_only_the_model_file(trained: Trained) -> None:
    assert [p.name for p in trained.onnx_path.parent.iterdir()] == ["mlp.onnx"]


def test_onnx_takes_raw_uint8_pixels(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    import onnx

    graph = onnx.load(str(trained.onnx_path)).graph
    (pixels,) = graph.input
    assert pixels.name == "pixels"
    assert pixels.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = pixels.type.tensor_type.shape.dim
    assert len(dims) == 2 and not dims[0].HasField("dim_value") and dims[1].dim_value == 784
    (output,) = graph.output
    assert output.name == "probabilities"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    proba = onnx_mlp.predict_proba(trained.x_test)
    assert proba.dtype == np.float32 and proba.shape == (N_TEST, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_one_epoch_accuracy(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    predicted = onnx_mlp.predict(trained.x_test)
    assert predicted.dtype == np.uint8 and predicted.shape == (N_TEST,)
    assert (predicted == trained.y_test).mean() > 0.85


def test_verify_rejects_a_different_model(trained: Trained) -> None:
    import keras

    from mnist_dist.models.mlp_train import MlpSettings, build_mlp, verify_onnx

    keras.utils.set_random_seed(7)
    other = build_mlp(MlpSettings(seed=7))
    with pytest.raises(ModelValidationError, match=r"\d+ of 1000 argmax mismatches"):
        verify_onnx(other, trained.scaler, trained.onnx_path, trained.x_test)


def test_verify_rejects_a_small_drift(trained: Trained) -> None:
    import keras

    from mnist_dist.models.mlp_train import verify_onnx

    drifted = keras.models.clone_model(trained.model)
    weights = trained.model.get_weights()
    weights[-1] = weights[-1] + np.eye(10, dtype=np.float32)[0] * 0.01
    drifted.set_weights(weights)
    with pytest.raises(ModelValidationError, match=r"max \|Δp\| = .*\(tolerance 0.0001\)"):
        verify_onnx(drifted, trained.scaler, trained.onnx_path, trained.x_test)


def test_accepts_28x28_images(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    images = trained.x_test[:5]
    np.testing.assert_array_equal(
        onnx_mlp.predict(images.reshape(5, 28, 28)), onnx_mlp.predict(images)
    )


@pytest.mark.parametrize(
    "images",
    [np.zeros((3, 784), np.float64), np.zeros((3, 783), np.uint8), np.zeros(784, np.uint8)],
    ids=["float64", "783-pixels", "1-d"],
)
def test_rejects_bad_images(onnx_mlp: OnnxMlp, images: np.ndarray) -> None:
    with pytest.raises(
        DataError, match=r"images must be uint8 of shape \(n, 784\); got .* instead"
    ):
        onnx_mlp.predict_proba(images)


def test_empty_batch(onnx_mlp: OnnxMlp) -> None:
    empty = np.zeros((0, 784), np.uint8)
    proba = onnx_mlp.predict_proba(empty)
    assert proba.shape == (0, 10) and proba.dtype == np.float32
    assert onnx_mlp.predict(empty).shape == (0,)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        OnnxMlp.load(tmp_path / "absent.onnx")


def test_session_settings_agree(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    plain = OnnxMlp.load(
        trained.onnx_path, OrtSettings(intra_op_threads=2, graph_optimization="disable")
    )
    np.testing.assert_allclose(
        plain.predict_proba(trained.x_test), onnx_mlp.predict_proba(trained.x_test), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs", [{"intra_op_threads": 0}, {"graph_optimization": "max"}], ids=["threads", "level"]
)
def test_ort_settings_validate(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        OrtSettings(**kwargs)


def test_one_instance_shared_by_threads(trained: Trained, onnx_mlp: OnnxMlp) -> None:
    batches = np.array_split(trained.x_test, 8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(onnx_mlp.predict, batches))
    np.testing.assert_array_equal(np.concatenate(results), onnx_mlp.predict(trained.x_test))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hidden": ()},
        {"dropout": 1.0},
        {"epochs": 0},
        {"validation_split": 1.0},
        {"learning_rate": 0.0},
    ],
    ids=["hidden", "dropout", "epochs", "split", "lr"],
)
def test_mlp_settings_validate(kwargs: dict[str, Any]) -> None:
    from mnist_dist.models.mlp_train import MlpSettings

    with pytest.raises(ValueError, match="must be"):
        MlpSettings(**kwargs)


def test_train_rejects_float_images() -> None:
    from mnist_dist.models.mlp_train import MlpSettings, train_mlp

    scaler = Scaler(np.zeros(784), np.ones(784))
    with pytest.raises(DataError, match=r"images must be uint8"):
        train_mlp(np.zeros((4, 784)), np.zeros(4, np.uint8), scaler, MlpSettings())


def test_scoring_module_does_not_import_tensorflow() -> None:
    code = (
        "import sys, mnist_dist.models.mlp\n"
        "leaked = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
