"""Scoring-side MLP: an ONNX model that takes raw uint8 pixels, run by onnxruntime.

No TensorFlow here: workers load the exported `.onnx` file only (see `mlp_train.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mnist_dist.errors import ModelNotFoundError
from mnist_dist.models.inputs import N_CLASSES, check_images

log = logging.getLogger(__name__)

INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"

GRAPH_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class OrtSettings:
    """onnxruntime session settings; one intra-op thread suits one session per Dask thread."""

    intra_op_threads: int = 1
    graph_optimization: str = "all"

    def __post_init__(self) -> None:
        if self.intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1; got {self.intra_op_threads} instead")
        if self.graph_optimization not in GRAPH_OPTIMIZATION:
            raise ValueError(
                f"graph_optimization must be one of {sorted(GRAPH_OPTIMIZATION)}; "
                f"got {self.graph_optimization!r} instead"
            )


def session_options(settings: OrtSettings) -> ort.SessionOptions:
    """SessionOptions for a sequential, non-spinning CPU session."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads burn CPU between calls and starve the other Dask worker threads.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = GRAPH_OPTIMIZATION[settings.graph_optimization]
    return options


class OnnxMlp:
    """The exported MLP: raw uint8 pixels (n, 784) -> class probabilities float32 (n, 10).

    Sessions are not picklable: ship the file path and call `load` on the worker. `run` is
    thread-safe, so one instance may be shared by a worker's threads.
    """

    def __init__(self, session: ort.InferenceSession, source: str) -> None:
        self.session = session
        self.source = source

    @classmethod
    def load(cls, path: Path, settings: OrtSettings = OrtSettings()) -> OnnxMlp:
        """Open the ONNX file at `path` on the CPU provider; ModelNotFoundError if it is missing."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"ONNX model {path} does not exist")
        return cls(cls._session(str(path), settings), str(path))

    @classmethod
    def load_bytes(cls, model: bytes, settings: OrtSettings = OrtSettings()) -> OnnxMlp:
        """Open an ONNX model from its (already verified) bytes."""
        return cls(cls._session(model, settings), "<bytes>")

    @staticmethod
    def _session(model: str | bytes, settings: OrtSettings) -> ort.InferenceSession:
        return ort.InferenceSession(
            model, session_options(settings), providers=["CPUExecutionProvider"]
        )

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities, float32 of shape (n, 10), for uint8 images (n, 784)."""
        pixels = check_images(images)
        if len(pixels) == 0:
            return np.zeros((0, N_CLASSES), dtype=np.float32)
        (probabilities,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels})
        return np.asarray(probabilities, dtype=np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted digits, uint8 of shape (n,)."""
        return self.predict_proba(images).argmax(axis=1).astype(np.uint8)
