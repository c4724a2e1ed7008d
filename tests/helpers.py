"""Builders shared by test modules: small real KNN models and a tiny ONNX MLP (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_dist.data.sources import RawMnist, load_vendored
from mnist_dist.models.artifacts import write_manifest
from mnist_dist.models.knn import KnnModel, save_knn
from mnist_dist.models.mlp import INPUT_NAME, OUTPUT_NAME
from mnist_dist.models.scaler import Scaler

ONNX_OPSET = 17
ONNX_IR_VERSION = 8  # old enough for every onnxruntime the project allows


@lru_cache(maxsize=1)
def vendored_mnist() -> RawMnist:
    """The vendored MNIST, loaded once per process (for modules that cannot use a fixture)."""
    return load_vendored()


def fitted_scaler(images: np.ndarray) -> Scaler:
    """The StandardScaler of `images` uint8 (n, 784)."""
    pixels = images.astype(np.float64)
    return Scaler.from_moments(pixels.mean(axis=0), pixels.var(axis=0))


def identity_scaler() -> Scaler:
    """Mean 0, scale 1: standardised pixels equal raw pixels, so distances are exact integers."""
    return Scaler(np.zeros(784), np.ones(784))


def small_knn_model(n_reference: int = 300, n_neighbors: int = 3, offset: int = 0) -> KnnModel:
    """A KNN on `n_reference` real training digits starting at `offset`, scaled by their moments."""
    raw = vendored_mnist()
    reference = raw.x_train[offset : offset + n_reference]
    labels = raw.y_train[offset : offset + n_reference]
    return KnnModel(reference, labels, fitted_scaler(reference), n_neighbors)


def tiny_onnx_mlp(path: Path, seed: int = 0) -> np.ndarray:
    """Write a one-layer ONNX "MLP" to `path` and return its weights (785, 10) float32.

    Graph: uint8 `pixels` (n, 784) -> Cast -> MatMul W[:784] -> Add W[784] -> Softmax ->
    float32 `probabilities` (n, 10), the input/output contract of `OnnxMlp`.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 0.01, size=(785, 10)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["x", "W"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT_NAME], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [None, 784])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 10])],
        initializer=[
            numpy_helper.from_array(weights[:784], "W"),
            numpy_helper.from_array(weights[784], "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return weights


def tiny_mlp_probabilities(weights: np.ndarray, images: np.ndarray) -> np.ndarray:
    """NumPy reference of `tiny_onnx_mlp`'s output, float64 (n, 10)."""
    logits = images.astype(np.float64) @ weights[:784].astype(np.float64) + weights[784]
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def write_model_dir(directory: Path, knn: KnnModel | None = None) -> Path:
    """A complete, checksummed model directory: `knn.*`, a tiny `mlp.onnx`, `mlp.json`, manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    save_knn(knn if knn is not None else small_knn_model(), directory)
    tiny_onnx_mlp(directory / "mlp.onnx")
    params = {"hidden": [], "input": INPUT_NAME, "output": OUTPUT_NAME}
    (directory / "mlp.json").write_text(json.dumps(params, indent=2) + "\n")
    write_manifest(directory, {"note": "tests.helpers.write_model_dir"})
    return directory


PEAK_RSS = """
import importlib, resource, sys
code = importlib.import_module(sys.argv[1]).main(sys.argv[2:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code)
"""


def job_peak_rss_kib(job: str, args: list[str], cwd: Path) -> int:
    """Peak RSS (KiB) of the client process of `python -m jobs.<job> ARGS` run in `cwd` (its
    workers are other processes); the job must exit 0."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, f"jobs.{job}", *args, "--workers", "2"],
        cwd=cwd, capture_output=True, text=True, timeout=1800, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    peak, code = done.stdout.split()[-2:]
    assert code == "0"
    return int(peak)


def write_digit_pngs(folder: Path, digits: np.ndarray, count: int) -> Path:
    """`count` PNG files in a new `folder`: the uint8 (n, 784) `digits` cycled, inverted (ink
    dark on white, as scans are)."""
    folder.mkdir()
    for i in range(count):
        Image.fromarray(255 - digits[i % len(digits)].reshape(28, 28)).save(folder / f"{i:05d}.png")
    return folder
