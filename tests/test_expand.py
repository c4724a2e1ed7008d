"""Deformed digits at scale: the per-digit functions, the Dask graph on real clusters, the jobs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import prepare
from mnist_dist.bench.scale import ScaleSpec, run_scale, spread
from mnist_dist.cluster import ClusterSpec, connect
from mnist_dist.data.expand import (
    BATCH_ROWS,
    DRAWS_PER_DIGIT,
    DeformParams,
    deform_batch,
    deform_digit,
    digit_draws,
)
from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store
from mnist_dist.errors import DiskSpaceError, StoreExistsError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.preparation.graph import expand_store
from mnist_dist.preparation.plan import EXPANDED_FORMAT, plan_expand
from mnist_dist.preparation.spec import ExpandSpec
from mnist_dist.preparation.tasks import generate_partition
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.worker_memory import start_rss_sampler, stop_rss_sampler
from tests.helpers import write_model_dir

REPO = Path(__file__).resolve().parents[1]
NO_DEFORMATION = DeformParams(rotation_deg=0, scale=0, shear=0, shift_px=0, elastic_alpha=0)
CHUNK_ROWS = 8


@pytest.fixture(scope="module")
def source(vendored: RawMnist) -> tuple[np.ndarray, np.ndarray]:
    """150 real test digits (784,) and their labels."""
    return vendored.x_test[:150], vendored.y_test[:150]


@pytest.fixture
def tiny_store(tmp_path: Path, vendored: RawMnist) -> Path:
    """A store of 100 train / 150 test real digits in 8-row chunks."""
    raw = RawMnist(vendored.x_train[:100], vendored.y_train[:100], vendored.x_test[:150],
                   vendored.y_test[:150], "vendored[:100/:150]", vendored.checksums)
    return build_store(raw, tmp_path / "tiny.zarr", split="canonical", chunk_rows=CHUNK_ROWS)


def read_group(store: Path, group: str) -> tuple[np.ndarray, np.ndarray, dict]:
    root = zarr.open_group(str(store), mode="r")
    return root[f"{group}/images"][:], root[f"{group}/labels"][:], dict(root[group].attrs)


# ------------------------------------------------------------ per-digit functions (no Dask)

def test_draws_are_positions_of_one_stream() -> None:
    whole = digit_draws(7, 0, 10)
    assert whole.shape == (10, DRAWS_PER_DIGIT)
    np.testing.assert_array_equal(digit_draws(7, 3, 10), whole[3:])
    np.testing.assert_array_equal(digit_draws(7, 9, 10)[0], whole[9])
    assert not np.array_equal(digit_draws(8, 0, 10), whole)


def test_no_deformation_returns_the_source(source: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = source
    out, out_labels = generate_partition(images, labels, 0, 150, 0, NO_DEFORMATION)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(out_labels, labels)


def test_defaults_move_the_digit_but_keep_its_ink(source: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = source
    out, _ = generate_partition(images, labels, 0, 150, 0, DeformParams())
    changed = (out != images).mean(axis=1)
    assert changed.min() > 0.02
    ink_ratio = out.sum(axis=1) / images.sum(axis=1)
    assert 0.75 < np.median(ink_ratio) < 1.25


def test_digit_i_deforms_source_i_mod_n(source: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = source
    out, out_labels = generate_partition(images, labels, 290, 310, 3, DeformParams())
    np.testing.assert_array_equal(out_labels, labels[np.arange(290, 310) % 150])
    for k, i in enumerate(range(290, 310)):
        expected = deform_digit(images[i % 150], digit_draws(3, i, i + 1)[0], DeformParams())
        np.testing.assert_array_equal(out[k], expected)


def test_a_digit_does_not_depend_on_its_batch(source: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = source
    whole, _ = generate_partition(images, labels, 0, 150, 5, DeformParams())
    pieces = [generate_partition(images, labels, a, min(a + 37, 150), 5, DeformParams())[0]
              for a in range(0, 150, 37)]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    odd = deform_batch(images[:BATCH_ROWS + 3], digit_draws(5, 0, BATCH_ROWS + 3),
                       DeformParams())
    np.testing.assert_array_equal(odd, whole[: BATCH_ROWS + 3])


def test_params_are_validated_and_round_trip() -> None:
    params = DeformParams(rotation_deg=5, elastic_alpha=3)
    assert DeformParams.from_dict(json.loads(json.dumps(params.as_dict()))) == params
    with pytest.raises(ValueError, match="shear must be a finite number >= 0; got -1"):
        DeformParams(shear=-1)
    with pytest.raises(ValueError, match="scale must be < 1"):
        DeformParams(scale=1.0)
    with pytest.raises(ValueError, match="elastic_sigma must be > 0"):
        DeformParams(elastic_sigma=0)


# ------------------------------------------------------------ the graph on real clusters

@pytest.mark.cluster
def test_same_bytes_whatever_workers_and_partitions(
    tiny_store: Path, local_client: Client, source: tuple[np.ndarray, np.ndarray]
) -> None:
    n, seed = 500, 11
    with connect(ClusterSpec(n_workers=1, dashboard_address=":0")) as one_worker:
        one = expand_store(one_worker, ExpandSpec(store=tiny_store, n=n, seed=seed,
                                                  partition_rows=64, group="one"))
    two = expand_store(local_client, ExpandSpec(store=tiny_store, n=n, seed=seed,
                                                partition_rows=200, group="two"))
    assert (one.partitions, two.partitions) == (8, 3)
    images_1, labels_1, attrs = read_group(tiny_store, "one")
    images_2, labels_2, _ = read_group(tiny_store, "two")
    assert images_1.shape == (n, 784) and images_1.dtype == np.uint8
    assert images_1.tobytes() == images_2.tobytes()
    assert labels_1.tobytes() == labels_2.tobytes()
    reference, reference_labels = generate_partition(*source, 0, n, seed, DeformParams())
    np.testing.assert_array_equal(images_1, reference)
    np.testing.assert_array_equal(labels_1, reference_labels)
    assert attrs["format"] == EXPANDED_FORMAT
    assert (attrs["n"], attrs["seed"], attrs["source"], attrs["n_source"]) == (n, seed, "test", 150)
    assert attrs["deformation"] == DeformParams().as_dict()
    assert one.group_bytes > 0 and one.store_bytes > one.group_bytes
    assert not [p.name for p in tiny_store.iterdir() if ".tmp-" in p.name]


@pytest.mark.cluster
def test_the_expand_graph_runs_under_its_own_span(tiny_store: Path, local_client: Client) -> None:
    expand_store(local_client, ExpandSpec(store=tiny_store, n=40, seed=3, partition_rows=16,
                                          group="spanned"))

    def span_names(dask_scheduler: Any) -> list[tuple[str, ...]]:
        return [span.name for span in dask_scheduler.extensions["spans"].spans.values()]

    assert ("mnist-dist-expand", "generate-and-write") in local_client.run_on_scheduler(span_names)


@pytest.mark.cluster
def test_reuse_refuse_force(tiny_store: Path, local_client: Client) -> None:
    spec = ExpandSpec(store=tiny_store, n=40, seed=1, partition_rows=16)
    assert not expand_store(local_client, spec).reused
    assert expand_store(local_client, spec).reused
    other = ExpandSpec(store=tiny_store, n=40, seed=2, partition_rows=16)
    with pytest.raises(StoreExistsError, match="seed: 1 != requested 2.*pass --force"):
        expand_store(local_client, other)
    forced = ExpandSpec(store=tiny_store, n=40, seed=2, partition_rows=16, force=True)
    assert not expand_store(local_client, forced).reused
    assert read_group(tiny_store, "expanded")[2]["seed"] == 2


def test_misaligned_partitions_and_full_disks_are_refused_before_any_work(
    tiny_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="multiple of the 8-row chunks"):
        plan_expand(ExpandSpec(store=tiny_store, n=100, partition_rows=60))
    plan = plan_expand(ExpandSpec(store=tiny_store, n=100_000))
    assert plan.partition_rows % CHUNK_ROWS == 0
    # ~240 B/digit compressed + 1 B label + two 4 KiB file blocks per 8-row chunk, x1.25.
    assert 100_000 * 1265 < plan.needed_bytes - 64 * 2**20 < 100_000 * 2500
    with pytest.raises(DiskSpaceError, match=r"10,000,000,000 expanded digits need about"):
        plan_expand(ExpandSpec(store=tiny_store, n=10_000_000_000))
    assert sorted(p.name for p in tiny_store.iterdir()) == ["test", "train", "zarr.json"]


@pytest.mark.cluster
def test_the_expanded_split_scores_like_any_other(
    tiny_store: Path, local_client: Client, tmp_path: Path
) -> None:
    expand_store(local_client, ExpandSpec(store=tiny_store, n=96, partition_rows=32))
    models = ModelRef.from_directory(write_model_dir(tmp_path / "models"))
    job = ScoreJob(store=str(tiny_store), run_dir=tmp_path / "run", models=models,
                   split="expanded", partition_rows=32)
    result = score_graph(local_client, job, show_progress=False)
    assert result.n_images == 96 and result.partitions == 3
    labels = zarr.open_group(str(tiny_store), mode="r")["expanded/labels"][:]
    for confusion in result.confusion.values():
        np.testing.assert_array_equal(confusion.sum(axis=1), np.bincount(labels, minlength=10))


# ------------------------------------------------------------ jobs and the scale benchmark

@pytest.fixture
def npz(tmp_path: Path, vendored: RawMnist) -> Path:
    """A small `.npz` source of 50 train and 40 test real digits."""
    path = tmp_path / "small.npz"
    np.savez(path, x_train=vendored.x_train[:50], y_train=vendored.y_train[:50],
             x_test=vendored.x_test[:40], y_test=vendored.y_test[:40])
    return path


def prepare_args(npz: Path, store: Path) -> list[str]:
    return ["--source", str(npz), "--store", str(store), "--chunk-rows", "10",
            "--split", "canonical"]


def test_prepare_refuses_a_full_disk_in_one_line(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "m.zarr"
    code = prepare.main([*prepare_args(npz, store), "--expand", "10000000000"])
    err = capsys.readouterr().err
    assert code == 10
    assert err.count("\n") == 1
    assert err.startswith(f"error: {store}: 10,000,000,000 expanded digits need about")
    assert err.rstrip().endswith("free space or ask for fewer digits")
    assert sorted(p.name for p in store.iterdir()) == ["test", "train", "zarr.json"]


@pytest.mark.cluster
def test_prepare_expand_as_a_subprocess(npz: Path, tmp_path: Path) -> None:
    store = tmp_path / "m.zarr"
    command = [sys.executable, "-m", "jobs.prepare", *prepare_args(npz, store),
               "--expand", "120", "--workers", "1", "--partition-mb", "0.01"]
    done = subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"expanded {store}/expanded: n=120 in 12 partitions of 10 rows" in done.stdout
    assert "B/digit" in done.stdout
    images, _, attrs = read_group(store, "expanded")
    assert images.shape == (120, 784) and attrs["n"] == 120 and attrs["seed"] == 0


def test_rss_sampler_and_spread() -> None:
    start = start_rss_sampler(0.01)
    ballast = np.ones(64 * 2**20 // 8)
    seen = stop_rss_sampler()
    assert seen["peak"] >= start + ballast.nbytes // 2
    assert start // 2 < seen["median"] <= seen["peak"]
    assert stop_rss_sampler() == {}
    assert spread([9.0, 10.0, 11.5]) == pytest.approx(0.15)


@pytest.mark.cluster
def test_scale_benchmark_writes_its_figures(
    tiny_store: Path, local_client: Client, tmp_path: Path
) -> None:
    spec = ScaleSpec(
        store=tiny_store, models=write_model_dir(tmp_path / "models"), work=tmp_path / "scale",
        mlp_sizes=(64, 128), knn_sizes=(64,), score_partition_mb=0.2, cleanup=True,
        cluster=ClusterSpec(scheduler=local_client.scheduler.address),
    )
    report = run_scale(spec)
    assert json.loads(spec.report_path.read_text()) == json.loads(json.dumps(report))
    assert [g["n"] for g in report["generation"]] == [64, 128]
    assert [(r["model"], r["n"]) for r in report["scoring"]] == [
        ("mlp", 64), ("knn", 64), ("mlp", 128)]
    for run in report["scoring"]:
        assert run["images_per_s"] > 0 and run["peak_worker_rss_mb"] > 50
        assert len(run["per_class_accuracy"]) == 10
        assert run["partition_rows"] % CHUNK_ROWS == 0
    assert set(report["summary"]) == {"mlp", "knn"}
    assert report["store_removed"] and not (tmp_path / "scale" / "scale.zarr").exists()
