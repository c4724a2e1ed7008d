"""A split is checked on the client before any work: shapes, dtypes, label values, lengths,
emptiness, presence; labels may be absent. Undecodable chunks are named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from jobs import score as score_job
from mnist_dist.data.splits import check_split, read_rows, read_split
from mnist_dist.errors import DataError, StoreNotFoundError

FAST = ["--no-progress", "--workers", "1", "--batch-sizes", "1", "--sweep-seconds", "0.02"]


@pytest.fixture()
def store(small_store: Path, tmp_path: Path) -> Path:
    """A writable copy of the small store (600 test rows in 250-row chunks)."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(small_store, copy)
    return copy


def replace_array(store: Path, name: str, data: np.ndarray | None) -> None:
    """Replace (or with None, delete) array `name` of `store`."""
    group = zarr.open_group(str(store), mode="r+")
    del group[name]
    if data is not None:
        group.create_array(name, shape=data.shape, chunks=(250, *data.shape[1:]),
                           dtype=data.dtype)[...] = data


def labels_of(store: Path) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")["test/labels"][:]


def images_of(store: Path) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")["test/images"][:]


def test_a_good_split_passes_with_or_without_labels(store: Path) -> None:
    assert check_split(str(store), "test") == 600
    replace_array(store, "test/labels", None)
    assert check_split(str(store), "test") == 600  # unlabelled data: images only


@pytest.mark.parametrize(("array", "change", "message"), [
    ("images", lambda x, y: x.reshape(-1, 28, 28),
     r"images must be uint8 \(N, 784\); got uint8 \(600, 28, 28\)"),
    ("images", lambda x, y: x.astype(np.float32), r"images must be uint8 \(N, 784\); got float32"),
    ("images", lambda x, y: x[:, :783], r"images must be uint8 \(N, 784\); got uint8 \(600, 783\)"),
    ("images", lambda x, y: x[:0], "has 0 rows: nothing to score"),
    ("images", lambda x, y: x[:599], "599 images but 600 labels"),
    ("labels", lambda x, y: y[:10], "600 images but 10 labels"),
    ("labels", lambda x, y: y.astype(np.int64), r"labels must be uint8 \(N,\); got int64"),
    ("labels", lambda x, y: y.reshape(-1, 1), r"labels must be uint8 \(N,\); got uint8 \(600, 1\)"),
    ("labels", lambda x, y: np.where(np.arange(600) == 333, 11, y).astype(np.uint8),
     "1 value.s. outside 0-9, e.g. 11 at row 333"),
    ("labels", lambda x, y: np.full(600, 255, np.uint8), "600 value.s. outside 0-9, e.g. 255"),
])
def test_a_malformed_split_is_a_data_error_naming_it(store: Path, array: str, change, message: str
                                                      ) -> None:
    x, y = images_of(store), labels_of(store)
    replace_array(store, f"test/{array}", change(x, y))
    with pytest.raises(DataError, match=message) as caught:
        check_split(str(store), "test")
    assert f"{store}/test" in str(caught.value)


def test_a_missing_split_or_images_array_is_store_not_found(store: Path) -> None:
    with pytest.raises(StoreNotFoundError, match=r"split 'validation' not found in the store "
                                                 r"\(its groups: test, train\)"):
        check_split(str(store), "validation")
    replace_array(store, "test/images", None)
    with pytest.raises(StoreNotFoundError, match=r"split 'test' has no images array"):
        check_split(str(store), "test")


def test_a_split_that_is_an_array_is_a_data_error(store: Path) -> None:
    with pytest.raises(DataError, match="test/images is an array, not a group"):
        check_split(str(store), "test/images")


def overwrite_chunk(store: Path, key: str) -> None:
    (store / key).write_bytes(b"\x00garbage, not a blosc frame" * 8)


def test_an_undecodable_chunk_is_named(store: Path) -> None:
    overwrite_chunk(store, "test/images/c/1/0")
    assert read_rows(str(store), "test/images", 0, 250).shape == (250, 784)  # other chunks read
    for start, stop in ((0, 600), (250, 300), (499, 501)):
        with pytest.raises(DataError, match=r"test/images: chunk\(s\) c/1/0 cannot be decoded"):
            read_rows(str(store), "test/images", start, stop)
    with pytest.raises(DataError, match=r"c/1/0 cannot be decoded"):
        read_split(str(store), "test")


def test_an_undecodable_labels_chunk_fails_the_split_check(store: Path) -> None:
    overwrite_chunk(store, "test/labels/c/2")
    with pytest.raises(DataError, match=r"test/labels: chunk\(s\) c/2 cannot be decoded"):
        check_split(str(store), "test")


@pytest.mark.parametrize(("split", "prepare", "code", "message"), [
    ("validation", None, 4, "split 'validation' not found"),
    ("test", "labels-11", 3, "outside 0-9, e.g. 11"),
    ("test", "images-28x28", 3, r"must be uint8 \(N, 784\)"),
    ("test", "empty", 3, "nothing to score"),
])
def test_score_refuses_bad_data_with_one_line_before_work(
    store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    split: str, prepare: str | None, code: int, message: str,
) -> None:
    if prepare == "labels-11":
        replace_array(store, "test/labels", np.full(600, 11, np.uint8))
    elif prepare == "images-28x28":
        replace_array(store, "test/images", images_of(store).reshape(-1, 28, 28))
    elif prepare == "empty":
        replace_array(store, "test/images", images_of(store)[:0])
        replace_array(store, "test/labels", labels_of(store)[:0])
    out = tmp_path / "run"
    got = score_job.main(["--store", str(store), "--models", str(small_models), *FAST,
                          "--split", split, "--out", str(out)])
    errors = capsys.readouterr().err.strip().splitlines()
    assert got == code, errors
    assert len(errors) == 1 and errors[0].startswith("error: ")
    assert re.search(message, errors[0])
    assert not out.exists()  # refused before the run folder or the cluster


def test_score_names_an_undecodable_image_chunk_read_on_a_worker(
    store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Chunk files are all present (the client's check passes): the worker reading the garbage
    chunk raises the DataError, which reaches the user as one line naming the chunk."""
    overwrite_chunk(store, "test/images/c/1/0")
    got = score_job.main(["--store", str(store), "--models", str(small_models), *FAST,
                          "--partition-rows", "250", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert got == 3, errors
    assert len(errors) == 1 and re.search(r"test/images: chunk\(s\) c/1/0 cannot be decoded",
                                          errors[0])
    assert "Traceback" not in captured.err + captured.out
