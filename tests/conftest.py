"""Shared fixtures: a small real store and small real models (session-scoped), a LocalCluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest
from distributed import Client, LocalCluster

from mnist_dist.data.sources import RawMnist, load_vendored
from mnist_dist.data.store import build_store
from mnist_dist.training.run import run as train
from mnist_dist.training.spec import TrainSpec

pytest_plugins = ["tests.conftest_s3"]  # the S3 server fixtures

SMALL_TRAIN = 3000
SMALL_TEST = 600


@pytest.fixture(autouse=True)
def data_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[Path]:
    """Each test's own data home, in this process and in the jobs it starts: default stores
    and models never land in the user's."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MNIST_DIST_HOME", str(home))
    with dask.config.set({"mnist-dist.home": str(home)}):
        yield home


@pytest.fixture(scope="session")
def vendored() -> RawMnist:
    """The full vendored MNIST (60k/10k), loaded and checksum-verified once."""
    return load_vendored()


@pytest.fixture(scope="session")
def small_store(tmp_path_factory: pytest.TempPathFactory, vendored: RawMnist) -> Path:
    """A store of the first 3,000 training and 600 test digits, in 250-row chunks."""
    subset = RawMnist(
        vendored.x_train[:SMALL_TRAIN], vendored.y_train[:SMALL_TRAIN],
        vendored.x_test[:SMALL_TEST], vendored.y_test[:SMALL_TEST],
        source=f"vendored[:{SMALL_TRAIN}/:{SMALL_TEST}]",
    )
    path = tmp_path_factory.mktemp("small") / "mnist.zarr"
    return build_store(subset, path, split="canonical", chunk_rows=250)


@pytest.fixture(scope="session")
def small_models(tmp_path_factory: pytest.TempPathFactory, small_store: Path) -> Path:
    """Real KNN + ONNX MLP (1 epoch) trained on the small store."""
    path = tmp_path_factory.mktemp("small-models") / "models"
    train(TrainSpec(store=small_store, models=path, epochs=1))
    return path


@pytest.fixture(scope="session")
def local_client() -> Iterator[Client]:
    """A real 2-worker, 1-thread-each LocalCluster on 127.0.0.1, shared by the session."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
    ) as cluster, Client(cluster) as client:
        yield client
