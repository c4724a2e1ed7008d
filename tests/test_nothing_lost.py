"""Nothing lost, nothing wrong: a score run never deletes or overwrites
what it did not create, never resumes over changed or lost data, never counts a marker that is
not its own, and an absent chunk is told apart from a lost one. Jobs run as users run them
(`jobs.<name>.main(argv)`), on the session's LocalCluster."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import export as export_job
from jobs import ingest as ingest_job
from jobs import score as score_job
from mnist_dist.publish import replace_folder
from tests.test_cluster_processes import start_job, wait_for_markers

FAST = ["--no-progress", "--batch-sizes", "1", "--sweep-seconds", "0.02"]
OUTPUTS = ("knn", "mlp", "mlp_probabilities", "knn_neighbours", "knn_distances")


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every file under `folder` (bytes) and every link (its target), by relative path."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = path.read_bytes()
    return found


def run(job: object, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """(exit code, stderr lines) of `job.main(argv)`."""
    capsys.readouterr()
    code = job.main(argv)  # type: ignore[attr-defined]
    return code, capsys.readouterr().err.strip().splitlines()


def one_error(errors: list[str], *words: str) -> None:
    """Exactly one `error:` line, holding each of `words`; no traceback."""
    lines = [line for line in errors if line.startswith("error:")]
    assert len(lines) == 1 and not any("Traceback" in line for line in errors), errors
    for word in words:
        assert word in lines[0], lines[0]


def predictions(location: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(location), mode="r")
    return {name: group[name][:] for name in OUTPUTS}


@pytest.fixture()
def store(small_store: Path, tmp_path: Path) -> Path:
    """A copy of the small store (600 test digits in 250-row chunks) this test may change."""
    return Path(shutil.copytree(small_store, tmp_path / "mnist.zarr"))


@pytest.fixture()
def args(store: Path, small_models: Path, local_client: Client) -> list[str]:
    """jobs.score arguments of a 6-partition run of the test split on the session cluster."""
    return ["--store", str(store), "--models", str(small_models), "--partition-rows", "100",
            "--scheduler", local_client.scheduler.address, *FAST]


def interrupted(out: Path, lost: int = 1) -> None:
    """Make a finished run look interrupted: no report yet, the last `lost` partitions unfinished."""
    for name in ("report.json", "report.html", "report.md"):
        (out / name).unlink()
    for marker in sorted((out / "partitions").glob("*.json"))[-lost:] if lost else []:
        marker.unlink()


def users_things(tmp_path: Path) -> dict[str, Path]:
    """A user's folder (a file and a subfolder in it), a file, and a link to a file."""
    folder = tmp_path / "user" / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    (tmp_path / "user" / "file.txt").write_text("mine too")
    (tmp_path / "user" / "link").symlink_to(tmp_path / "user" / "file.txt")
    return {"folder": folder, "file": tmp_path / "user" / "file.txt",
            "link": tmp_path / "user" / "link"}


@pytest.mark.parametrize("kind", ["folder", "file", "link"])
def test_predictions_at_a_users_folder_file_or_link_are_refused_and_kept(
    kind: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    target = users_things(tmp_path)[kind]
    before = tree(tmp_path / "user")
    code, errors = run(score_job, [*args, "--out", str(tmp_path / "run"),
                                   "--predictions", str(target)], capsys)
    assert code == 5, errors
    one_error(errors, str(target), "belong to no run")
    assert tree(tmp_path / "user") == before
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("where", ["out", "above out", "store", "inside store", "models"])
def test_predictions_on_the_run_folder_the_store_or_the_models_are_refused(
    where: str, args: list[str], store: Path, small_models: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "runs" / "run"
    target = {"out": out, "above out": out.parent, "store": store,
              "inside store": store / "predictions", "models": small_models}[where]
    watched = {"store": store, "models": small_models}
    before = {name: tree(path) for name, path in watched.items()}
    code, errors = run(score_job, [*args, "--out", str(out), "--predictions", str(target)],
                       capsys)
    assert code == 5, errors
    one_error(errors, str(target))
    assert {name: tree(path) for name, path in watched.items()} == before
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("name", ["notes.txt", "predictions.zarr", "dask-performance.html",
                                  "partitions"])
def test_an_out_holding_a_users_files_is_refused_and_kept(
    name: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "elsewhere.txt").write_text("mine")
    if name == "partitions":
        (out / name).mkdir()
        (out / name / "000000.json").write_text("{}")
    else:
        (out / name).symlink_to(tmp_path / "elsewhere.txt")
    before = tree(tmp_path)
    code, errors = run(score_job, [*args, "--out", str(out), "--performance-report"], capsys)
    assert code == 5, errors
    one_error(errors, str(out), name, "no run created")
    assert tree(tmp_path) == before


def test_resume_after_the_split_was_replaced_is_refused(
    args: list[str], store: Path, local_client: Client, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digits = zarr.open_group(str(store), mode="r")["test/images"][:]
    np.save(tmp_path / "new.npy", digits)
    np.save(tmp_path / "other.npy", digits[::-1].copy())
    ingest = ["--store", str(store), "--split", "new", "--scheduler",
              local_client.scheduler.address]
    assert run(ingest_job, [str(tmp_path / "new.npy"), *ingest], capsys)[0] == 0
    out = tmp_path / "run"
    assert run(score_job, [*args, "--split", "new", "--out", str(out)], capsys)[0] == 0
    interrupted(out, lost=3)
    code, errors = run(ingest_job, [str(tmp_path / "other.npy"), *ingest, "--force"], capsys)
    assert code == 0, errors
    before = predictions(out / "predictions.zarr")
    code, errors = run(score_job, [*args, "--split", "new", "--out", str(out), "--resume"],
                       capsys)
    assert code == 5, errors
    one_error(errors, "changed since the run started", "choose a new --out")
    after = predictions(out / "predictions.zarr")
    assert all(np.array_equal(before[name], after[name]) for name in OUTPUTS)


@pytest.mark.parametrize("loss", ["the whole store", "one chunk"])
def test_resume_scores_again_the_partitions_whose_predictions_were_lost(
    loss: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert run(score_job, [*args, "--out", str(out)], capsys)[0] == 0
    expected = predictions(out / "predictions.zarr")
    interrupted(out, lost=1)
    if loss == "the whole store":
        shutil.rmtree(out / "predictions.zarr")
    else:
        (out / "predictions.zarr" / "mlp_probabilities" / "c" / "2" / "0").unlink()
    code, errors = run(score_job, [*args, "--out", str(out), "--resume"], capsys)
    assert code == 0, errors
    found = predictions(out / "predictions.zarr")
    for name in OUTPUTS:
        np.testing.assert_array_equal(found[name], expected[name])
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["partitions_computed"] == (6 if loss == "the whole store" else 2)
    for model in report["models"].values():
        assert np.sum(model["confusion"]) == 600


def test_export_refuses_predictions_with_a_lost_chunk(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert run(score_job, [*args, "--out", str(out)], capsys)[0] == 0
    (out / "predictions.zarr" / "knn" / "c" / "3").unlink()
    code, errors = run(export_job, [str(out), "--format", "csv"], capsys)
    assert code == 3, errors
    one_error(errors, "knn", "c/3", "lost")
    assert not (out / "predictions.csv").exists()


def marker_of_another_run(out: Path, args: list[str], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> bytes:
    """Partition 0's marker of another run of the same data."""
    other = tmp_path / "other"
    assert run(score_job, [*args, "--out", str(other)], capsys)[0] == 0
    return (other / "partitions" / "000000.json").read_bytes()


@pytest.mark.parametrize("stray", ["out of range", "another name", "another run's",
                                   "empty", "index not a number", "counts doubled"])
def test_a_marker_that_is_not_this_runs_is_refused_never_counted(
    stray: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert run(score_job, [*args, "--out", str(out)], capsys)[0] == 0
    interrupted(out, lost=1)
    folder = out / "partitions"
    first = json.loads((folder / "000000.json").read_text())
    name, content = "000000.json", b""
    if stray == "out of range":
        name, content = "000006.json", (folder / "000000.json").read_bytes()
    elif stray == "another name":
        name, content = "000000 copy.json", (folder / "000000.json").read_bytes()
    elif stray == "another run's":
        content = marker_of_another_run(out, args, tmp_path, capsys)
    elif stray == "empty":
        content = b"{}"
    elif stray == "index not a number":
        content = json.dumps({**first, "index": "two"}).encode()
    else:
        doubled = {m: (np.array(c) * 2).tolist() for m, c in first["confusion"].items()}
        content = json.dumps({**first, "confusion": doubled}).encode()
    (folder / name).write_bytes(content)
    code, errors = run(score_job, [*args, "--out", str(out), "--resume"], capsys)
    assert code == 3, errors
    one_error(errors, name)
    assert not (out / "report.json").exists()


def test_a_resumed_run_reports_the_rate_of_what_it_scored_and_its_report_replaces_a_link(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    assert run(score_job, [*args, "--out", str(out)], capsys)[0] == 0
    interrupted(out, lost=1)
    (tmp_path / "precious.html").write_text("mine")
    (out / "dask-performance.html").symlink_to(tmp_path / "precious.html")
    code, errors = run(score_job, [*args, "--out", str(out), "--resume",
                                   "--performance-report"], capsys)
    assert code == 0, errors
    assert (tmp_path / "precious.html").read_text() == "mine"
    written = out / "dask-performance.html"
    assert not written.is_symlink() and b"<html" in written.read_bytes()[:4000].lower()
    timing = json.loads((out / "report.json").read_text())["timing"]
    assert timing["images_computed"] == 100
    assert timing["images_per_second"] == pytest.approx(100 / timing["wall_seconds"])


def test_the_split_replaced_while_it_is_scored_fails_the_run(
    store: Path, small_models: Path, local_client: Client, tmp_path: Path,
) -> None:
    other = Path(shutil.copytree(store / "test", tmp_path / "other-test"))
    images = zarr.open_group(str(store), mode="r")["test/images"][:]
    zarr.open_group(str(tmp_path / "other-test"), mode="r+")["images"][:] = images[::-1]
    out = tmp_path / "run"
    job = start_job("--store", str(store), "--models", str(small_models), "--partition-rows",
                    "2", "--out", str(out), "--scheduler", local_client.scheduler.address,
                    *FAST)
    wait_for_markers(out, 3, job)
    replace_folder(str(other), str(store / "test"), marker="zarr.json")  # as ingest --force
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 3, stderr[-3000:]
    one_error(stderr.splitlines(), "changed while it was being scored")
    assert not (out / "report.json").exists()


def sorted_split(store: Path, name: str, every_chunk: bool) -> None:
    """Split `name`: the test digits sorted by label, rows 100-149 blank, in 50-row chunks,
    written by zarr-python's defaults (chunks equal to the fill value left out) or not."""
    root = zarr.open_group(str(store), mode="a")
    labels = root["test/labels"][:]
    order = np.argsort(labels, kind="stable")
    images = root["test/images"][:][order]
    images[100:150] = 0
    group = root.create_group(name)
    config = {"write_empty_chunks": every_chunk}
    group.create_array("images", shape=images.shape, chunks=(50, 784), dtype="uint8",
                       config=config)[:] = images
    group.create_array("labels", shape=labels.shape, chunks=(50,), dtype="uint8",
                       config=config)[:] = labels[order]


def test_a_users_split_whose_chunks_equal_the_fill_value_is_scored(
    args: list[str], store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    sorted_split(store, "sparse", every_chunk=False)
    sorted_split(store, "dense", every_chunk=True)
    sparse = zarr.open_group(str(store), mode="r")["sparse"]
    assert sparse["labels"].nchunks_initialized < sparse["labels"].nchunks  # digit 0 first
    assert sparse["images"].nchunks_initialized < sparse["images"].nchunks  # a blank run
    found = {}
    for split in ("sparse", "dense"):
        out = tmp_path / split
        code, errors = run(score_job, [*args, "--split", split, "--out", str(out)], capsys)
        assert code == 0, errors
        found[split] = predictions(out / "predictions.zarr")
    for name in OUTPUTS:
        np.testing.assert_array_equal(found["sparse"][name], found["dense"][name])


def test_an_ingested_split_keeps_every_chunk_and_a_lost_one_is_refused(
    args: list[str], store: Path, local_client: Client, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = zarr.open_group(str(store), mode="r")
    order = np.argsort(root["test/labels"][:], kind="stable")
    np.save(tmp_path / "x.npy", root["test/images"][:][order])
    np.save(tmp_path / "y.npy", np.zeros(600, np.uint8))  # every chunk equals the fill value
    code, errors = run(ingest_job, [str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                                    "--store", str(store), "--split", "sorted", "--scheduler",
                                    local_client.scheduler.address], capsys)
    assert code == 0, errors
    labels = zarr.open_group(str(store), mode="r")["sorted/labels"]
    assert labels.nchunks_initialized == labels.nchunks == 3  # chunks of zeros written too
    assert run(score_job, [*args, "--split", "sorted", "--out", str(tmp_path / "a")],
               capsys)[0] == 0
    (store / "sorted" / "labels" / "c" / "1").unlink()
    code, errors = run(score_job, [*args, "--split", "sorted", "--out", str(tmp_path / "b")],
                       capsys)
    assert code == 3, errors
    one_error(errors, "sorted/labels is missing 1 chunk(s): c/1")
