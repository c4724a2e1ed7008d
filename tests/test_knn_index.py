"""The KNN's search index saved at training (`knn_index.npz`): listed in the manifest, the same
search as a build at load, refused when it does not belong to its `knn.npz` or is damaged."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnist_dist.errors import ArtifactChecksumError, ModelFormatError
from mnist_dist.models import cache
from mnist_dist.models.artifacts import MANIFEST, ModelRef, file_sha256, write_manifest
from mnist_dist.models.knn import GemmKnn, KnnModel, load_knn, save_knn
from mnist_dist.models.knn_index import ARRAYS, KNN_INDEX, read_index


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "_cache", {})
    monkeypatch.setattr(cache, "_validated_knn", {})


@pytest.fixture
def models(small_models: Path, tmp_path: Path) -> Path:
    """A copy of the trained small models, free to damage."""
    return Path(shutil.copytree(small_models, tmp_path / "models"))


def rewrite_index(directory: Path, change: dict[str, np.ndarray | None]) -> None:
    """Rewrite the index with some arrays replaced (None: removed), then re-checksum, so that
    only the index's own checks can refuse it."""
    with np.load(directory / KNN_INDEX) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for name, value in change.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (directory / KNN_INDEX).write_bytes(buffer.getvalue())
    rechecksum(directory)


def rechecksum(directory: Path) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    body = {k: v for k, v in manifest.items() if k not in ("format", "artifacts")}
    write_manifest(directory, body)


def test_training_saves_the_index_and_the_manifest_lists_it(small_models: Path) -> None:
    ref = ModelRef.from_directory(small_models)
    assert ref.has(KNN_INDEX) and ref.sha256(KNN_INDEX) == file_sha256(small_models / KNN_INDEX)
    model = load_knn(small_models)
    saved = read_index((small_models / KNN_INDEX).read_bytes(), KNN_INDEX,
                       ref.sha256("knn.npz"), len(model.reference))
    assert sorted(saved) == sorted(ARRAYS)


def test_a_saved_index_searches_exactly_as_a_build(small_models: Path, vendored: object) -> None:
    model = load_knn(small_models)
    ref = ModelRef.from_directory(small_models)
    saved = read_index((small_models / KNN_INDEX).read_bytes(), KNN_INDEX,
                       ref.sha256("knn.npz"), len(model.reference))
    built, restored = GemmKnn(model), GemmKnn(model, saved_index=saved)
    assert built.index is not None and restored.index is not None
    for name, array in built.index.arrays().items():
        np.testing.assert_array_equal(restored.index.arrays()[name], array)
    np.testing.assert_array_equal(restored.index.reference, built.index.reference)
    queries = np.concatenate([vendored.x_test[:300],  # type: ignore[attr-defined]
                              np.random.default_rng(2).integers(0, 256, (30, 784), np.uint8)])
    for got, expected in zip(restored.kneighbors(queries), built.kneighbors(queries),
                             strict=True):
        np.testing.assert_array_equal(got, expected)


def test_workers_load_the_saved_index(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds = []
    real_build = cache.GemmKnn.__init__

    def counting(self: GemmKnn, model: KnnModel, *args: object, **kwargs: object) -> None:
        builds.append(kwargs.get("saved_index") is not None)
        real_build(self, model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache.GemmKnn, "__init__", counting)
    cache.load_predictors(ModelRef.from_directory(models))
    assert builds == [True]


def test_models_saved_before_the_index_existed_still_load(models: Path,
                                                          small_models: Path) -> None:
    (models / KNN_INDEX).unlink()
    rechecksum(models)
    ref = ModelRef.from_directory(models)
    assert not ref.has(KNN_INDEX)
    cache.validate_models(ref)
    knn = cache.load_predictors(ref).knn  # the index is built at load
    expected = cache.load_predictors(ModelRef.from_directory(small_models)).knn
    assert knn.index is not None
    np.testing.assert_array_equal(knn.index.tiles, expected.index.tiles)


def test_an_index_of_another_knn_is_refused(models: Path) -> None:
    model = load_knn(models)
    other = KnnModel(model.reference[::-1].copy(), model.labels[::-1].copy(), model.scaler,
                     model.n_neighbors)
    save_knn(other, models)
    rechecksum(models)
    ref = ModelRef.from_directory(models)
    with pytest.raises(ModelFormatError, match=r"knn_index\.npz: was built from another knn\.npz"):
        cache.validate_models(ref)
    with pytest.raises(ModelFormatError, match="built from another knn.npz"):
        cache.load_predictors(ref)


@pytest.mark.parametrize(("change", "message"), [
    ({"tiles": None}, "must hold the arrays"),
    ({"tiles": np.zeros((2, 3, 64), np.float32)}, "tiles must be float32"),
    ({"original": np.zeros(500, np.int64)}, "must permute"),
    ({"order": np.arange(784, dtype=np.float64)}, "must permute"),
    ({"n_common": np.array(900)}, "n_common must be"),
    ({"ink_rows": np.zeros(3, np.int32)}, "rare ink"),
    ({"rare_norms": np.zeros(7)}, "rare_norms must be"),
    ({"bound_error": np.array(1e-7)}, "another version"),
    ({"ink_values": np.array([None], dtype=object)}, "pickled"),
], ids=["missing", "tiles", "original", "order", "n_common", "ink", "norms", "version", "object"])
def test_a_damaged_index_is_refused_naming_the_file(
    models: Path, change: dict[str, np.ndarray | None], message: str
) -> None:
    rewrite_index(models, change)
    ref = ModelRef.from_directory(models)
    with pytest.raises(ModelFormatError, match=rf"knn_index\.npz: .*{message}") as raised:
        cache.validate_models(ref)
    assert "jobs.train" in str(raised.value) or message == "pickled"


def test_a_modified_index_byte_is_refused(models: Path) -> None:
    data = bytearray((models / KNN_INDEX).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (models / KNN_INDEX).write_bytes(bytes(data))
    with pytest.raises(ArtifactChecksumError, match=r"knn_index\.npz: SHA-256 is"):
        ModelRef.from_directory(models)
