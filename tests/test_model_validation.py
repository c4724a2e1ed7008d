"""Models that pass their checksums but are malformed are refused on the client, before any work:
`cache.validate_models` checks every array, parameter, the ONNX contract and the
manifest's `models` section, each fault one ModelFormatError naming the file and the field."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_dist.errors import EXIT_CODES, ArtifactChecksumError, ModelFormatError
from mnist_dist.models import cache
from mnist_dist.models.artifacts import MANIFEST, ModelRef, read_manifest, write_manifest
from mnist_dist.models.cache import load_predictors, validate_models
from mnist_dist.models.knn import KnnModel, load_knn
from mnist_dist.models.mlp import INPUT_NAME, OUTPUT_NAME, OnnxMlp
from tests.helpers import small_knn_model, write_model_dir

N_REFERENCE = 120


@pytest.fixture(scope="module")
def knn_model() -> KnnModel:
    return small_knn_model(N_REFERENCE)


def trained_facts() -> dict[str, Any]:
    """The manifest's `models` section as training writes it."""
    return {
        "knn": {"train_seconds": 0.5, "test_accuracy": 0.9, "artifacts": ["knn.npz", "knn.json"]},
        "mlp": {"train_seconds": 3.0, "test_accuracy": 0.95,
                "artifacts": ["mlp.onnx", "mlp.json"]},
    }


@pytest.fixture
def models(tmp_path: Path, knn_model: KnnModel) -> Path:
    """A complete model folder whose manifest has a `models` section, as jobs.train writes."""
    directory = write_model_dir(tmp_path / "models", knn_model)
    write_manifest(directory, {"models": trained_facts()})
    return directory


def reseal(directory: Path) -> None:
    """Re-checksum the artifacts, keeping the rest of the manifest: the fault passes the SHA-256."""
    body = {k: v for k, v in read_manifest(directory).items() if k not in ("format", "artifacts")}
    write_manifest(directory, body)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def knn_arrays(model: KnnModel) -> dict[str, np.ndarray]:
    return {"reference": model.reference, "labels": model.labels,
            "mean": model.scaler.mean, "scale": model.scaler.scale}


def onnx_bytes(
    input_name: str = INPUT_NAME, input_type: str = "UINT8",
    input_shape: tuple[Any, ...] = (None, 784), n_outputs: int = 1, classes: int = 10,
    softmax: bool = True,
) -> bytes:
    """A one-layer ONNX model with the given interface (the valid one by default)."""
    from onnx import TensorProto, helper, numpy_helper

    pixels = int(np.prod([d for d in input_shape[1:]]))
    weights = np.full((pixels, classes), 0.001, np.float32)
    nodes = [
        helper.make_node("Cast", [input_name], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
    ]
    last = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["p"], axis=-1))
        last = "p"
    names = [OUTPUT_NAME] + [f"extra{i}" for i in range(1, n_outputs)]
    nodes += [helper.make_node("Identity", [last], [name]) for name in names]
    graph = helper.make_graph(
        nodes, "variant",
        [helper.make_tensor_value_info(input_name, getattr(TensorProto, input_type),
                                       list(input_shape))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, classes])
         for name in names],
        initializer=[numpy_helper.from_array(weights, "W"),
                     numpy_helper.from_array(np.array([-1, pixels], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def put(name: str, data: bytes | Callable[[KnnModel], bytes]) -> Callable[[Path, KnnModel], None]:
    def fault(directory: Path, model: KnnModel) -> None:
        (directory / name).write_bytes(data(model) if callable(data) else data)
    return fault


def arrays_with(**changes: Any) -> Callable[[KnnModel], bytes]:
    """knn.npz bytes with arrays replaced (an array) or dropped (None)."""
    def build(model: KnnModel) -> bytes:
        arrays = {**knn_arrays(model), **changes}
        return npz_bytes(**{k: v for k, v in arrays.items() if v is not None})
    return build


def params_with(value: Any) -> bytes:
    params = {"n_neighbors": 3, "weights": "uniform", "metric": "euclidean",
              "n_reference": N_REFERENCE, "preprocessing": "standard_scaler"}
    return json.dumps(value(params) if callable(value) else {**params, "n_neighbors": value}).encode()


def manifest_models(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, KnnModel], None]:
    def fault(directory: Path, model: KnnModel) -> None:
        manifest = read_manifest(directory)
        change(manifest)
        (directory / MANIFEST).write_text(json.dumps(manifest))
    return fault


def truncated(model: KnnModel) -> bytes:
    data = npz_bytes(**knn_arrays(model))
    return data[: len(data) // 2]


FAULTS: dict[str, tuple[Callable[[Path, KnnModel], None], str, str]] = {
    # name: (fault, file named, what the message says)
    "npz-truncated": (put("knn.npz", truncated), "knn.npz", "not a valid npz archive"),
    "npz-random-bytes": (put("knn.npz", b"\x93NUMPY garbage" * 40), "knn.npz",
                         "not a valid npz archive"),
    "npz-pickled-objects": (put("knn.npz", lambda m: npz_bytes(
        **{**knn_arrays(m), "labels": m.labels.astype(object)})), "knn.npz",
        "'labels' holds pickled Python objects"),
    "npz-missing-array": (put("knn.npz", arrays_with(scale=None)), "knn.npz",
                          "must hold the arrays"),
    "npz-extra-array": (put("knn.npz", arrays_with(weights=np.ones(3))), "knn.npz",
                        "must hold the arrays"),
    "reference-float": (put("knn.npz", lambda m: arrays_with(
        reference=m.reference.astype(np.float64))(m)), "knn.npz", "'reference' must be uint8"),
    "reference-28x28": (put("knn.npz", lambda m: arrays_with(
        reference=m.reference.reshape(-1, 28, 28))(m)), "knn.npz", r"shape \(n, 784\)"),
    "reference-empty": (put("knn.npz", arrays_with(reference=np.zeros((0, 784), np.uint8),
                                                    labels=np.zeros(0, np.uint8))),
                        "knn.npz", r"n >= 1"),
    "labels-int64": (put("knn.npz", lambda m: arrays_with(
        labels=m.labels.astype(np.int64))(m)), "knn.npz", "'labels' must be uint8"),
    "labels-short": (put("knn.npz", lambda m: arrays_with(labels=m.labels[:-1])(m)),
                     "knn.npz", r"'labels' must be uint8 of shape \(n,\)"),
    "labels-eleven": (put("knn.npz", lambda m: arrays_with(
        labels=np.where(np.arange(N_REFERENCE) == 5, 11, m.labels).astype(np.uint8))(m)),
        "knn.npz", "labels must be digits 0-9; got 11"),
    "mean-783": (put("knn.npz", lambda m: arrays_with(mean=m.scaler.mean[:783])(m)),
                 "knn.npz", r"'mean' must be float64 of shape \(784,\)"),
    "mean-nan": (put("knn.npz", lambda m: arrays_with(
        mean=np.where(np.arange(784) == 3, np.nan, m.scaler.mean))(m)), "knn.npz",
        "'mean' must be finite"),
    "scale-zero": (put("knn.npz", arrays_with(scale=np.zeros(784))), "knn.npz",
                   "'scale' must be > 0"),
    "k-zero": (put("knn.json", params_with(0)), "knn.json", "n_neighbors must be an integer"),
    "k-negative": (put("knn.json", params_with(-2)), "knn.json", r"got -2 instead"),
    "k-text": (put("knn.json", params_with("3")), "knn.json", r"got '3' instead"),
    "k-float": (put("knn.json", params_with(2.5)), "knn.json", r"got 2\.5 instead"),
    "k-bool": (put("knn.json", params_with(True)), "knn.json", r"got True instead"),
    "k-over-reference": (put("knn.json", params_with(N_REFERENCE + 1)), "knn.json",
                         rf"\[1, {N_REFERENCE}\]"),
    "k-missing": (put("knn.json", params_with(lambda p: {"metric": "euclidean"})), "knn.json",
                  "got None instead"),
    "params-not-json": (put("knn.json", b"{n_neighbors: 3"), "knn.json", "not valid JSON"),
    "params-a-list": (put("knn.json", b"[3]"), "knn.json", "must be a JSON object"),
    "params-cosine": (put("knn.json", params_with(lambda p: {**p, "metric": "cosine"})),
                      "knn.json", "metric must be 'euclidean'"),
    "params-n-reference": (put("knn.json", params_with(lambda p: {**p, "n_reference": 7})),
                           "knn.json", "n_reference is 7"),
    "onnx-random-bytes": (put("mlp.onnx", bytes(range(256)) * 8), "mlp.onnx",
                          "not a loadable ONNX model"),
    "onnx-empty": (put("mlp.onnx", b""), "mlp.onnx", "not a loadable ONNX model"),
    "onnx-input-name": (put("mlp.onnx", onnx_bytes(input_name="x_in")), "mlp.onnx",
                        "must take one input 'pixels' uint8"),
    "onnx-input-28x28": (put("mlp.onnx", onnx_bytes(input_shape=(None, 28, 28))), "mlp.onnx",
                         r"of shape \(n, 784\)"),
    "onnx-input-float": (put("mlp.onnx", onnx_bytes(input_type="FLOAT")), "mlp.onnx",
                         "tensor\\(float\\)"),
    "onnx-fixed-batch": (put("mlp.onnx", onnx_bytes(input_shape=(1, 784))), "mlp.onnx",
                         "must take one input"),
    "onnx-20-outputs": (put("mlp.onnx", onnx_bytes(n_outputs=20)), "mlp.onnx",
                        "must give one output 'probabilities' float32; got 20"),
    "onnx-20-classes": (put("mlp.onnx", onnx_bytes(classes=20)), "mlp.onnx",
                        r"shape \(n, 10\); got \(2, 20\)"),
    "onnx-logits": (put("mlp.onnx", onnx_bytes(softmax=False)), "mlp.onnx",
                    "each row summing to 1"),
    "mlp-json-not-json": (put("mlp.json", b"\xff\xfe"), "mlp.json", "not valid JSON"),
    "mlp-json-other-input": (put("mlp.json", json.dumps(
        {"input": "x", "output": OUTPUT_NAME}).encode()), "mlp.json", "must be a JSON object with"),
    "manifest-no-models": (manifest_models(lambda m: m.pop("models")), MANIFEST,
                           "manifest has no `models` section"),
    "manifest-no-knn": (manifest_models(lambda m: m["models"].pop("knn")), MANIFEST,
                        "models.knn must be an object"),
    "manifest-accuracy-text": (manifest_models(
        lambda m: m["models"]["mlp"].update(test_accuracy="high")), MANIFEST,
        r"models\.mlp\.test_accuracy must be a number in \[0, 1\]"),
    "manifest-no-train-seconds": (manifest_models(
        lambda m: m["models"]["knn"].pop("train_seconds")), MANIFEST,
        r"models\.knn\.train_seconds must be a number"),
    "manifest-artifacts": (manifest_models(lambda m: m["models"]["mlp"].pop("artifacts")),
                           MANIFEST, r"models\.mlp\.artifacts must be \['mlp\.onnx', 'mlp\.json'\]"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_malformed_models_are_refused_naming_the_file(
    models: Path, knn_model: KnnModel, fault: str
) -> None:
    damage, name, reason = FAULTS[fault]
    damage(models, knn_model)
    if name != MANIFEST:
        reseal(models)  # the bytes match the manifest: only validation can catch the fault
    ref = ModelRef.from_directory(models)  # checksums pass
    with pytest.raises(ModelFormatError, match=rf"^{re.escape(str(models.resolve() / name))}: "
                       rf".*{reason}") as caught:
        validate_models(ref)
    assert len(str(caught.value).splitlines()) == 1
    assert EXIT_CODES[ModelFormatError] == 14


def test_a_valid_model_set_passes_and_returns_its_manifest(models: Path) -> None:
    manifest = validate_models(ModelRef.from_directory(models))
    assert manifest["models"] == trained_facts()


def test_validation_builds_no_gemm_backend(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validate_models must not build the GEMM weights")

    monkeypatch.setattr(cache, "GemmKnn", refuse)
    validate_models(ModelRef.from_directory(models))


@pytest.mark.parametrize("fault", ["npz-pickled-objects", "k-zero", "onnx-20-outputs"])
def test_workers_loading_a_malformed_model_raise_the_same_error(
    models: Path, knn_model: KnnModel, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "_cache", {})
    damage, _, reason = FAULTS[fault]
    damage(models, knn_model)
    reseal(models)
    with pytest.raises(ModelFormatError, match=reason):
        load_predictors(ModelRef.from_directory(models))


def test_load_knn_and_onnx_load_name_the_file(models: Path, knn_model: KnnModel) -> None:
    FAULTS["k-zero"][0](models, knn_model)
    with pytest.raises(ModelFormatError, match=rf"^{re.escape(str(models / 'knn.json'))}: "):
        load_knn(models)
    (models / "mlp.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFormatError, match=rf"^{re.escape(str(models / 'mlp.onnx'))}: "):
        OnnxMlp.load(models / "mlp.onnx")


def test_a_warm_client_checks_the_knn_arrays_once_per_content_and_verifies_files_every_time(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "_validated_knn", {})
    built: list[int] = []
    knn_from_bytes = cache.knn_from_bytes

    def counting(*args: Any) -> KnnModel:
        built.append(1)
        return knn_from_bytes(*args)

    monkeypatch.setattr(cache, "knn_from_bytes", counting)
    ref = ModelRef.from_directory(models)
    first = validate_models(ref)
    assert validate_models(ref) == first and len(built) == 1  # same bytes: checked once
    npz = models / "knn.npz"
    data = bytearray(npz.read_bytes())
    data[-30] ^= 0xFF
    npz.write_bytes(bytes(data))  # changed after the check, manifest untouched
    with pytest.raises(ArtifactChecksumError, match="knn.npz"):
        validate_models(ref)
