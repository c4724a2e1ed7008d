"""Both predictors loaded once per process and shared by its threads (one ORT session each).

Workers that cannot read the models' folder get their bytes once, as a broadcast `ModelPayload`.
`validate_models` checks on the client, before any work is submitted, all that a worker loads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_dist.models.artifacts import (
    MANIFEST,
    ModelRef,
    check_manifest_models,
    read_artifact,
    read_manifest_at,
    reference_at,
    verified,
)
from mnist_dist.models.inputs import N_PIXELS
from mnist_dist.models.knn import GemmKnn, KnnModel, knn_from_bytes
from mnist_dist.models.knn_index import KNN_INDEX, read_index
from mnist_dist.models.matmul import Choice
from mnist_dist.models.mlp import OnnxMlp, OrtSettings, check_mlp_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPayload:
    """The artifacts' bytes, broadcast once to every worker that cannot read `ModelRef.directory`."""

    artifacts: tuple[tuple[str, bytes], ...]

    @classmethod
    def read(cls, ref: ModelRef) -> ModelPayload:
        """Read and verify every artifact on this (the client's) side."""
        return cls(tuple((name, read_artifact(ref, name)) for name in ref.artifacts()))

    def get(self, name: str) -> bytes:
        """The verified bytes of artifact `name`."""
        return dict(self.artifacts)[name]


@dataclass(frozen=True)
class Predictors:
    """Both loaded predictors; shared by every thread of a process."""

    knn: GemmKnn
    mlp: OnnxMlp
    load_seconds: float  # read, verify, build and warm up both (the report's worker start-up)


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
            started = time.perf_counter()
            log.info("loading models from %s (ORT threads %d)",
                     "the broadcast payload" if payload else ref.directory, ort_threads)
            shipped = dict(payload.artifacts) if payload else {}

            def artifact(name: str) -> bytes:
                return verified(ref, name, shipped[name]) if payload else read_artifact(ref, name)

            model = read_knn(ref, artifact)
            knn = GemmKnn(model, saved_index=read_saved_index(ref, artifact, len(model.reference)))
            settings = OrtSettings(intra_op_threads=ort_threads)
            mlp = OnnxMlp.load_bytes(artifact("mlp.onnx"), settings, ref.location("mlp.onnx"))
            warm_up(knn, mlp)
            _cache.clear()  # a process serves one model set at a time; free the previous one
            _cache[key] = Predictors(knn, mlp, time.perf_counter() - started)
            load_count += 1
        return _cache[key]


def warm_up(knn: GemmKnn, mlp: OnnxMlp) -> None:
    """Predict one blank image with each model: the first call of each compiled kernel loads it
    from numba's cache and onnxruntime's first run allocates, so loading here (when a worker
    joins) spares the first partition."""
    blank = np.zeros((1, N_PIXELS), np.uint8)
    knn.predict(blank)
    mlp.predict(blank)


def startup_facts(ref: ModelRef, ort_threads: int = 1) -> dict[str, Any] | None:
    """What this process's load of the predictors of `ref` took: `seconds`, and the KNN's GEMM
    `kernels` it chose, as text per product (`knn_bound`: "bound", the narrow bound of small
    blocks "narrow"; None for a search without the bound). None until they are loaded; never
    waits for a load in progress."""
    predictors = _cache.get((ref, ort_threads))
    if predictors is None:
        return None
    index = predictors.knn.index
    kernels = None if index is None else {"bound": describe_choices(index.matmul.choices),
                                          "narrow": describe_choices(index.narrow_matmul.choices)}
    return {"seconds": predictors.load_seconds, "kernels": kernels}


def describe_choices(choices: list[Choice]) -> str:
    """"numpy from 1 row, onnxruntime from 32 rows": each kernel from the row count it starts
    at (consecutive equal choices merged)."""
    parts: list[str] = []
    last = None
    for choice in choices:
        if choice.backend != last:
            parts.append(f"{choice.backend} from {choice.rows} "
                         f"{'row' if choice.rows == 1 else 'rows'}")
            last = choice.backend
    return ", ".join(parts)


def load_seconds(ref: ModelRef, ort_threads: int = 1) -> float | None:
    """Seconds this process took to load the predictors of `ref` (None until they are
    loaded); never waits for a load in progress."""
    predictors = _cache.get((ref, ort_threads))
    return predictors.load_seconds if predictors else None


def read_saved_index(ref: ModelRef, artifact: Callable[[str], bytes], n_ref: int
                     ) -> dict[str, Any] | None:
    """The KNN's search index as training saved it, checked (`knn_index.read_index`); None
    for models saved without one (the index is then built at load)."""
    if not ref.has(KNN_INDEX):
        return None
    return read_index(artifact(KNN_INDEX), ref.location(KNN_INDEX), ref.sha256("knn.npz"), n_ref)


def read_knn(ref: ModelRef, artifact: Callable[[str], bytes] | None = None) -> KnnModel:
    """The KNN of `ref`, every array and parameter checked; `artifact` gives a file's bytes
    (default: read and verified from `ref.directory`)."""
    read = artifact or (lambda name: read_artifact(ref, name))
    return knn_from_bytes(read("knn.npz"), read("knn.json"),
                          ref.location("knn.npz"), ref.location("knn.json"))


# The client's last validated KNN, keyed by the SHA-256 of the two files it came from.
_validated_knn: dict[tuple[str, str], KnnModel] = {}


def validated_knn(ref: ModelRef, artifact: Callable[[str], bytes] | None = None) -> KnnModel:
    """`read_knn`, checked once per content: both files are read and verified every time (by
    `artifact`, default from `ref.directory`), their arrays decompressed and checked only when
    their checksums are new to this process (a warm client scoring again skips that)."""
    read = artifact or (lambda name: read_artifact(ref, name))
    arrays, params = read("knn.npz"), read("knn.json")  # verified against ref's checksums
    key = (ref.sha256("knn.npz"), ref.sha256("knn.json"))
    with _cache_lock:
        if key not in _validated_knn:
            _validated_knn.clear()  # one model set at a time
            _validated_knn[key] = knn_from_bytes(arrays, params, ref.location("knn.npz"),
                                                 ref.location("knn.json"))
        return _validated_knn[key]


def validate_models(
    ref: ModelRef, files: ModelPayload | None = None, manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Check on the client everything a worker will load, before any work is submitted: the
    manifest's `models` section, the KNN files (arrays, dtypes, shapes, parameters, the saved
    index when there is one; no GEMM build), the ONNX contract (one session) and `mlp.json`.
    Returns the manifest. `files` and `manifest`, when given, are what was already read
    (nothing is read again).

    Raises ModelFormatError naming the file and what is wrong (ArtifactChecksumError and
    ModelNotFoundError as reading does).
    """
    manifest = check_manifest_models(manifest or read_manifest_at(ref.directory),
                                     ref.location(MANIFEST))
    artifact = files.get if files else (lambda name: read_artifact(ref, name))
    knn = validated_knn(ref, artifact)
    read_saved_index(ref, artifact, len(knn.reference))
    OnnxMlp.load_bytes(artifact("mlp.onnx"), source=ref.location("mlp.onnx"))
    check_mlp_params(artifact("mlp.json"), ref.location("mlp.json"))
    return manifest


@dataclass(frozen=True)
class ModelFiles:
    """The models as the client read them, once: reference, validated manifest, and every
    artifact's verified bytes (to ship to workers that cannot read them, or to read rows of)."""

    ref: ModelRef
    manifest: dict[str, Any]
    files: ModelPayload


def read_models(location: str) -> ModelFiles:
    """The models at a path or URL, each file read and verified once, then validated fully."""
    ref, manifest = reference_at(location)
    files = ModelPayload.read(ref)
    return ModelFiles(ref, validate_models(ref, files, manifest), files)


def preload(ref: ModelRef, ort_threads: int) -> str | None:
    """On a worker: load both predictors into the cache (the tasks find them there); None, or
    the reason this worker cannot read and verify the models itself."""
    try:
        load_predictors(ref, ort_threads)
    except Exception as exc:  # noqa: BLE001 - reported back as text
        return f"{type(exc).__name__}: {exc}"
    return None
