"""Every output location of every job but `jobs.score`'s run folder is refused when it holds
anything the job did not create.

For each location a user's file, a folder holding a user's file and a link to a user's file
elsewhere are put there; the job, run as a user runs it, must exit 5 (`StoreExistsError`) with
one `error:` line naming the location, no traceback, before any work (no cluster, no training),
and leave every byte of the user's things where they were. `--force` replaces only the job's
own kind of output (a store, a model folder, a split), never anything else. `jobs.score`'s
--out, --predictions and --performance-report are covered by the score job's own tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs import bench, export, ingest, prepare, scale, train
from jobs import score as score_job
from mnist_dist.bench import run as bench_run
from mnist_dist.bench.scale import prepare_bench_store
from mnist_dist.errors import EXIT_CODES, StoreExistsError
from tests.test_export import make_run

ROOT = Path(__file__).resolve().parent.parent
EXISTS = EXIT_CODES[StoreExistsError]
USER_BYTES = b"the user's own bytes\n"
KINDS = ("file", "folder", "link")  # a user's file, a folder holding one, a link to one


@dataclass(frozen=True)
class Planted:
    """A user's thing at `location`: every user file's bytes, and the link's target if any."""

    location: Path
    files: dict[Path, bytes]
    link_target: Path | None

    def intact(self) -> None:
        """Every user file still there, byte for byte; the link still a link to its target."""
        for path, data in self.files.items():
            assert path.read_bytes() == data, path
        if self.link_target is not None:
            assert self.location.is_symlink()
            assert Path(os.readlink(self.location)) == self.link_target


def plant(kind: str, location: Path, elsewhere: Path, name: str = "notes.txt") -> Planted:
    """Put a user's `kind` of thing at `location`; the folder's file is called `name`."""
    location.parent.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        location.write_bytes(USER_BYTES)
        return Planted(location, {location: USER_BYTES}, None)
    if kind == "folder":
        location.mkdir()
        (location / name).write_bytes(USER_BYTES)
        return Planted(location, {location / name: USER_BYTES}, None)
    elsewhere.mkdir(parents=True, exist_ok=True)
    target = elsewhere / f"user-{location.name}"
    target.write_bytes(USER_BYTES)
    location.symlink_to(target)
    return Planted(location, {target: USER_BYTES}, target)


def listing(folder: Path) -> list[str]:
    """Every path under `folder`, relative (links not followed): what a job left behind."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused_in_process(run: Callable[[], int], capsys: pytest.CaptureFixture[str],
                       planted: Planted, named: Path | str | None = None) -> None:
    """Run a job's `main`, then check the refusal contract (see the module docstring)."""
    watched = planted.location.parent
    before = listing(watched)
    code = run()
    check_refusal(code, capsys.readouterr().err, str(named or planted.location))
    planted.intact()
    assert listing(watched) == before, "the job left something behind"


def check_refusal(code: int, err: str, named: str) -> None:
    """Exit 5, exactly one `error:` line, naming `named`, and no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == EXISTS, err
    assert len(errors) == 1, err
    assert named in errors[0], errors[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 50/20 random-digit MNIST source, as `jobs.prepare --source` reads it."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("source") / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 50).astype(np.uint8),
             x_test=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 20).astype(np.uint8))
    return path


def prepare_args(tiny_npz: Path, store: Path) -> list[str]:
    """The flags of `jobs.prepare` that build the tiny store at `store`."""
    return ["--source", str(tiny_npz), "--store", str(store), "--chunk-rows", "16",
            "--split", "canonical"]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_npz: Path) -> Path:
    """The store `jobs.prepare` builds from `tiny_npz` (50 train / 20 test, 16-row chunks)."""
    store = tmp_path_factory.mktemp("tiny") / "mnist.zarr"
    assert prepare.main(prepare_args(tiny_npz, store)) == 0
    return store


@pytest.fixture()
def store(tmp_path: Path, tiny_store: Path) -> Path:
    """A private copy of the tiny store."""
    copy = tmp_path / "data" / "mnist.zarr"
    shutil.copytree(tiny_store, copy)
    return copy


@pytest.fixture()
def digits_npy(tmp_path: Path) -> Path:
    """Eight random digits (8, 784) uint8, an `jobs.ingest` source."""
    path = tmp_path / "digits.npy"
    np.save(path, np.random.default_rng(1).integers(0, 256, (8, 784), dtype=np.uint8))
    return path


# --- jobs.prepare --store, and the expanded split it writes in the store -----------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", KINDS)
def test_prepare_never_replaces_what_is_not_a_store(
    kind: str, force: bool, tmp_path: Path, tiny_npz: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted = plant(kind, tmp_path / "out" / "mnist.zarr", tmp_path / "elsewhere")
    args = prepare_args(tiny_npz, planted.location) + (["--force"] if force else [])
    refused_in_process(lambda: prepare.main(args), capsys, planted)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", KINDS)
def test_prepare_expand_never_replaces_what_is_not_an_expanded_split(
    kind: str, force: bool, store: Path, tmp_path: Path, tiny_npz: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted = plant(kind, store / "expanded", tmp_path / "elsewhere")
    args = [*prepare_args(tiny_npz, store), "--expand", "32", "--workers", "1",
            *(["--force"] if force else [])]
    refused_in_process(lambda: prepare.main(args), capsys, planted)


def test_prepare_reusing_a_store_leaves_a_users_file_in_it(store: Path, tiny_npz: Path) -> None:
    (store / "notes.txt").write_bytes(USER_BYTES)
    assert prepare.main(prepare_args(tiny_npz, store)) == 0
    assert (store / "notes.txt").read_bytes() == USER_BYTES


# --- jobs.train --models -----------------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", KINDS)
def test_train_never_replaces_what_is_not_a_model_folder(
    kind: str, force: bool, tmp_path: Path, tiny_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    planted = plant(kind, tmp_path / "out" / "models", tmp_path / "elsewhere")
    args = ["--store", str(tiny_store), "--models", str(planted.location), "--epochs", "1",
            *(["--force"] if force else [])]
    refused_in_process(lambda: train.main(args), capsys, planted)


def test_train_force_never_deletes_a_users_file_in_a_model_folder(
    tmp_path: Path, tiny_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "manifest.json").write_text("{}")
    planted = Planted(models, {models / "manifest.json": b"{}"}, None)
    (models / "notes.txt").write_bytes(USER_BYTES)
    planted.files[models / "notes.txt"] = USER_BYTES
    args = ["--store", str(tiny_store), "--models", str(models), "--epochs", "1", "--force"]
    refused_in_process(lambda: train.main(args), capsys, planted)


# --- jobs.ingest: the split NAME inside --store --------------------------------------------------


def plant_split_with_user_file(store: Path, name: str) -> Planted:
    """A real split group at STORE/NAME (a copy of test/) with a user's file added to it."""
    shutil.copytree(store / "test", store / name)
    (store / name / "notes.txt").write_bytes(USER_BYTES)
    return Planted(store / name, {store / name / "notes.txt": USER_BYTES}, None)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", [*KINDS, "split-holding-a-file"])
def test_ingest_never_replaces_what_is_not_a_split(
    kind: str, force: bool, store: Path, tmp_path: Path, digits_npy: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if kind == "split-holding-a-file":
        planted = plant_split_with_user_file(store, "mine")
    else:
        planted = plant(kind, store / "mine", tmp_path / "elsewhere")
    args = [str(digits_npy), "--split", "mine", "--store", str(store), "--workers", "1",
            *(["--force"] if force else [])]
    refused_in_process(lambda: ingest.main(args), capsys, planted)


@pytest.mark.parametrize("split", ["train", "test"])
def test_ingest_force_never_replaces_a_prepared_split(
    split: str, store: Path, digits_npy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {p: p.read_bytes() for p in (store / split).rglob("*") if p.is_file()}
    planted = Planted(store / split, files, None)
    args = [str(digits_npy), "--split", split, "--store", str(store), "--workers", "1", "--force"]
    refused_in_process(lambda: ingest.main(args), capsys, planted,
                       named=f"{store}/{split}")


def test_ingest_as_a_user_runs_it_keeps_a_users_folder(
    store: Path, tmp_path: Path, digits_npy: Path
) -> None:
    planted = plant("folder", store / "mine", tmp_path / "elsewhere")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", str(digits_npy), "--split", "mine",
         "--store", str(store), "--workers", "1", "--force"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, check=False,
    )
    check_refusal(done.returncode, done.stderr, str(store / "mine"))
    planted.intact()


# --- jobs.export --out, and its default RUN/predictions.<format> --------------------------------


@pytest.mark.parametrize("where", ["--out", "default"])
@pytest.mark.parametrize("kind", KINDS)
def test_export_never_replaces_an_existing_output(
    kind: str, where: str, tmp_path: Path, tiny_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    make_run(run, tiny_store, n=20)
    location = tmp_path / "out" / "table.csv" if where == "--out" else run / "predictions.csv"
    planted = plant(kind, location, tmp_path / "elsewhere")
    args = [str(run), "--format", "csv", *(["--out", str(location)] if where == "--out" else [])]
    refused_in_process(lambda: export.main(args), capsys, planted)


# --- jobs.scale: --work (its benchmark store and expanded splits) and --out ---------------------


def scale_args(tmp_path: Path, tiny_store: Path, work: Path, *extra: str) -> list[str]:
    """`jobs.scale` on the tiny store, one size, models that are never reached."""
    return ["--store", str(tiny_store), "--models", str(tmp_path / "no-models"),
            "--work", str(work), "--mlp-sizes", "16", "--knn-sizes", "none", *extra]


SCALE_LOCATIONS = {
    "work": lambda work: work,
    "bench-store": lambda work: work / "scale.zarr",
    "default-report": lambda work: work / "scale.json",
    "out-report": lambda work: work.parent / "report" / "scale.json",
}


@pytest.mark.parametrize(("location", "kind"), [
    (location, kind) for location in sorted(SCALE_LOCATIONS) for kind in KINDS
    if (location, kind) != ("work", "folder")  # WORK is a folder: the job adds only its names
])
def test_scale_never_replaces_what_it_did_not_make(
    location: str, kind: str, tmp_path: Path, tiny_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "scale"
    planted = plant(kind, SCALE_LOCATIONS[location](work), tmp_path / "elsewhere")
    out = ["--out", str(planted.location)] if location == "out-report" else []
    args = scale_args(tmp_path, tiny_store, work, *out)
    refused_in_process(lambda: scale.main(args), capsys, planted)


@pytest.mark.parametrize("kind", KINDS)
def test_scale_never_replaces_what_is_not_an_expanded_split(
    kind: str, tmp_path: Path, tiny_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "scale"
    work.mkdir()
    shutil.copytree(tiny_store, work / "scale.zarr")
    planted = plant(kind, work / "scale.zarr" / "expanded-16", tmp_path / "elsewhere")
    args = scale_args(tmp_path, tiny_store, work)
    refused_in_process(lambda: scale.main(args), capsys, planted)


def test_scale_bench_store_copy_never_deletes_a_users_folder_beside_it(
    tmp_path: Path, tiny_store: Path
) -> None:
    planted = plant("folder", tmp_path / "scale" / "scale.zarr.tmp", tmp_path / "elsewhere")
    prepare_bench_store(tiny_store, tmp_path / "scale" / "scale.zarr")
    planted.intact()
    assert sorted(p.name for p in (tmp_path / "scale").iterdir()) == ["scale.zarr",
                                                                       "scale.zarr.tmp"]


# --- jobs.bench --out DIR (bench.json, bench.txt, bench.html) and --history ---------------------


class ReachedWork(BaseException):  # passes the job boundary, which turns Exceptions into a line
    """Raised where the bench would start its work: the output checks passed."""


@pytest.fixture()
def no_bench_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop `jobs.bench` where its work would begin (building inputs, starting a cluster)."""
    def stop(spec: bench_run.BenchSpec) -> None:
        raise ReachedWork(str(spec.out))
    monkeypatch.setattr(bench_run, "ensure_inputs", stop)


def bench_args(tmp_path: Path, tiny_store: Path, out: Path, *extra: str) -> list[str]:
    """`jobs.bench --quick` on the tiny store."""
    return ["--quick", "--store", str(tiny_store), "--models", str(tmp_path / "no-models"),
            "--out", str(out), *extra]


BENCH_LOCATIONS = ("out", "bench.json", "bench.txt", "bench.html", "history")


@pytest.mark.usefixtures("no_bench_work")
@pytest.mark.parametrize(("location", "kind"), [
    (location, kind) for location in BENCH_LOCATIONS for kind in KINDS
    if (location, kind) != ("out", "folder")  # OUT is a folder: the bench adds only its names
])
def test_bench_never_replaces_what_it_did_not_make(
    location: str, kind: str, tmp_path: Path, tiny_store: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bench"
    where = {"out": out, "history": tmp_path / "history" / "history.jsonl"}
    planted = plant(kind, where.get(location, out / location), tmp_path / "elsewhere")
    history = ["--history", str(planted.location)] if location == "history" else []
    args = bench_args(tmp_path, tiny_store, out, *history)
    refused_in_process(lambda: bench.main(args), capsys, planted)


@pytest.mark.usefixtures("no_bench_work")
def test_bench_reuses_the_outputs_and_history_of_an_earlier_run(
    tmp_path: Path, tiny_store: Path
) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    record = json.dumps({"schema": bench_run.SCHEMA, "figures": {}})
    (out / "bench.json").write_text(record)
    (out / "bench.txt").write_text("table\n")
    (out / "bench.html").write_text("<html></html>")
    (tmp_path / "history.jsonl").write_text(record + "\n" + record + "\n")
    with pytest.raises(ReachedWork):
        bench.main(bench_args(tmp_path, tiny_store, out, "--history",
                              str(tmp_path / "history.jsonl")))


# --- jobs.score --images --save-preprocessed DIR -------------------------------------------------


def scan(folder: Path) -> Path:
    """A user's scanned digit `7_a.png` in a new `folder` (the run would save `7_a.png`)."""
    folder.mkdir()
    pixels = np.zeros((40, 40), np.uint8)
    pixels[8:32, 18:22] = 255
    Image.fromarray(pixels).save(folder / "7_a.png")
    return folder


@pytest.mark.parametrize("kind", [*KINDS, "png-link"])
def test_save_preprocessed_never_replaces_what_it_did_not_make(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans = scan(tmp_path / "scans")
    saved = tmp_path / "out" / "saved"
    if kind == "png-link":
        saved.mkdir(parents=True)
        planted = plant("link", saved / "7_a.png", tmp_path / "elsewhere")
    else:
        planted = plant(kind, saved, tmp_path / "elsewhere", name="7_a.png")
    args = ["--images", str(scans), "--save-preprocessed", str(saved),
            "--models", str(tmp_path / "models"), "--store", str(tmp_path / "store.zarr"),
            "--out", str(tmp_path / "run")]
    refused_in_process(lambda: score_job.main(args), capsys, planted, named=saved)
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()
