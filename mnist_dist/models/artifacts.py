"""Model artifacts: the checksummed manifest, and loading both predictors once per process.

A model directory holds `knn.npz`, `knn.json`, `mlp.onnx`, `mlp.json` and `manifest.json`,
which lists every artifact with its SHA-256. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_json_atomic
from mnist_dist.errors import ArtifactChecksumError, ModelNotFoundError
from mnist_dist.models.knn import GemmKnn, knn_from_bytes
from mnist_dist.models.mlp import OnnxMlp, OrtSettings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mnist-dist-models/1"
ARTIFACTS = ("knn.npz", "knn.json", "mlp.onnx", "mlp.json")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as lowercase hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Checksum every artifact in `directory` and write `manifest.json` with `body` merged in."""
    artifacts = {
        name: {"sha256": file_sha256(directory / name), "bytes": (directory / name).stat().st_size}
        for name in ARTIFACTS
    }
    manifest = {"format": MANIFEST_FORMAT, **body, "artifacts": artifacts}
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a model directory; ModelNotFoundError when absent or not ours."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: model manifest not found; run `python -m jobs.train`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{path}: manifest is not valid JSON ({exc})") from exc
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != MANIFEST_FORMAT:
        raise ModelNotFoundError(
            f"{path}: format must be {MANIFEST_FORMAT!r}; got {found!r} instead"
        )
    # A truncated or hand-edited manifest must fail here, not as a KeyError in ModelRef.
    listed = manifest.get("artifacts")
    missing = [
        name for name in ARTIFACTS
        if not isinstance(listed, dict) or not isinstance(listed.get(name), dict)
        or not isinstance(listed[name].get("sha256"), str)
    ]
    if missing:
        raise ModelNotFoundError(
            f"{path}: manifest lists no SHA-256 for {', '.join(missing)}; run `python -m jobs.train`"
        )
    return manifest


@dataclass(frozen=True)
class ModelRef:
    """What a task carries to find the models: a directory and the expected checksums."""

    directory: str
    checksums: tuple[tuple[str, str], ...]

    @classmethod
    def from_directory(cls, directory: Path) -> ModelRef:
        """Reference the models in `directory` after verifying every checksum."""
        manifest = read_manifest(directory)
        checksums = tuple((name, manifest["artifacts"][name]["sha256"]) for name in ARTIFACTS)
        ref = cls(str(directory.resolve()), checksums)
        for name in ARTIFACTS:
            read_artifact(ref, name)
        return ref

    def sha256(self, name: str) -> str:
        """Expected SHA-256 of artifact `name`."""
        return dict(self.checksums)[name]


def read_artifact(ref: ModelRef, name: str) -> bytes:
    """Bytes of one artifact, refused unless they match the manifest's SHA-256."""
    path = Path(ref.directory) / name
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{path}: model artifact not found") from exc
    found = hashlib.sha256(data).hexdigest()
    if found != ref.sha256(name):
        raise ArtifactChecksumError(
            f"{path}: SHA-256 is {found}; the manifest expects {ref.sha256(name)}"
        )
    return data


@dataclass(frozen=True)
class Predictors:
    """Both loaded predictors; shared by every thread of a process."""

    knn: GemmKnn
    mlp: OnnxMlp


_cache: dict[tuple[ModelRef, int], Predictors] = {}
_cache_lock = threading.Lock()
load_count = 0  # loads performed by this process; lets tests prove "once per worker"


def load_predictors(ref: ModelRef, ort_threads: int = 1) -> Predictors:
    """Both predictors for `ref`, loaded and verified at most once per process."""
    global load_count
    key = (ref, ort_threads)
    with _cache_lock:
        if key not in _cache:
            log.info("loading models from %s (ORT threads %d)", ref.directory, ort_threads)
            knn = GemmKnn(knn_from_bytes(read_artifact(ref, "knn.npz"), read_artifact(ref, "knn.json")))
            mlp = OnnxMlp.load_bytes(read_artifact(ref, "mlp.onnx"), OrtSettings(intra_op_threads=ort_threads))
            _cache.clear()  # a process serves one model set at a time; free the previous one
            _cache[key] = Predictors(knn, mlp)
            load_count += 1
        return _cache[key]
