"""jobs.prepare, jobs.train and jobs.ingest writing straight to object storage, against the real
SeaweedFS server (tests/conftest_s3.py), then jobs.score reading what they wrote."""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import numpy as np
import pytest
import s3fs

from jobs import ingest, prepare, train
from mnist_dist.data.store import store_info, zarr_array
from mnist_dist.errors import EXIT_CODES, StorageError, StoreExistsError
from mnist_dist.models.artifacts import ModelRef, read_manifest_at
from tests.conftest_s3 import S3Server
from tests.test_s3 import predictions_at, run_score

ARRAYS = ("train/images", "train/labels", "test/images", "test/labels")
FAST = ["--no-progress", "--batch-sizes", "1", "--sweep-seconds", "0.01",
        "--partition-rows", "100"]
EXISTS = EXIT_CODES[StoreExistsError]


def listing(url: str) -> dict[str, str]:
    """Every object under `url` with its ETag: equal listings mean nothing was written."""
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return {path: info["ETag"] for path, info in fs.find(url, detail=True).items()}


def one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for word in words:
        assert word in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def bucket(s3_inputs: tuple[str, str]) -> str:
    """A fresh folder for this module's outputs in the session's bucket (each new bucket takes
    a SeaweedFS collection and its volumes; the test server has room for few)."""
    return f"s3://mnist/jobs-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def s3_store(bucket: str, small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`jobs.prepare` writing the small store's digits (from an .npz) straight to S3."""
    folder = tmp_path_factory.mktemp("npz")
    source = folder / "small.npz"
    part = {name: zarr_array(str(small_store), name)[:] for name in ARRAYS}
    np.savez(source, x_train=part["train/images"].reshape(-1, 28, 28),
             y_train=part["train/labels"], x_test=part["test/images"].reshape(-1, 28, 28),
             y_test=part["test/labels"])
    url = f"{bucket}/mnist.zarr"
    assert prepare.main(["--source", str(source), "--split", "canonical", "--chunk-rows", "250",
                         "--store", url]) == 0
    return url


def test_prepare_writes_the_store_to_s3(s3_store: str, small_store: Path, bucket: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ARRAYS:
        ours, theirs = zarr_array(s3_store, name), zarr_array(str(small_store), name)
        assert ours.chunks == theirs.chunks
        np.testing.assert_array_equal(ours[:], theirs[:])
    info = store_info(s3_store)
    assert (info["n_train"], info["n_test"], info["chunk_rows"]) == (3000, 600, 250)
    assert not [p for p in listing(bucket) if "/.mnist.zarr.tmp-" in p]  # no temporary left
    before = listing(s3_store)
    # The same provenance again is reused; another split is refused without --force.
    source = info["source"]
    assert prepare.main(["--source", source, "--split", "canonical", "--chunk-rows", "250",
                         "--store", s3_store]) == 0
    capsys.readouterr()
    assert prepare.main(["--source", source, "--split", "seed", "--chunk-rows", "250",
                         "--store", s3_store]) == EXISTS
    one_error_line(capsys, s3_store, "--force")
    assert listing(s3_store) == before


def test_prepare_into_a_missing_bucket_is_one_line(s3_server: S3Server,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = prepare.main(["--store", "s3://no-such-bucket-here/mnist.zarr"])
    assert code == EXIT_CODES[StorageError]
    one_error_line(capsys, "--store", "no-such-bucket-here", "does not exist")


@pytest.fixture(scope="module")
def s3_models(s3_store: str, bucket: str) -> str:
    """`jobs.train` reading the S3 store and writing the models straight to S3."""
    url = f"{bucket}/models"
    assert train.main(["--store", s3_store, "--models", url, "--epochs", "1"]) == 0
    return url


def test_train_writes_verified_models_to_s3(
    s3_models: str, small_models: Path, bucket: str, capsys: pytest.CaptureFixture[str],
) -> None:
    ref = ModelRef.from_location(s3_models)  # every artifact read back and checksum-verified
    manifest, local = read_manifest_at(s3_models), read_manifest_at(str(small_models))
    # The same training rows and scaler: the exact KNN's test accuracy is the local one's.
    assert manifest["models"]["knn"]["test_accuracy"] == local["models"]["knn"]["test_accuracy"]
    assert manifest["n_train"] == 3000
    knn = np.load(io.BytesIO(s3fs.S3FileSystem().cat(ref.location("knn.npz"))),
                  allow_pickle=False)
    with np.load(small_models / "knn.npz", allow_pickle=False) as theirs:
        for name in theirs.files:
            np.testing.assert_array_equal(knn[name], theirs[name])
    assert not [p for p in listing(bucket) if "/.models.tmp-" in p]
    before = listing(s3_models)
    capsys.readouterr()
    assert train.main(["--store", manifest["store"]["path"], "--models", s3_models,
                       "--epochs", "1"]) == EXISTS
    one_error_line(capsys, s3_models, "--force")
    assert listing(s3_models) == before


def test_ingest_into_an_s3_store_then_score_it_there(
    s3_store: str, s3_models: str, small_store: Path, bucket: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = zarr_array(str(small_store), "test/images")[:]
    source = tmp_path / "new.npy"
    np.save(source, images.reshape(-1, 28, 28))
    args = [str(source), "--store", s3_store, "--split", "new", "--workers", "1"]
    assert ingest.main(args) == 0
    np.testing.assert_array_equal(zarr_array(s3_store, "new/images")[:], images)
    assert zarr_array(s3_store, "new/images").chunks == (250, 784)
    assert not [p for p in listing(bucket) if ".tmp-" in p]
    before = listing(s3_store)
    capsys.readouterr()
    assert ingest.main(args) == EXISTS  # an existing split without --force
    one_error_line(capsys, "new", "--force")
    assert listing(s3_store) == before
    # Scored where it was ingested: the same predictions as the labelled test split.
    predictions = {}
    for split in ("new", "test"):
        where = f"{bucket}/runs/{split}.zarr"
        done = run_score("--store", s3_store, "--models", s3_models, "--split", split,
                         "--predictions", where, "--workers", "1",
                         "--out", str(tmp_path / split), *FAST)
        assert done.returncode == 0, done.stderr[-3000:]
        predictions[split] = predictions_at(where)
    for name in ("knn", "mlp"):
        np.testing.assert_array_equal(predictions["new"][name], predictions["test"][name])
