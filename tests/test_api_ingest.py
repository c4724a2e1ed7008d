"""The ingest job from Python: `md.ingest(spec, client=...)` on the caller's own client, its
`IngestResult` (also as HTML in a notebook) and `IngestSpec`'s checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client, get_task_stream
from PIL import Image

import mnist_dist as md
from mnist_dist.errors import SpecError
from mnist_dist.report.formats import count


@pytest.fixture()
def store(tmp_path: Path, small_store: Path) -> Path:
    """A private copy of the small store (3,000 train / 600 test digits, 250-row chunks)."""
    copy = tmp_path / "store" / "mnist.zarr"
    shutil.copytree(small_store, copy)
    return copy


def test_array_sources_use_the_callers_client_and_leave_it_open(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    images = np.asarray(zarr.open_array(f"{store}/test/images", mode="r")[:300])
    labels = np.asarray(zarr.open_array(f"{store}/test/labels", mode="r")[:300])
    np.save(tmp_path / "digits.npy", images.reshape(-1, 28, 28))
    np.save(tmp_path / "labels.npy", labels.astype(np.int64))
    spec = md.IngestSpec(sources=(str(tmp_path / "digits.npy"),), split="api", store=str(store),
                         labels=tmp_path / "labels.npy")
    with get_task_stream(client=local_client) as stream:
        result = md.ingest(spec, client=local_client)
    assert stream.data  # the split was written by the caller's workers
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    assert isinstance(result, md.IngestResult)
    assert (result.n_images, result.n_failed, result.failures) == (300, 0, ())
    assert result.location == f"{store.resolve()}/api" and result.images_per_second > 0
    assert np.array_equal(zarr.open_array(f"{result.location}/images", mode="r")[:], images)
    assert np.array_equal(zarr.open_array(f"{result.location}/labels", mode="r")[:], labels)


def test_the_result_renders_its_figures_and_escapes_file_names(
    tmp_path: Path, store: Path, local_client: Client,
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    digits = np.asarray(zarr.open_array(f"{store}/test/images", mode="r")[:12])
    for i, digit in enumerate(digits):
        Image.fromarray(255 - digit.reshape(28, 28)).save(folder / f"{i % 10}_{i:03d}.png")
    hostile = folder / "3_<script>alert(1)<script>.png"  # no "/" in a file name
    hostile.write_bytes(b"not an image")
    result = md.ingest(md.IngestSpec(sources=(str(folder),), split="scans", store=store,
                                     labels_from_names=True, partition_files=5),
                       client=local_client)
    assert local_client.status == "running"
    assert (result.n_images, result.n_failed) == (12, 1)
    assert result.failures[0][0] == str(hostile)
    page = result._repr_html_()
    assert f"ingest: {count(result.n_images)} images into <code>{result.location}</code>" in page
    assert f"<td>{count(result.n_failed)}</td>" in page
    assert f"{result.images_per_second:,.0f}" in page
    assert "<script>" not in page and "3_&lt;script&gt;alert(1)&lt;script&gt;.png" in page
    assert result.failures[0][1] in page  # the reason, as the CLI prints it


def test_the_html_escapes_a_hostile_location() -> None:
    result = md.IngestResult(location="/data/<script>x</script>.zarr/new", n_images=14_000,
                             n_failed=0, failures=(), seconds=2.0)
    page = result._repr_html_()
    assert "14,000" in page and "7,000" in page  # images, images/s
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;.zarr/new" in page


@pytest.mark.parametrize("kwargs,message", [
    ({"sources": (), "split": "new"}, "`sources` must name one or more"),
    ({"sources": ("x.npy",), "split": "../new"}, "`split` must be a plain group name"),
    ({"sources": ("x.npy",), "split": "new", "pixel_range": 100}, "`pixel_range` must be 1, 255"),
    ({"sources": ("x.npy",), "split": "new", "partition_files": 0},
     "`partition_files` must be an integer >= 1; got 0 instead"),
    ({"sources": ("x.npy",), "split": "new", "labels": "y.csv", "labels_from_names": True},
     "exclude each other"),
    ({"sources": ("x.npy",), "split": "new", "cluster": "tcp://h:8786"},
     "`cluster` must be a mnist_dist.cluster.ClusterSpec"),
])
def test_a_bad_spec_is_a_spec_error_naming_the_field(kwargs: dict[str, object], message: str
                                                      ) -> None:
    with pytest.raises(SpecError, match=message):
        md.IngestSpec(**kwargs)  # type: ignore[arg-type]


def test_one_source_and_a_labels_string_are_accepted_as_python_callers_give_them() -> None:
    spec = md.IngestSpec(sources=Path("digits.npy"), split="new",  # type: ignore[arg-type]
                         labels="labels.npy")  # type: ignore[arg-type]
    assert spec.sources == ("digits.npy",) and spec.labels == Path("labels.npy")
