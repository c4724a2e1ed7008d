"""Model artifacts: the checksummed manifest, model references and verified reads.

A model directory holds `knn.npz`, `knn.json`, `mlp.onnx`, `mlp.json` and `manifest.json`,
which lists every artifact with its SHA-256, and, from models trained since it exists, the KNN's
saved search index `knn_index.npz` (optional: without it the index is built at load). Nothing
is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_json_atomic
from mnist_dist.errors import ArtifactChecksumError, ModelFormatError, ModelNotFoundError
from mnist_dist.locations import is_url, local_path, read_location

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "mnist-dist-models/1"
ARTIFACTS = ("knn.npz", "knn.json", "mlp.onnx", "mlp.json")
# Artifacts a model directory may hold: checksummed like the others when the manifest lists them.
OPTIONAL_ARTIFACTS = ("knn_index.npz",)
# Each model's manifest entry, as training writes it and the reports read it.
MODEL_ARTIFACTS = {"knn": ("knn.npz", "knn.json"), "mlp": ("mlp.onnx", "mlp.json")}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, as lowercase hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Checksum every artifact in `directory` and write `manifest.json` with `body` merged in."""
    present = [*ARTIFACTS, *(n for n in OPTIONAL_ARTIFACTS if (directory / n).is_file())]
    artifacts = {
        name: {"sha256": file_sha256(directory / name), "bytes": (directory / name).stat().st_size}
        for name in present
    }
    manifest = {"format": MANIFEST_FORMAT, **body, "artifacts": artifacts}
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a model directory; ModelNotFoundError when absent, ModelFormatError when
    it is not a valid manifest of ours."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: model manifest not found; run `python -m jobs.train`")
    check_inside_folder(str(directory), MANIFEST)
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path}: manifest is not valid JSON ({exc})") from exc
    return check_manifest(manifest, str(path))


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """`manifest` if it has our format and a SHA-256 for every artifact; else ModelFormatError."""
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != MANIFEST_FORMAT:
        raise ModelFormatError(
            f"{where}: format must be {MANIFEST_FORMAT!r}; got {found!r} instead"
        )
    # A truncated or hand-edited manifest must fail here, not as a KeyError in ModelRef.
    listed = manifest.get("artifacts")
    missing = [
        name for name in ARTIFACTS
        if not isinstance(listed, dict) or not isinstance(listed.get(name), dict)
        or not isinstance(listed[name].get("sha256"), str)
    ] + [
        name for name in OPTIONAL_ARTIFACTS
        if isinstance(listed, dict) and name in listed and (
            not isinstance(listed[name], dict) or not isinstance(listed[name].get("sha256"), str))
    ]
    if missing:
        raise ModelFormatError(
            f"{where}: manifest lists no SHA-256 for {', '.join(missing)}; "
            "run `python -m jobs.train`"
        )
    return manifest


def check_manifest_models(manifest: dict[str, Any], where: str) -> dict[str, Any]:
    """`manifest` if its `models` section has, for each model, `train_seconds` (>= 0),
    `test_accuracy` (0-1) and its `artifacts` list; else ModelFormatError naming the field."""
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise ModelFormatError(
            f"{where}: manifest has no `models` section (an object per model: "
            f"{', '.join(MODEL_ARTIFACTS)}); run `python -m jobs.train`"
        )
    for name, artifacts in MODEL_ARTIFACTS.items():
        entry = models.get(name)
        if not isinstance(entry, dict):
            raise ModelFormatError(f"{where}: models.{name} must be an object; got {entry!r}")
        for field, low, high in (("train_seconds", 0.0, math.inf), ("test_accuracy", 0.0, 1.0)):
            value = entry.get(field)
            if (not isinstance(value, (int, float)) or isinstance(value, bool)
                    or not low <= value <= high):
                raise ModelFormatError(
                    f"{where}: models.{name}.{field} must be a number in [{low:g}, {high:g}]; "
                    f"got {value!r} instead"
                )
        if entry.get("artifacts") != list(artifacts):
            raise ModelFormatError(
                f"{where}: models.{name}.artifacts must be {list(artifacts)}; "
                f"got {entry.get('artifacts')!r} instead"
            )
    return manifest


@dataclass(frozen=True)
class ModelRef:
    """What a task carries to find the models: a location (path or URL) and expected checksums."""

    directory: str
    checksums: tuple[tuple[str, str], ...]

    @classmethod
    def from_directory(cls, directory: Path) -> ModelRef:
        """Reference the models in a local `directory` after verifying every checksum."""
        return cls.from_location(str(Path(directory).resolve()))

    @classmethod
    def from_location(cls, location: str) -> ModelRef:
        """Reference the models at a path or fsspec URL after verifying every checksum."""
        ref, _ = reference_at(location)
        for name in ref.artifacts():
            read_artifact(ref, name)
        return ref

    def artifacts(self) -> list[str]:
        """Every artifact the manifest lists: ARTIFACTS, then the optional ones present."""
        return [name for name, _ in self.checksums]

    def has(self, name: str) -> bool:
        """Whether the manifest lists artifact `name` (an optional one may be absent)."""
        return name in self.artifacts()

    def sha256(self, name: str) -> str:
        """Expected SHA-256 of artifact `name`."""
        return dict(self.checksums)[name]

    def location(self, name: str) -> str:
        """Path or URL of artifact `name`."""
        return f"{self.directory}/{name}"


def reference_at(location: str) -> tuple[ModelRef, dict[str, Any]]:
    """The reference of the models at a path or fsspec URL, and their manifest: only the
    manifest is read (no artifact is verified yet)."""
    location = local_path(location).rstrip("/")
    manifest = read_manifest_at(location)
    listed = [*ARTIFACTS, *(n for n in OPTIONAL_ARTIFACTS if n in manifest["artifacts"])]
    checksums = tuple((name, manifest["artifacts"][name]["sha256"]) for name in listed)
    return ModelRef(location, checksums), manifest


def read_manifest_at(location: str) -> dict[str, Any]:
    """The manifest at a local path or URL (see `read_manifest`)."""
    if not is_url(location):
        return read_manifest(Path(location))
    try:
        text = read_location(f"{location}/{MANIFEST}").decode()
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{location}/{MANIFEST}: cannot read model manifest ({exc})") from exc
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{location}/{MANIFEST}: manifest is not valid JSON ({exc})") from exc
    return check_manifest(manifest, f"{location}/{MANIFEST}")


def verified(ref: ModelRef, name: str, data: bytes) -> bytes:
    """`data` if it matches the manifest's SHA-256 for `name`; ArtifactChecksumError otherwise."""
    found = hashlib.sha256(data).hexdigest()
    if found != ref.sha256(name):
        raise ArtifactChecksumError(
            f"{ref.location(name)}: SHA-256 is {found}; the manifest expects {ref.sha256(name)}"
        )
    return data


def check_inside_folder(directory: str, name: str) -> None:
    """ModelFormatError when the local file `directory/name` is a link leading out of the folder."""
    if is_url(directory):
        return
    folder = Path(directory).resolve()
    target = (folder / name).resolve()
    if target != folder and folder not in target.parents:
        raise ModelFormatError(
            f"{folder / name}: links to {target}, outside the model folder; "
            "model files must lie inside it"
        )


def read_artifact(ref: ModelRef, name: str) -> bytes:
    """Bytes of one artifact, refused unless it lies inside the model folder and matches the
    manifest's SHA-256."""
    check_inside_folder(ref.directory, name)
    try:
        data = read_location(ref.location(name))
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"{ref.location(name)}: model artifact not found") from exc
    return verified(ref, name, data)
