"""The MLP's training: Keras, exported to ONNX and verified against Keras. TensorFlow is
imported only inside `train_and_export_mlp`, where it runs."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.models.mlp import INPUT_NAME, OUTPUT_NAME, OnnxMlp
from mnist_dist.models.scaler import Scaler

log = logging.getLogger(__name__)


def train_and_export_mlp(
    x_train: np.ndarray, y_train: np.ndarray, scaler: Scaler,
    x_test: np.ndarray, y_test: np.ndarray, directory: Path, epochs: int, seed: int,
) -> dict[str, Any]:
    """Train the Keras MLP, export it to ONNX, verify ONNX vs Keras on the whole test split;
    its manifest entry. Images uint8 (n, 784), labels uint8 (n,)."""
    log.info("training the MLP (784-256-128-64-10, %d epochs, seed %d): loading TensorFlow",
             epochs, seed)
    from mnist_dist.models.mlp_train import MlpSettings, export_onnx, train_mlp, verify_onnx

    settings = MlpSettings(epochs=epochs, seed=seed)
    start = time.perf_counter()
    model = train_mlp(x_train, y_train, scaler, settings)
    seconds = time.perf_counter() - start
    onnx_path = directory / "mlp.onnx"
    export_onnx(model, scaler, onnx_path)
    max_diff = verify_onnx(model, scaler, onnx_path, x_test)
    accuracy = float((OnnxMlp.load(onnx_path).predict(x_test) == y_test).mean())
    log.info("MLP test accuracy %.4f (ONNX vs Keras max |dp| %.2e)", accuracy, max_diff)
    params = {**asdict(settings), "input": INPUT_NAME, "output": OUTPUT_NAME}
    (directory / "mlp.json").write_text(json.dumps(params, indent=2) + "\n")
    return {
        "train_seconds": seconds, "test_accuracy": accuracy, "onnx_max_abs_diff": max_diff,
        "params": params, "artifacts": ["mlp.onnx", "mlp.json"],
    }
