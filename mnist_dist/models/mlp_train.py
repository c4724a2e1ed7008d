"""Training side of the MLP: fit with Keras, export to ONNX (raw uint8 pixels in), verify.

TensorFlow and tf2onnx are imported inside the functions: scoring workers never import this.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.errors import DataError, ModelValidationError
from mnist_dist.models.inputs import N_CLASSES, N_PIXELS, check_images
from mnist_dist.models.mlp import INPUT_NAME, OUTPUT_NAME, OnnxMlp
from mnist_dist.models.scaler import Scaler

# TensorFlow's C++ log lines (absl, oneDNN and CPU-feature notices, "E0000 ... NodeDef mentions
# attribute" graph warnings) look like errors on a normal run: off unless the user sets them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlpSettings:
    """Hyper-parameters of the study's MLP (784-256-128-64-10, dropout after each hidden layer)."""

    hidden: tuple[int, ...] = (256, 128, 64)
    dropout: float = 0.2
    epochs: int = 10
    batch_size: int = 128
    validation_split: float = 0.1
    learning_rate: float = 1e-3
    seed: int = 42

    def __post_init__(self) -> None:
        if not self.hidden or any(int(units) < 1 for units in self.hidden):
            raise ValueError(f"hidden must be positive layer sizes; got {self.hidden} instead")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout} instead")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1; got {self.epochs}, {self.batch_size} instead"
            )
        if not 0.0 <= self.validation_split < 1.0:
            raise ValueError(
                f"validation_split must be in [0, 1); got {self.validation_split} instead"
            )
        if self.learning_rate <= 0.0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate} instead")


def check_training_data(images: np.ndarray, labels: np.ndarray) -> None:
    """Raise DataError unless images are uint8 (n, 784) and labels are n digits 0-9."""
    if images.ndim != 2:
        raise DataError(
            f"images must be uint8 of shape (n, {N_PIXELS}); "
            f"got {images.dtype} {images.shape} instead"
        )
    check_images(images)
    if labels.shape != (len(images),) or (labels.size and int(labels.max()) >= N_CLASSES):
        raise DataError(
            f"labels must be {len(images)} digits 0-9; got {labels.dtype} {labels.shape} instead"
        )


def build_mlp(settings: MlpSettings) -> keras.Model:
    """The uncompiled MLP: Dense+ReLU and Dropout per hidden layer, then Dense(10) softmax."""
    import keras

    layers: list[Any] = [keras.Input(shape=(N_PIXELS,), dtype="float32")]
    for units in settings.hidden:
        layers.append(keras.layers.Dense(units, activation="relu"))
        layers.append(keras.layers.Dropout(settings.dropout))
    layers.append(keras.layers.Dense(N_CLASSES, activation="softmax"))
    return keras.Sequential(layers, name="mnist_mlp")


def epoch_logger() -> keras.callbacks.Callback:
    """A callback that logs loss and accuracy (train and validation) after each epoch."""
    import keras

    def log_epoch(epoch: int, logs: dict[str, float] | None) -> None:
        logs = logs or {}
        log.info(
            "epoch %d: loss %.4f acc %.4f val_loss %.4f val_acc %.4f",
            epoch + 1,
            logs.get("loss", np.nan),
            logs.get("accuracy", np.nan),
            logs.get("val_loss", np.nan),
            logs.get("val_accuracy", np.nan),
        )

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)


def train_mlp(
    images: np.ndarray, labels: np.ndarray, scaler: Scaler, settings: MlpSettings
) -> keras.Model:
    """Fit the MLP on standardised uint8 images (n, 784) and labels (n,); seeded, deterministic."""
    import keras
    import tensorflow as tf

    check_training_data(images, labels)
    keras.utils.set_random_seed(settings.seed)
    # Deterministic kernels cost little on CPU and make a rerun reproduce the same weights.
    tf.config.experimental.enable_op_determinism()
    model = build_mlp(settings)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        scaler.transform(images, np.float32),
        labels.astype(np.int64),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        validation_split=settings.validation_split,
        verbose=0,
        callbacks=[epoch_logger()],
    )
    return model


def export_onnx(model: keras.Model, scaler: Scaler, path: Path, opset: int = 17) -> None:
    """Write `model` with standardisation folded in: uint8 "pixels" (n, 784) -> float32
    "probabilities" (n, 10). Written atomically."""
    import tensorflow as tf
    import tf2onnx

    mean = scaler.mean.astype(np.float32)
    inv_scale = (1.0 / scaler.scale).astype(np.float32)
    signature = [tf.TensorSpec([None, N_PIXELS], tf.uint8, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def scored(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        # Constants made inside the function are folded in; captured tensors would become inputs.
        standardised = (tf.cast(pixels, tf.float32) - tf.constant(mean)) * tf.constant(inv_scale)
        return {OUTPUT_NAME: model(standardised, training=False)}

    proto, _ = tf2onnx.convert.from_function(scored, input_signature=signature, opset=opset)
    check_io_names(proto)
    write_bytes_atomic(Path(path), proto.SerializeToString())
    log.info("exported ONNX MLP to %s (opset %d)", path, opset)


def check_io_names(proto: Any) -> None:
    """Raise ModelValidationError unless the graph is "pixels" -> "probabilities"."""
    inputs = [value.name for value in proto.graph.input]
    outputs = [value.name for value in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ModelValidationError(
            f"ONNX graph must map [{INPUT_NAME!r}] -> [{OUTPUT_NAME!r}]; "
            f"got {inputs} -> {outputs} instead"
        )


def verify_onnx(
    model: keras.Model,
    scaler: Scaler,
    onnx_path: Path,
    images: np.ndarray,
    tolerance: float = 1e-4,
) -> float:
    """Compare Keras and ONNX on uint8 images (n, 784); return max |Δp|, or raise
    ModelValidationError on any argmax mismatch or a difference above `tolerance`."""
    if len(images) == 0:
        raise DataError("images must hold at least one image to verify the ONNX export; got 0")
    expected = model.predict(scaler.transform(images, np.float32), batch_size=1000, verbose=0)
    actual = OnnxMlp.load(onnx_path).predict_proba(images)
    max_diff = float(np.max(np.abs(expected - actual)))
    mismatches = int(np.count_nonzero(expected.argmax(axis=1) != actual.argmax(axis=1)))
    if mismatches or max_diff > tolerance:
        raise ModelValidationError(
            f"ONNX export differs from Keras: {mismatches} of {len(images)} argmax mismatches, "
            f"max |Δp| = {max_diff:.3g} (tolerance {tolerance:g})"
        )
    log.info("ONNX export matches Keras on %d images: max |Δp| = %.3g", len(images), max_diff)
    return max_diff
