"""The public Python API of the prepare and train jobs: `md.prepare(spec, client=...)`
and `md.train(spec, client=...)`, their typed results and notebook renderings, and the scaler
fitted from the training split held in memory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from distributed import Client

import mnist_dist as md
from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.expand import DeformParams
from mnist_dist.errors import SpecError
from mnist_dist.preparation.tasks import generate_partition
from mnist_dist.training.scaler import fit_scaler

HOSTILE = "<script>alert(1)</script>"
# Where a job that ignored the caller's client would go: nothing listens there.
NOWHERE = ClusterSpec(scheduler="tcp://127.0.0.1:1", connect_timeout=1)


@pytest.fixture
def small_source(tmp_path: Path, small_store: Path) -> Path:
    """The small store's digits (3,000 train, 600 test) as an `.npz` source."""
    root = zarr.open_group(str(small_store), mode="r")
    path = tmp_path / "small.npz"
    np.savez(path, x_train=root["train/images"][:], y_train=root["train/labels"][:],
             x_test=root["test/images"][:], y_test=root["test/labels"][:])
    return path


@pytest.mark.cluster
def test_prepare_expands_on_the_callers_client_and_leaves_it_open(
    small_source: Path, small_store: Path, tmp_path: Path, local_client: Client
) -> None:
    store = tmp_path / "m.zarr"
    spec = md.PrepareSpec(store=str(store), source=small_source, split="canonical",
                          chunk_rows=50, expand=200, seed=3, partition_mb=0.01, cluster=NOWHERE)
    result = md.prepare(spec, client=local_client)
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    assert isinstance(result, md.PrepareResult)
    assert (result.store, result.n_train, result.n_test, result.split, result.chunk_rows) == (
        str(store), 3000, 600, "canonical", 50)
    expanded = result.expanded
    assert expanded is not None and not expanded.reused
    assert (expanded.n, expanded.partitions, expanded.partition_rows) == (200, 4, 50)
    assert result.summary_text().splitlines() == [
        f"store {store}: n_train=3000 n_test=600 split=canonical", expanded.summary()]
    assert expanded.summary().startswith(
        f"expanded {store}/expanded: n=200 in 4 partitions of 50 rows")
    written = zarr.open_group(str(store), mode="r")
    source = zarr.open_group(str(small_store), mode="r")
    reference, labels = generate_partition(source["test/images"][:], source["test/labels"][:],
                                           0, 200, 3, DeformParams())
    np.testing.assert_array_equal(written["expanded/images"][:], reference)
    np.testing.assert_array_equal(written["expanded/labels"][:], labels)
    again = md.prepare(spec, client=local_client)  # the same request: reused, client still open
    assert again.expanded is not None and again.expanded.reused
    assert local_client.status == "running"


def test_prepare_result_renders_its_figures_and_escapes_text(
    small_source: Path, tmp_path: Path
) -> None:
    result = md.prepare(md.PrepareSpec(store=str(tmp_path / "m.zarr"), source=small_source,
                                       split="canonical", chunk_rows=50))
    assert result.expanded is None
    assert result.summary_text() == (
        f"store {tmp_path / 'm.zarr'}: n_train=3000 n_test=600 split=canonical")
    page = result._repr_html_()
    assert f"{result.n_train:,}" in page and f"{result.n_test:,}" in page
    assert str(tmp_path / "m.zarr") in page and "canonical" in page
    hostile = dataclasses.replace(result, store=HOSTILE, source=HOSTILE)._repr_html_()
    assert HOSTILE not in hostile and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile


def test_train_runs_here_leaves_the_client_open_and_reads_the_split_once(
    small_store: Path, tmp_path: Path, local_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_second_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("the training split is read into memory once, not again lazily")

    monkeypatch.setattr(da, "from_zarr", no_second_read)
    models = tmp_path / "models"
    result = md.train(md.TrainSpec(store=small_store, models=models, epochs=1, train_limit=1000),
                      client=local_client)
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    assert isinstance(result, md.TrainResult)
    manifest = json.loads((models / "manifest.json").read_text())
    assert (result.models, result.n_train, result.n_test) == (str(models), 1000, 600)
    for name, figures in (("knn", result.knn), ("mlp", result.mlp)):
        assert figures.test_accuracy == manifest["models"][name]["test_accuracy"]
        assert figures.train_seconds == manifest["models"][name]["train_seconds"]
        assert 0.5 < figures.test_accuracy <= 1.0
    assert result.summary_text().splitlines() == [
        *(f"{name}: test accuracy {figures.test_accuracy:.4f}, "
          f"trained in {figures.train_seconds:.1f} s"
          for name, figures in (("knn", result.knn), ("mlp", result.mlp))),
        f"models: {models} (manifest.json lists every artifact's SHA-256)",
    ]
    page = result._repr_html_()
    assert f"{100 * result.knn.test_accuracy:.2f}%" in page
    assert f"{100 * result.mlp.test_accuracy:.2f}%" in page
    assert str(models) in page and "1,000" in page
    hostile = dataclasses.replace(result, models=HOSTILE)._repr_html_()
    assert HOSTILE not in hostile and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile


@pytest.mark.parametrize("rows", [None, 1100])
def test_the_scaler_from_memory_is_the_scaler_from_the_store_to_the_bit(
    small_store: Path, rows: int | None
) -> None:
    """The same values as the scaler fitted on the split read lazily from the store (as it was
    fitted before the split was read once), with and without a partial last chunk."""
    from dask_ml.preprocessing import StandardScaler

    lazy = da.from_zarr(str(small_store), component="train/images")[:rows]
    with dask.config.set(scheduler="threads"):
        reference = StandardScaler().fit(lazy.astype(np.float64))
    images = zarr.open_array(str(small_store), path="train/images", mode="r")
    scaler = fit_scaler(images[:rows], images.chunks[0])
    np.testing.assert_array_equal(scaler.mean, reference.mean_)
    np.testing.assert_array_equal(scaler.scale, reference.scale_)


@pytest.mark.parametrize("make,match", [
    (lambda: md.PrepareSpec(chunk_rows=0), "chunk_rows must be an integer >= 1; got 0"),
    (lambda: md.PrepareSpec(split="random"), "split must be one of seed, canonical"),
    (lambda: md.PrepareSpec(expand=True), "expand must be an integer >= 1; got True"),
    (lambda: md.PrepareSpec(store="s3://bucket/m.zarr", expand=10), "needs a local --store"),
    (lambda: md.PrepareSpec(expand=10, partition_mb=float("nan")), "partition_mb must be"),
    (lambda: md.PrepareSpec(source=Path("a"), download=Path("b")), "exclusive"),
    (lambda: md.TrainSpec(store="s", models="m", epochs=0), "epochs must be an integer >= 1"),
    (lambda: md.TrainSpec(store="s", models="m", train_limit=0),
     "train_limit must be an integer >= 1, or None"),
    (lambda: md.TrainSpec(store="", models="m"), "store must be a path or URL"),
], ids=["chunk_rows", "split", "expand", "expand-url", "partition_mb", "source", "epochs",
        "train_limit", "store"])
def test_a_bad_spec_argument_is_a_spec_error(make: object, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        make()  # type: ignore[operator]
