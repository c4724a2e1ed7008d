"""Both predictors loaded once per process and shared by its threads (one ORT session each).

Workers that cannot read the models' folder get their bytes once, as a broadcast `ModelPayload`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from mnist_dist.models.artifacts import ARTIFACTS, ModelRef, read_artifact, verified
from mnist_dist.models.knn import GemmKnn, knn_from_bytes
from mnist_dist.models.mlp import OnnxMlp, OrtSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPayload:
    """The artifacts' bytes, broadcast once to every worker that cannot read `ModelRef.directory`."""

    artifacts: tuple[tuple[str, bytes], ...]

    @classmethod
    def read(cls, ref: ModelRef) -> ModelPayload:
        """Read and verify every artifact on this (the client's) side."""
        return cls(tuple((name, read_artifact(ref, name)) for name in ARTIFACTS))


@dataclass(frozen=True)
class Predictors:
    """Both loaded predictors; shared by every thread of a process."""

    knn: GemmKnn
    mlp: OnnxMlp


_cache: dict[tuple[ModelRef, int], Predictors] = {}
_cache_lock = threading.Lock()
load_count = 0  # loads performed by this process; lets tests prove "once per worker"


def load_predictors(
    ref: ModelRef, ort_threads: int = 1, payload: ModelPayload | None = None
) -> Predictors:
    """Both predictors for `ref`, loaded and verified at most once per process.

    With a `payload` the bytes come from it (still verified) instead of `ref.directory`.
    """
    global load_count
    key = (ref, ort_threads)
    with _cache_lock:
        if key not in _cache:
            log.info("loading models from %s (ORT threads %d)",
                     "the broadcast payload" if payload else ref.directory, ort_threads)
            shipped = dict(payload.artifacts) if payload else {}

            def artifact(name: str) -> bytes:
                return verified(ref, name, shipped[name]) if payload else read_artifact(ref, name)

            knn = GemmKnn(knn_from_bytes(artifact("knn.npz"), artifact("knn.json")))
            settings = OrtSettings(intra_op_threads=ort_threads)
            mlp = OnnxMlp.load_bytes(artifact("mlp.onnx"), settings)
            _cache.clear()  # a process serves one model set at a time; free the previous one
            _cache[key] = Predictors(knn, mlp)
            load_count += 1
        return _cache[key]
