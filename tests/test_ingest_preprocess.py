"""jobs.ingest --preprocess: array digits get the same MNIST-style preprocessing as image files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from distributed import Client
from PIL import Image

import mnist_dist as md
from mnist_dist.errors import DataError, SpecError
from mnist_dist.images.preprocess import load_image, preprocess, preprocess_array
from mnist_dist.ingestion.tasks import preprocess_digits

ROOT = Path(__file__).resolve().parent.parent
N_DIGITS = 60
SMALL_SIDE = 14


@pytest.fixture()
def store(tmp_path: Path, small_store: Path) -> Path:
    """A private copy of the small store (3,000 train / 600 test digits, 250-row chunks)."""
    copy = tmp_path / "store" / "mnist.zarr"
    shutil.copytree(small_store, copy)
    return copy


def user_digits(store: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first test digits as users' arrays differ from MNIST: dark ink on white, shrunk to
    14 px and off-centre: uint8 (N_DIGITS, 28, 28), and their labels uint8 (N_DIGITS,)."""
    images = zarr.open_array(f"{store}/test/images", mode="r")[:N_DIGITS]
    labels = zarr.open_array(f"{store}/test/labels", mode="r")[:N_DIGITS]
    digits = np.empty((N_DIGITS, 28, 28), np.uint8)
    for i, digit in enumerate(np.asarray(images)):
        small = Image.fromarray(255 - digit.reshape(28, 28)).resize((SMALL_SIDE, SMALL_SIDE))
        canvas = Image.new("L", (28, 28), 255)
        canvas.paste(small, (i % 5, 2 * (i % 7)))  # the 14-px digit wanders off centre
        digits[i] = np.asarray(canvas)
    return digits, np.asarray(labels)


def split_of(store: Path, name: str) -> zarr.Group:
    group = zarr.open_group(str(store), mode="r")[name]
    assert isinstance(group, zarr.Group)
    return group


def ingest_attrs(store: Path, name: str) -> dict[str, Any]:
    """The split's provenance attribute (`ingest`)."""
    attrs: dict[str, Any] = dict(split_of(store, name).attrs)
    return dict(attrs["ingest"])


def knn_accuracy(models: Path, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(md.load_models(str(models)).predict(images)["knn"] == labels))


def test_a_preprocessed_npy_equals_the_same_digits_as_png_files_and_scores_better(
    tmp_path: Path, store: Path, small_models: Path, local_client: Client,
) -> None:
    digits, labels = user_digits(store)
    np.save(tmp_path / "digits.npy", digits)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, digit in enumerate(digits):
        Image.fromarray(digit).save(folder / f"{i:03d}.png")
    for split, source, wanted in (("raw", "digits.npy", False),
                                  ("arrays", "digits.npy", True), ("files", "pngs", True)):
        md.ingest(md.IngestSpec(sources=(str(tmp_path / source),), split=split, store=store,
                                preprocess=wanted), client=local_client)
    files = split_of(store, "files")
    assert [Path(p).name for p in np.asarray(files["ids"])] == [f"{i:03d}.png"
                                                                 for i in range(N_DIGITS)]
    raw, arrays = (np.asarray(split_of(store, s)["images"]) for s in ("raw", "arrays"))
    assert np.array_equal(arrays, np.asarray(files["images"]))  # the same steps, pixel for pixel
    assert ingest_attrs(store, "arrays")["preprocess"] is True
    assert ingest_attrs(store, "raw")["preprocess"] is False
    assert ingest_attrs(store, "files")["preprocess"] is True  # image files always are
    before, after = (knn_accuracy(small_models, x, labels) for x in (raw, arrays))
    assert after >= before + 0.2, (before, after)


def test_preprocess_array_is_the_preprocessing_of_a_png_of_it(
    tmp_path: Path, store: Path,
) -> None:
    digit = user_digits(store)[0][7]
    Image.fromarray(digit).save(tmp_path / "d.png")
    expected = preprocess(load_image(tmp_path / "d.png"))
    assert np.array_equal(preprocess_array(digit), expected)
    assert np.array_equal(preprocess_array(digit.reshape(784)), expected)


def test_preprocess_on_the_command_line(tmp_path: Path, store: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    np.save(work / "my_digits.npy", user_digits(store)[0][:10])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", "my_digits.npy", "--split", "mine", "--preprocess",
         "--store", str(store), "--workers", "1"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ingested 10 images" in done.stdout
    assert ingest_attrs(store, "mine")["preprocess"] is True


def test_a_preprocess_that_is_not_a_bool_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="`preprocess` must be True or False; got 'yes' instead"):
        md.IngestSpec(sources=("x.npy",), split="new", preprocess="yes")  # type: ignore[arg-type]
    assert md.IngestSpec(sources=("scans",), split="new", preprocess=True).preprocess


def test_a_blank_row_refuses_the_ingest_naming_the_row(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    digits = user_digits(store)[0][:8].copy()
    digits[5] = 255  # white paper, no digit
    with pytest.raises(DataError, match=r"row 105 has no ink .* \(1 such rows in 100-107\)"):
        preprocess_digits(digits.reshape(8, 784), "x.npy", start=100)
    np.save(tmp_path / "blank.npy", digits)
    spec = md.IngestSpec(sources=(str(tmp_path / "blank.npy"),), split="blank", store=store,
                         preprocess=True)
    with pytest.raises(DataError, match=r"blank\.npy: --preprocess needs a digit in every row; "
                                        r"row 5 has no ink"):
        md.ingest(spec, client=local_client)
    assert "blank" not in zarr.open_group(str(store), mode="r")
