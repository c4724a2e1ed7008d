"""Tests of the Zarr store: splits, layout, provenance reuse, forced and failed rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from sklearn.model_selection import train_test_split

import mnist_dist
from mnist_dist.data import store
from mnist_dist.data.sources import RawMnist, load_vendored
from mnist_dist.data.store import (
    build_store,
    open_store,
    split_arrays,
    store_info,
    store_provenance,
)
from mnist_dist.errors import StoreExistsError, StoreNotFoundError


@pytest.fixture(scope="module")
def full() -> RawMnist:
    return load_vendored()


@pytest.fixture(scope="module")
def small(full: RawMnist) -> RawMnist:
    """600 train and 200 test real digits, with the vendored checksums."""
    return RawMnist(full.x_train[:600], full.y_train[:600], full.x_test[:200],
                    full.y_test[:200], "vendored", full.checksums)


def siblings(path: Path) -> list[str]:
    """Names in `path`'s parent: a finished build leaves only the store itself there."""
    return sorted(p.name for p in path.parent.iterdir())


def test_seed_split_matches_train_test_split(full: RawMnist) -> None:
    x_train, y_train, x_test, y_test = split_arrays(full, "seed")
    assert (len(x_train), len(x_test)) == (56000, 14000)
    x = np.concatenate([full.x_train, full.x_test])
    y = np.concatenate([full.y_train, full.y_test])
    ref = train_test_split(x, y, test_size=0.2, random_state=42)
    for got, want in zip((x_train, x_test, y_train, y_test), ref, strict=True):
        np.testing.assert_array_equal(got, want)


def test_canonical_split(small: RawMnist) -> None:
    x_train, y_train, x_test, y_test = split_arrays(small, "canonical")
    assert x_train is small.x_train and y_train is small.y_train
    assert x_test is small.x_test and y_test is small.y_test
    assert (len(x_train), len(x_test)) == (600, 200)


def test_unknown_split(small: RawMnist) -> None:
    with pytest.raises(ValueError, match=r"split must be one of seed, canonical; got 'x'"):
        split_arrays(small, "x")


def test_store_layout(small: RawMnist, tmp_path: Path) -> None:
    path = build_store(small, tmp_path / "m.zarr", chunk_rows=150)
    assert siblings(path) == ["m.zarr"]
    group = open_store(path)
    x_train, y_train, x_test, y_test = split_arrays(small, "seed")
    expected = {"train/images": x_train, "train/labels": y_train,
                "test/images": x_test, "test/labels": y_test}
    for name, want in expected.items():
        array = group[name]
        assert array.dtype == np.uint8 and array.shape == want.shape
        assert array.chunks == (150, 784)[: want.ndim]
        assert "zstd" in str(array.compressors)
        np.testing.assert_array_equal(array[...], want)
    assert group.read_only


def test_store_attrs(small: RawMnist, tmp_path: Path) -> None:
    path = build_store(small, tmp_path / "m.zarr", split="canonical", chunk_rows=100)
    assert store_info(path) == {
        "format": "mnist-dist-store/1",
        "source": "vendored",
        "checksums": small.checksums,
        "split": {"name": "canonical"},
        "n_train": 600,
        "n_test": 200,
        "chunk_rows": 100,
        "code_version": mnist_dist.__version__,
    }
    seed = build_store(small, tmp_path / "s.zarr")
    assert store_info(seed)["split"] == {"name": "seed", "test_size": 0.2, "random_state": 42}
    assert (store_info(seed)["n_train"], store_info(seed)["n_test"]) == (640, 160)
    assert json.loads((seed / "zarr.json").read_text())["zarr_format"] == 3


def test_reuse_same_provenance(
    small: RawMnist, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    (path / "marker").touch()
    renamed = RawMnist(small.x_train, small.y_train, small.x_test, small.y_test,
                       "elsewhere", small.checksums)
    with caplog.at_level("INFO", logger="mnist_dist.data.store"):
        assert build_store(renamed, path) == path
    assert (path / "marker").exists()
    assert "reusing store" in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [({"split": "canonical"}, r"split: .*'seed'.* != requested \{'name': 'canonical'\}"),
     ({"chunk_rows": 500}, r"chunk_rows: 2000 != requested 500")],
    ids=["split", "chunk_rows"],
)
def test_different_provenance_refused(
    small: RawMnist, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    (path / "marker").touch()
    with pytest.raises(StoreExistsError, match=rf"exists with different provenance .*{message}"):
        build_store(small, path, **change)
    assert (path / "marker").exists()


def test_different_checksums_refused(small: RawMnist, tmp_path: Path) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    other = RawMnist(small.x_train, small.y_train, small.x_test, small.y_test, "x.npz",
                     {"x.npz": "0" * 64})
    with pytest.raises(StoreExistsError, match=r"checksums: .*pass --force to rebuild$"):
        build_store(other, path)


def test_force_rebuilds(small: RawMnist, tmp_path: Path) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    (path / "marker").touch()
    build_store(small, path, split="canonical", force=True)
    assert not (path / "marker").exists()
    assert store_info(path)["split"] == {"name": "canonical"}
    assert siblings(path) == ["m.zarr"]


def test_non_store_path_refused_then_forced(small: RawMnist, tmp_path: Path) -> None:
    path = tmp_path / "m.zarr"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match=r"m.zarr exists and is not a mnist-dist store"):
        build_store(small, path)
    build_store(small, path, force=True)
    assert store_info(path)["n_test"] == 160


def fail_on_test_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the store writer raise when it reaches `test/images`, after train is written."""
    real = store.write_array

    def flaky(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...]) -> None:
        if name == "test/images":
            raise OSError("disk went away")
        real(group, name, data, chunks)

    monkeypatch.setattr(store, "write_array", flaky)


def test_failed_rebuild_keeps_old_store(
    small: RawMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    (path / "marker").touch()
    fail_on_test_images(monkeypatch)
    with pytest.raises(OSError, match="disk went away"):
        build_store(small, path, split="canonical", force=True)
    assert siblings(path) == ["m.zarr"]
    assert (path / "marker").exists()
    assert store_info(path)["split"]["name"] == "seed"
    assert open_store(path)["test/images"].shape == (160, 784)


def test_failed_first_build_leaves_nothing(
    small: RawMnist, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on_test_images(monkeypatch)
    with pytest.raises(OSError):
        build_store(small, tmp_path / "m.zarr")
    assert list(tmp_path.iterdir()) == []


def test_open_missing_store(tmp_path: Path) -> None:
    message = r"store .*nope.zarr not found; run `python -m jobs.prepare"
    with pytest.raises(StoreNotFoundError, match=message):
        open_store(tmp_path / "nope.zarr")


def test_open_non_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreNotFoundError, match=r"store .*empty not found .*jobs.prepare"):
        open_store(empty)
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["format"] = "something/9"
    with pytest.raises(StoreNotFoundError, match=r"not a mnist-dist-store/1 store"):
        store_info(tmp_path / "other.zarr")


def test_open_store_missing_array(small: RawMnist, tmp_path: Path) -> None:
    path = build_store(small, tmp_path / "m.zarr")
    group = zarr.open_group(str(path), mode="a")
    del group["test/labels"]
    with pytest.raises(StoreNotFoundError, match=r"lacks array test/labels"):
        open_store(path)


def test_store_provenance_picks_keys() -> None:
    attrs = {"format": "f", "checksums": {}, "split": {"name": "canonical"}, "chunk_rows": 3,
             "source": "ignored", "n_train": 1}
    assert store_provenance(attrs) == {"format": "f", "checksums": {},
                                       "split": {"name": "canonical"}, "chunk_rows": 3}
