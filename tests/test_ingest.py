"""jobs.ingest: arrays and image files into the store as a split, atomically and checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client
from PIL import Image

from jobs import ingest
from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store
from mnist_dist.errors import DataError
from mnist_dist.images.preprocess import load_image, preprocess
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.ingestion.run import run
from mnist_dist.ingestion.sources import file_sha256
from mnist_dist.ingestion.spec import IngestSpec
from mnist_dist.ingestion.tasks import to_labels, to_pixels
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.images import run_image_scoring
from mnist_dist.scoring.spec import ScoreJob
from tests.helpers import job_peak_rss_kib, write_digit_pngs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def store(tmp_path: Path, small_store: Path) -> Path:
    """A private copy of the small store (3,000 train / 600 test digits, 250-row chunks)."""
    copy = tmp_path / "store" / "mnist.zarr"
    shutil.copytree(small_store, copy)
    return copy


def on(client: Client) -> ClusterSpec:
    """The session's LocalCluster, by address (as --scheduler would give it)."""
    return ClusterSpec(scheduler=client.scheduler.address)


def split_arrays(store: Path, name: str) -> zarr.Group:
    group = zarr.open_group(str(store), mode="r")[name]
    assert isinstance(group, zarr.Group)
    return group


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under the store's parent folder (so a leftover temporary shows) by content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_14000_test_digits_from_npy_equal_the_test_split_byte_for_byte(
    tmp_path: Path, vendored: RawMnist, local_client: Client,
) -> None:
    store = build_store(vendored, tmp_path / "mnist.zarr")  # the full seed store, 2,000-row chunks
    test = split_arrays(store, "test")
    source = tmp_path / "digits.npy"
    np.save(source, np.asarray(test["images"]).reshape(-1, 28, 28))
    result = run(IngestSpec(sources=(str(source),), split="new", store=store,
                            cluster=on(local_client)))
    new = split_arrays(store, "new")
    assert result.n_images == 14_000 and result.n_failed == 0
    assert "labels" not in new  # no labels given: none invented
    assert np.array_equal(np.asarray(new["images"]), np.asarray(test["images"]))
    assert new["images"].chunks == test["images"].chunks == (2000, 784)
    assert new["images"].compressors == test["images"].compressors
    attrs = new.attrs["ingest"]
    assert attrs["sha256"] == {str(source): file_sha256(source)}
    assert attrs["n_images"] == 14_000 and attrs["code_version"] and attrs["created"]


def test_float_npz_with_pixel_range_and_labels(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    test = split_arrays(store, "test")
    images, labels = np.asarray(test["images"]), np.asarray(test["labels"])
    np.savez(tmp_path / "x.npz", other=np.zeros(3), pixels=images.astype(np.float32) / 255.0)
    np.save(tmp_path / "y.npy", labels.astype(np.int64))
    run(IngestSpec(sources=(str(tmp_path / "x.npz"),), split="floats", store=store,
                   key="pixels", pixel_range=1, labels=tmp_path / "y.npy",
                   cluster=on(local_client)))
    new = split_arrays(store, "floats")
    assert np.array_equal(np.asarray(new["images"]), images)
    assert np.array_equal(np.asarray(new["labels"]), labels)
    assert new["labels"].dtype == np.uint8 and new["labels"].chunks == (250,)


def test_a_zarr_array_of_any_chunking_is_rechunked_into_the_store_layout(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    images = np.asarray(split_arrays(store, "test")["images"])
    source = zarr.create_array(str(tmp_path / "src.zarr"), shape=(600, 28, 28), chunks=(97, 7, 28),
                               dtype=np.uint8)
    source[...] = images.reshape(-1, 28, 28)
    url = f"file://{tmp_path / 'src.zarr'}"
    run(IngestSpec(sources=(url,), split="z", store=store, cluster=on(local_client)))
    new = split_arrays(store, "z")
    assert np.array_equal(np.asarray(new["images"]), images)
    assert new["images"].chunks == (250, 784)
    blocks = [hashlib.sha256(images[i : i + 250].reshape(-1, 28, 28).tobytes()).digest()
              for i in range(0, 600, 250)]
    content = hashlib.sha256(b"".join(blocks)).hexdigest()
    assert new.attrs["ingest"]["content_sha256"] == {url: content}


def write_digit_files(folder: Path, digits: np.ndarray) -> list[Path]:
    """Each digit as dark ink on white paper, twice MNIST's size, named `<label>_<i>.png`."""
    folder.mkdir(parents=True)
    paths = []
    for i, digit in enumerate(digits):
        path = folder / f"{i % 10}_{i:03d}.png"
        Image.fromarray(255 - digit.reshape(28, 28)).resize((56, 56)).save(path)
        paths.append(path)
    return paths


def test_a_folder_of_images_equals_the_images_preprocessing_with_failures_recorded(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    digits = np.asarray(split_arrays(store, "test")["images"][:40])
    paths = sorted(write_digit_files(tmp_path / "scans", digits))  # the listing's order
    (tmp_path / "scans" / "5_corrupt.png").write_bytes(b"not an image")
    Image.new("L", (40, 40), 255).save(tmp_path / "scans" / "7_blank.png")
    result = run(IngestSpec(sources=(str(tmp_path / "scans"),), split="scans", store=store,
                            labels_from_names=True, partition_files=7,
                            cluster=on(local_client)))
    new = split_arrays(store, "scans")
    expected = np.stack([preprocess(load_image(p)).reshape(784) for p in paths])
    assert (result.n_images, result.n_failed) == (40, 2)
    assert np.array_equal(np.asarray(new["images"]), expected)
    assert [str(i) for i in np.asarray(new["ids"])] == [str(p) for p in paths]
    assert np.array_equal(np.asarray(new["labels"]), [int(p.name[0]) for p in paths])
    failed = dict(zip(map(str, np.asarray(new["failures/file"])),
                      map(str, np.asarray(new["failures/reason"])), strict=True))
    assert set(failed) == {str(tmp_path / "scans" / n) for n in ("5_corrupt.png", "7_blank.png")}
    assert "blank" in failed[str(tmp_path / "scans" / "7_blank.png")]
    assert "not a readable" in failed[str(tmp_path / "scans" / "5_corrupt.png")]


def test_a_folder_ingested_and_scored_equals_scoring_the_files_as_images_does(
    tmp_path: Path, store: Path, small_models: Path, local_client: Client,
) -> None:
    digits = np.asarray(split_arrays(store, "test")["images"][:60])
    paths = sorted(write_digit_files(tmp_path / "scans", digits))
    run(IngestSpec(sources=(str(tmp_path / "scans"),), split="scans", store=store,
                   cluster=on(local_client)))
    ref = ModelRef.from_directory(small_models)
    job = ScoreJob(store=str(store), run_dir=tmp_path / "run", models=ref, split="scans")
    score_graph(local_client, job, show_progress=False)
    run_image_scoring(ImageScoreSpec(images=(tmp_path / "scans",), models=str(small_models),
                                     out=tmp_path / "images-run", cluster=on(local_client)))
    predictions = zarr.open_group(job.predictions, mode="r")
    images = zarr.open_group(str(tmp_path / "images-run" / "predictions.zarr"), mode="r")
    for name in ("knn", "mlp", "mlp_probabilities", "knn_neighbours", "knn_distances"):
        assert np.array_equal(predictions[name][:], images[name][:]), name
    assert [str(i) for i in predictions["ids"][:]] == [str(i) for i in images["ids"][:]] \
        == [str(p) for p in paths]


def test_the_cli_reports_failed_files_with_exit_code_12(
    tmp_path: Path, store: Path, local_client: Client, capsys: pytest.CaptureFixture[str],
) -> None:
    write_digit_files(tmp_path / "scans", np.asarray(split_arrays(store, "test")["images"][:5]))
    (tmp_path / "scans" / "broken.png").write_bytes(b"junk")
    code = ingest.main([str(tmp_path / "scans"), "--store", str(store), "--split", "mine",
                        "--scheduler", local_client.scheduler.address])
    out = capsys.readouterr()
    assert code == 12
    assert "ingested 5 images" in out.out and "broken.png" in out.out
    assert out.err.splitlines()[-1].startswith("error: 1 of 6 image files could not be ingested")
    assert split_arrays(store, "mine")["images"].shape == (5, 784)


def bad_sources(tmp_path: Path, store: Path) -> dict[str, list[str]]:
    """Command lines (after `jobs.ingest`) that must each be refused."""
    ok = np.zeros((600, 784), np.uint8)
    arrays = {
        "shape.npy": np.zeros((10, 27, 28), np.uint8), "ints.npy": ok.astype(np.int32),
        "ok.npy": ok, "floats.npy": ok.astype(np.float32),
        "nan.npy": np.concatenate([ok, np.full((1, 784), np.nan)]).astype(np.float32),
        "big.npy": np.full((600, 784), 2.0, np.float32),
        "labels-short.npy": np.zeros(599, np.int64), "labels-ten.npy": np.full(600, 10),
    }
    for name, array in arrays.items():
        np.save(tmp_path / name, array)
    base = ["--store", str(store)]
    src = str(tmp_path / "ok.npy")
    return {
        "wrong shape": [str(tmp_path / "shape.npy"), *base, "--split", "x"],
        "wrong dtype": [str(tmp_path / "ints.npy"), *base, "--split", "x"],
        "float without --pixel-range": [str(tmp_path / "floats.npy"), *base, "--split", "x"],
        "NaN": [str(tmp_path / "nan.npy"), *base, "--split", "x", "--pixel-range", "1"],
        "out of range": [str(tmp_path / "big.npy"), *base, "--split", "x", "--pixel-range", "1"],
        "labels of the wrong length": [src, *base, "--split", "x",
                                       "--labels", str(tmp_path / "labels-short.npy")],
        "labels outside 0-9": [src, *base, "--split", "x",
                               "--labels", str(tmp_path / "labels-ten.npy")],
        "existing split": [src, *base, "--split", "kept"],
        "the test split": [src, *base, "--split", "test", "--force"],
        "unreadable URL": ["file:///nonexistent/array.zarr", *base, "--split", "x"],
        "no store": [src, "--store", str(tmp_path / "nowhere.zarr"), "--split", "x"],
    }


def test_every_bad_input_is_one_error_line_and_leaves_the_store_unchanged(
    tmp_path: Path, store: Path, local_client: Client, capsys: pytest.CaptureFixture[str],
) -> None:
    cases = bad_sources(tmp_path, store)
    assert ingest.main([str(tmp_path / "ok.npy"), "--store", str(store), "--split", "kept",
                        "--scheduler", local_client.scheduler.address]) == 0
    capsys.readouterr()
    before = fingerprint(store.parent)
    for why, argv in cases.items():
        code = ingest.main([*argv, "--scheduler", local_client.scheduler.address])
        err = capsys.readouterr().err
        assert code not in (0, 2), why
        assert len(err.splitlines()) == 1 and err.startswith("error: "), (why, err)
        assert fingerprint(store.parent) == before, why


def test_force_replaces_an_ingested_split(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    first, second = np.zeros((5, 784), np.uint8), np.full((7, 784), 9, np.uint8)
    np.save(tmp_path / "a.npy", first)
    np.save(tmp_path / "b.npy", second)
    for name in ("a.npy", "b.npy"):
        run(IngestSpec(sources=(str(tmp_path / name),), split="mine", store=store,
                       force=True, cluster=on(local_client)))
    assert np.array_equal(np.asarray(split_arrays(store, "mine")["images"]), second)
    assert sorted(p.name for p in store.parent.iterdir()) == ["mnist.zarr"]


def test_the_pixel_and_label_checks_name_the_row() -> None:
    block = np.zeros((4, 784), np.float64)
    block[2, 5] = np.inf
    with pytest.raises(DataError, match="NaN or inf in row 102"):
        to_pixels(block, 255, "x.npy", start=100)
    assert to_pixels(np.full((1, 784), 0.5), 1, "x", 0).tolist() == [[128] * 784]
    with pytest.raises(DataError, match="got -1 at row 11"):
        to_labels(np.array([3, -1]), "y.npy", start=10)


def test_ingest_as_users_run_it(tmp_path: Path, store: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((3, 28, 28), np.uint8))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", str(tmp_path / "x.npy"), "--store", str(store),
         "--split", "cli", "--workers", "1"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ingested 3 images" in done.stdout
    assert split_arrays(store, "cli")["images"].shape == (3, 784)


def test_an_interrupted_ingest_leaves_no_split_and_no_temporary(
    tmp_path: Path, store: Path, local_client: Client, monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_digit_files(tmp_path / "scans", np.asarray(split_arrays(store, "test")["images"][:4]))
    before = fingerprint(store.parent)

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the staging pass, before the split is complete

    monkeypatch.setattr("mnist_dist.ingestion.run.compact_staged", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(IngestSpec(sources=(str(tmp_path / "scans"),), split="cut", store=store,
                       cluster=on(local_client)))
    assert fingerprint(store.parent) == before


@pytest.mark.slow
def test_client_memory_of_20000_files_is_within_10_percent_of_2000(
    tmp_path: Path, store: Path,
) -> None:
    digits = np.asarray(split_arrays(store, "test")["images"])
    small, large = (
        job_peak_rss_kib("ingest", [
            str(write_digit_pngs(tmp_path / f"files-{count}", digits, count)),
            "--store", str(store), "--split", split], cwd=ROOT)
        for count, split in ((2_000, "two-thousand"), (20_000, "twenty-thousand"))
    )
    assert split_arrays(store, "twenty-thousand")["images"].shape == (20_000, 784)
    assert large <= 1.10 * small, (small, large)


def test_csv_labels_of_image_files_are_stored_and_every_file_needs_one(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    digits = np.asarray(split_arrays(store, "test")["images"][:6])
    paths = sorted(write_digit_files(tmp_path / "scans", digits))
    csv = tmp_path / "scans" / "labels.csv"
    rows = [f"{p.name},{(i * 3) % 10}\n" for i, p in enumerate(paths)]
    csv.write_text("file,digit\n" + "".join(rows))
    spec = IngestSpec(sources=(str(tmp_path / "scans"),), split="csv", store=store, labels=csv,
                      cluster=on(local_client))
    run(spec)
    assert split_arrays(store, "csv")["labels"][:].tolist() == [(i * 3) % 10 for i in range(6)]
    csv.write_text("file,digit\n" + "".join(f"{p.name},1\n" for p in paths[1:]))
    with pytest.raises(DataError, match="1 of 6 have none"):
        run(IngestSpec(sources=spec.sources, split="csv2", store=store, labels=csv,
                       cluster=on(local_client)))
    assert "csv2" not in zarr.open_group(str(store), mode="r")
