"""Scoring-side MLP: an ONNX model that takes raw uint8 pixels, run by onnxruntime.

No TensorFlow here: workers load the exported `.onnx` file only (see `mlp_train.py`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from mnist_dist.errors import ModelFormatError, ModelNotFoundError
from mnist_dist.models.inputs import N_CLASSES, N_PIXELS, check_images

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
        return cls(cls._session(str(path), settings, str(path)), str(path))

    @classmethod
    def load_bytes(cls, model: bytes, settings: OrtSettings = OrtSettings(),
                   source: str = "<bytes>") -> OnnxMlp:
        """Open an ONNX model from its (already verified) bytes; `source` names it in errors."""
        return cls(cls._session(model, settings, source), source)

    @staticmethod
    def _session(
        model: str | bytes, settings: OrtSettings, source: str
    ) -> ort.InferenceSession:
        """A session on `model`, refused (ModelFormatError) unless it keeps `check_contract`."""
        try:
            session = ort.InferenceSession(
                model, session_options(settings), providers=["CPUExecutionProvider"]
            )
        # onnxruntime's errors (InvalidProtobuf, Fail, InvalidGraph, ...) derive from Exception
        # only; any of them means the bytes are not a model it can run.
        except Exception as exc:
            reason = " ".join(str(exc).split())
            raise ModelFormatError(f"{source}: not a loadable ONNX model ({reason})") from exc
        check_contract(session, source)
        return session

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


def check_contract(session: ort.InferenceSession, source: str) -> None:
    """ModelFormatError unless the session maps uint8 `pixels` (n, 784) to float32
    `probabilities` (n, 10) alone, for any n (checked on a probe batch of 2)."""
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    outputs = [(o.name, o.type) for o in session.get_outputs()]
    batch_dim = inputs[0][2][0] if len(inputs) == 1 and len(inputs[0][2]) == 2 else 1
    if (len(inputs) != 1 or inputs[0][:2] != (INPUT_NAME, "tensor(uint8)")
            or inputs[0][2][1:] != [N_PIXELS] or isinstance(batch_dim, int)):
        raise ModelFormatError(
            f"{source}: the ONNX model must take one input {INPUT_NAME!r} uint8 of shape "
            f"(n, {N_PIXELS}); got {describe(inputs)} instead"
        )
    if outputs != [(OUTPUT_NAME, "tensor(float)")]:
        raise ModelFormatError(
            f"{source}: the ONNX model must give one output {OUTPUT_NAME!r} float32; "
            f"got {len(outputs)}: {describe(outputs)} instead"
        )
    probe = np.stack([np.zeros(N_PIXELS, np.uint8), np.full(N_PIXELS, 255, np.uint8)])
    try:
        (found,) = session.run([OUTPUT_NAME], {INPUT_NAME: probe})
    except Exception as exc:  # see _session: any runtime failure means a broken model
        raise ModelFormatError(
            f"{source}: the ONNX model fails on a probe batch ({' '.join(str(exc).split())})"
        ) from exc
    found = np.asarray(found, dtype=np.float64)
    if found.shape != (2, N_CLASSES):
        raise ModelFormatError(
            f"{source}: the ONNX model must return probabilities of shape (n, {N_CLASSES}); "
            f"got {found.shape} on a batch of 2 instead"
        )
    if not (np.isfinite(found).all() and (found >= 0).all()
            and np.allclose(found.sum(axis=1), 1.0, atol=1e-3)):
        raise ModelFormatError(
            f"{source}: the ONNX model must return probabilities (>= 0, each row summing to 1); "
            f"got rows {found.round(3).tolist()} on a probe batch"
        )


def check_mlp_params(data: bytes, source: str) -> None:
    """ModelFormatError unless `mlp.json` bytes are a JSON object naming our input and output."""
    try:
        params = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{source}: not valid JSON ({exc})") from exc
    wanted = {"input": INPUT_NAME, "output": OUTPUT_NAME}
    found = {key: params.get(key) for key in wanted} if isinstance(params, dict) else None
    if found != wanted:
        raise ModelFormatError(f"{source}: must be a JSON object with {wanted}; got {found}")


def describe(values: Sequence[tuple[object, ...]]) -> str:
    """Short text of a session's inputs or outputs, capped at 5 entries."""
    shown = ", ".join(" ".join(map(str, v)) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "") or "none"
