"""Model artifacts (manifest, checksums, per-process loading) and the atomic file helpers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from mnist_dist import atomic
from mnist_dist.atomic import (
    remove_quietly,
    swap_into_place,
    temporary_sibling,
    write_bytes_atomic,
    write_json_atomic,
)
from mnist_dist.errors import ArtifactChecksumError, ModelFormatError, ModelNotFoundError
from mnist_dist.metrics import confusion_matrix
from mnist_dist.models import cache
from mnist_dist.models.artifacts import (
    ARTIFACTS,
    MANIFEST,
    MANIFEST_FORMAT,
    ModelRef,
    file_sha256,
    read_artifact,
    read_manifest,
    write_manifest,
)
from mnist_dist.models.cache import load_predictors
from mnist_dist.models.knn import GemmKnn, KnnModel
from mnist_dist.models.outputs import predict_partition
from tests.helpers import small_knn_model, tiny_mlp_probabilities, tiny_onnx_mlp, write_model_dir


@pytest.fixture(scope="module")
def knn_model() -> KnnModel:
    return small_knn_model(300)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return small_knn_model(80, offset=300).reference


@pytest.fixture
def model_dir(tmp_path: Path, knn_model: KnnModel) -> Path:
    return write_model_dir(tmp_path / "models", knn_model)


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty predictor cache and load counter, restored after the test."""
    monkeypatch.setattr(cache, "_cache", {})
    monkeypatch.setattr(cache, "load_count", 0)


def flip_byte(path: Path, position: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def rewrite_manifest(directory: Path, text: str) -> None:
    (directory / MANIFEST).write_text(text)


# --- manifest -----------------------------------------------------------------------------------


def test_write_manifest_checksums_every_artifact(tmp_path: Path, knn_model: KnnModel) -> None:
    directory = write_model_dir(tmp_path / "models", knn_model)
    manifest = read_manifest(directory)
    assert manifest == json.loads((directory / MANIFEST).read_text())
    assert manifest["format"] == MANIFEST_FORMAT
    assert manifest["note"] == "tests.helpers.write_model_dir"
    assert sorted(manifest["artifacts"]) == sorted(ARTIFACTS)
    for name in ARTIFACTS:
        data = (directory / name).read_bytes()
        assert manifest["artifacts"][name] == {
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        }
        assert file_sha256(directory / name) == hashlib.sha256(data).hexdigest()
    assert sorted(path.name for path in directory.iterdir()) == sorted([*ARTIFACTS, MANIFEST])


def test_write_manifest_body_cannot_replace_the_checksums(model_dir: Path) -> None:
    manifest = write_manifest(model_dir, {"artifacts": {}, "n_train": 300})
    assert manifest["n_train"] == 300
    assert sorted(manifest["artifacts"]) == sorted(ARTIFACTS)
    assert read_manifest(model_dir) == manifest


def test_write_manifest_needs_every_artifact(model_dir: Path) -> None:
    (model_dir / "mlp.json").unlink()
    with pytest.raises(FileNotFoundError, match="mlp.json"):
        write_manifest(model_dir, {})


def test_model_ref_from_directory(model_dir: Path) -> None:
    ref = ModelRef.from_directory(model_dir)
    assert ref.directory == str(model_dir.resolve())
    assert [name for name, _ in ref.checksums] == list(ARTIFACTS)
    for name in ARTIFACTS:
        assert ref.sha256(name) == file_sha256(model_dir / name)
        assert read_artifact(ref, name) == (model_dir / name).read_bytes()
    # Tasks carry the reference, not the models: it must stay small and hashable.
    assert len(pickle.dumps(ref)) < 2000
    assert ModelRef.from_directory(model_dir) == ref
    assert hash(ModelRef.from_directory(model_dir)) == hash(ref)


@pytest.mark.parametrize("name", ARTIFACTS)
def test_a_modified_byte_is_refused(model_dir: Path, name: str) -> None:
    ref = ModelRef.from_directory(model_dir)
    flip_byte(model_dir / name, position=len((model_dir / name).read_bytes()) // 2)
    pattern = rf"{re.escape(str(model_dir.resolve() / name))}: SHA-256 is [0-9a-f]{{64}}; "
    pattern += rf"the manifest expects {ref.sha256(name)}"
    with pytest.raises(ArtifactChecksumError, match=pattern):
        ModelRef.from_directory(model_dir)
    with pytest.raises(ArtifactChecksumError, match=pattern):
        read_artifact(ref, name)


def test_missing_manifest(model_dir: Path, tmp_path: Path) -> None:
    (model_dir / MANIFEST).unlink()
    with pytest.raises(ModelNotFoundError, match=r"manifest\.json: model manifest not found"):
        ModelRef.from_directory(model_dir)
    with pytest.raises(ModelNotFoundError, match=r"model manifest not found; run `python -m"):
        ModelRef.from_directory(tmp_path / "does-not-exist")


@pytest.mark.parametrize("name", ARTIFACTS)
def test_missing_artifact(model_dir: Path, name: str) -> None:
    ref = ModelRef.from_directory(model_dir)
    (model_dir / name).unlink()
    with pytest.raises(ModelNotFoundError, match=rf"{re.escape(name)}: model artifact not found"):
        ModelRef.from_directory(model_dir)
    with pytest.raises(ModelNotFoundError, match=rf"{re.escape(name)}: model artifact not found"):
        read_artifact(ref, name)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (json.dumps({"format": "mnist-dist-models/0", "artifacts": {}}), "'mnist-dist-models/0'"),
        (json.dumps({"artifacts": {}}), "None"),
        (json.dumps(["mnist-dist-models/1"]), "None"),
    ],
    ids=["other-version", "no-format", "not-an-object"],
)
def test_wrong_manifest_format(model_dir: Path, text: str, found: str) -> None:
    rewrite_manifest(model_dir, text)
    expected = rf"format must be '{re.escape(MANIFEST_FORMAT)}'; got {re.escape(found)} instead"
    with pytest.raises(ModelFormatError, match=expected):
        ModelRef.from_directory(model_dir)


def test_manifest_not_json(model_dir: Path) -> None:
    rewrite_manifest(model_dir, '{"format": "mnist-dist-models/1", ')
    with pytest.raises(ModelFormatError, match=r"manifest\.json: manifest is not valid JSON"):
        ModelRef.from_directory(model_dir)


@pytest.mark.parametrize(
    ("artifacts_entry", "missing"),
    [
        (None, ", ".join(ARTIFACTS)),
        ("drop:mlp.json", "mlp.json"),
        ("no-sha:knn.npz", "knn.npz"),
    ],
)
def test_manifest_without_a_checksum(
    model_dir: Path, artifacts_entry: str | None, missing: str
) -> None:
    manifest = read_manifest(model_dir)
    if artifacts_entry is None:
        del manifest["artifacts"]
    elif artifacts_entry.startswith("drop:"):
        del manifest["artifacts"][artifacts_entry.removeprefix("drop:")]
    else:
        del manifest["artifacts"][artifacts_entry.removeprefix("no-sha:")]["sha256"]
    rewrite_manifest(model_dir, json.dumps(manifest))
    with pytest.raises(
        ModelFormatError, match=rf"manifest lists no SHA-256 for {re.escape(missing)};"
    ):
        ModelRef.from_directory(model_dir)


# --- loading once per process -------------------------------------------------------------------


@pytest.mark.usefixtures("fresh_cache")
def test_load_predictors_caches(model_dir: Path) -> None:
    ref = ModelRef.from_directory(model_dir)
    first = load_predictors(ref)
    assert cache.load_count == 1
    assert load_predictors(ref) is first
    assert load_predictors(ModelRef.from_directory(model_dir)) is first  # equal refs share
    assert cache.load_count == 1
    two_threads = load_predictors(ref, ort_threads=2)
    assert two_threads is not first
    assert cache.load_count == 2
    assert load_predictors(ref, ort_threads=2) is two_threads
    assert cache.load_count == 2


@pytest.mark.usefixtures("fresh_cache")
def test_load_predictors_verifies_checksums(model_dir: Path) -> None:
    ref = ModelRef.from_directory(model_dir)
    flip_byte(model_dir / "mlp.onnx")
    with pytest.raises(ArtifactChecksumError, match=r"mlp\.onnx: SHA-256 is"):
        load_predictors(ref)
    assert cache.load_count == 0


@pytest.mark.usefixtures("fresh_cache")
def test_loaded_predictors_predict(
    model_dir: Path, knn_model: KnnModel, queries: np.ndarray
) -> None:
    weights = tiny_onnx_mlp(model_dir.parent / "same-mlp.onnx")
    predictors = load_predictors(ModelRef.from_directory(model_dir))
    np.testing.assert_array_equal(
        predictors.knn.predict(queries), GemmKnn(knn_model).predict(queries)
    )
    np.testing.assert_allclose(
        predictors.mlp.predict_proba(queries), tiny_mlp_probabilities(weights, queries), atol=1e-5
    )


@pytest.mark.usefixtures("fresh_cache")
def test_predict_partition(model_dir: Path, knn_model: KnnModel, queries: np.ndarray) -> None:
    ref = ModelRef.from_directory(model_dir)
    knn = predict_partition(queries, "knn", ref)
    np.testing.assert_array_equal(knn, GemmKnn(knn_model).predict(queries))
    mlp = predict_partition(queries, "mlp", ref)
    assert mlp.dtype == np.uint8
    assert mlp.shape == (len(queries),)
    assert cache.load_count == 1
    assert confusion_matrix(knn, mlp).sum() == len(queries)
    with pytest.raises(ValueError, match=r"model must be one of \('knn', 'mlp'\); got 'svm'"):
        predict_partition(queries, "svm", ref)


# --- atomic writes ------------------------------------------------------------------------------


def test_write_bytes_atomic_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.bin"
    write_bytes_atomic(target, b"first")
    assert target.read_bytes() == b"first"
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.bin"]


def test_write_bytes_atomic_failed_replace_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def refuse(src: str, dst: str) -> None:
        raise OSError("replace refused")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="replace refused"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_write_bytes_atomic_failed_write_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_write_json_atomic(tmp_path: Path) -> None:
    document = {"format": MANIFEST_FORMAT, "n": 3, "nested": {"a": [1, 2]}}
    target = tmp_path / "doc.json"
    write_json_atomic(target, document)
    text = target.read_text()
    assert text.endswith("\n")
    assert json.loads(text) == document


def test_temporary_sibling(tmp_path: Path) -> None:
    target = tmp_path / "models"
    first, second = temporary_sibling(target), temporary_sibling(target)
    assert first != second
    for sibling in (first, second):
        assert sibling.parent == tmp_path
        assert sibling.name.startswith(".models.tmp-")
        assert not sibling.exists()


def make_tree(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "payload.txt").write_text(content)
    return path


def test_swap_into_place_new_path(tmp_path: Path) -> None:
    tmp = make_tree(temporary_sibling(tmp_path / "out"), "new")
    swap_into_place(tmp, tmp_path / "out")
    assert (tmp_path / "out" / "payload.txt").read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]


def test_swap_into_place_replaces_a_directory(tmp_path: Path) -> None:
    target = make_tree(tmp_path / "out", "old")
    (target / "stale.txt").write_text("only in the old tree")
    tmp = make_tree(temporary_sibling(target), "new")
    swap_into_place(tmp, target)
    assert sorted(os.listdir(target)) == ["payload.txt"]
    assert (target / "payload.txt").read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]  # neither the temporary nor the old tree is left


def test_swap_into_place_restores_old_when_final_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = make_tree(tmp_path / "out", "old")
    tmp = make_tree(temporary_sibling(target), "new")
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        if Path(src) == tmp:
            raise OSError("rename refused")
        real_rename(src, dst)

    monkeypatch.setattr(atomic.os, "rename", rename)
    with pytest.raises(OSError, match="rename refused"):
        swap_into_place(tmp, target)
    assert (target / "payload.txt").read_text() == "old"
    assert (tmp / "payload.txt").read_text() == "new"  # the caller still owns its temporary
    assert sorted(os.listdir(tmp_path)) == sorted(["out", tmp.name])


def test_swap_into_place_survives_failing_cleanup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    target = make_tree(tmp_path / "out", "old")
    tmp = make_tree(temporary_sibling(target), "new")

    def refuse(path: Path) -> None:
        raise PermissionError(f"cannot delete {path}")

    monkeypatch.setattr(atomic.shutil, "rmtree", refuse)
    with caplog.at_level(logging.WARNING, logger="mnist_dist.atomic"):
        swap_into_place(tmp, target)
    assert (target / "payload.txt").read_text() == "new"
    assert "could not remove the replaced output" in caplog.text


def test_remove_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tree = make_tree(tmp_path / "tree", "x")
    remove_quietly(tree)
    single = tmp_path / "file.txt"
    single.write_text("x")
    remove_quietly(single)
    assert os.listdir(tmp_path) == []
    with caplog.at_level(logging.WARNING, logger="mnist_dist.atomic"):
        remove_quietly(tmp_path / "absent")
    assert "could not remove the replaced output" in caplog.text
