"""Scoring image files on Dask (`mnist_dist.images`) and `jobs.score --images`."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import Client
from PIL import Image

import mnist_dist as md
from jobs import score as score_job
from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store
from mnist_dist.errors import DataError, ImageInputError
from mnist_dist.images.files import (
    label_from_name,
    list_image_files,
    match_labels,
    output_names,
    read_labels_csv,
)
from mnist_dist.images.report import FAILURE_EXAMPLES
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors
from mnist_dist.scoring.images import run_image_scoring
from mnist_dist.training.run import run as train
from mnist_dist.training.spec import TrainSpec
from tests.helpers import job_peak_rss_kib, write_digit_pngs

REPO = Path(__file__).resolve().parents[1]
N_TRAIN = 20_000
N_TEST = 600


@dataclass(frozen=True)
class Trained:
    """A store of 20,000 training / 600 test digits and real models trained on it."""

    store: Path
    models: Path
    x_test: np.ndarray
    y_test: np.ndarray


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, vendored: RawMnist) -> Trained:
    """Real KNN + MLP (2 epochs on 20,000 digits: about 94% accurate); ~20 s to build."""
    root = tmp_path_factory.mktemp("images-models")
    subset = RawMnist(
        vendored.x_train[:N_TRAIN], vendored.y_train[:N_TRAIN],
        vendored.x_test[:N_TEST], vendored.y_test[:N_TEST], source="vendored subset",
    )
    store = build_store(subset, root / "mnist.zarr", split="canonical")
    models = root / "models"
    train(TrainSpec(store=store, models=models, epochs=2, train_limit=N_TRAIN))
    group = zarr.open_group(str(store), mode="r")
    return Trained(store, models, np.asarray(group["test/images"][:]),
                   np.asarray(group["test/labels"][:]))


def disturb(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A digit the way a scan arrives: black on white, 2-4x larger, off-centre on a bigger
    page, saved as JPEG (quality 70-95)."""
    side = round(28 * rng.uniform(2.0, 4.0))
    ink = Image.fromarray(255 - digit.reshape(28, 28)).resize(
        (side, side), Image.Resampling.BICUBIC
    )
    width, height = side + int(rng.integers(20, 200)), side + int(rng.integers(20, 200))
    page = Image.new("L", (width, height), 255)
    page.paste(ink, (int(rng.integers(0, width - side)), int(rng.integers(0, height - side))))
    buffer = io.BytesIO()
    page.save(buffer, format="JPEG", quality=int(rng.integers(70, 95)))
    return Image.open(io.BytesIO(buffer.getvalue()))


def write_bad_files(folder: Path) -> list[str]:
    """A corrupt, a blank and an animated file in `folder`; returns their names."""
    (folder / "5_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    Image.new("L", (64, 64), 255).save(folder / "3_blank.png")
    frames = [Image.new("L", (30, 30), v) for v in (0, 255)]
    frames[0].save(folder / "1_animated.png", save_all=True, append_images=frames[1:])
    return ["5_corrupt.png", "3_blank.png", "1_animated.png"]


def test_listing_finds_image_files_in_folders_and_keeps_named_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "deeper").mkdir(parents=True)
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/2.PNG", "a/deeper/1.jpeg", "a/notes.txt", "a/.hidden/9.png", "b.tif"):
        (tmp_path / name).write_bytes(b"x")
    files = list_image_files([tmp_path / "a", tmp_path / "b.tif", tmp_path / "a" / "2.PNG"])
    assert files == [tmp_path / "a/2.PNG", tmp_path / "a/deeper/1.jpeg", tmp_path / "b.tif"]
    with pytest.raises(ImageInputError, match="missing: no such file or folder"):
        list_image_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageInputError, match="no image files"):
        list_image_files([tmp_path / "empty"])


def test_labels_from_names_and_csv(tmp_path: Path) -> None:
    assert [label_from_name(Path(n)) for n in ("7_a.png", "7.png", "3-x.jpg", "12_a.png",
                                                 "a7.png")] == [7, 7, 3, None, None]
    (tmp_path / "sub").mkdir()
    files = [tmp_path / "one.png", tmp_path / "sub" / "two.png", tmp_path / "three.png"]
    labels = tmp_path / "labels.csv"
    labels.write_text("file,digit\n# a comment\none.png,1\nsub/two.png, 2\n\nother.png,5\n")
    assert read_labels_csv(labels) == [("one.png", 1), ("sub/two.png", 2), ("other.png", 5)]
    assert match_labels(files, read_labels_csv(labels), tmp_path) == [1, 2, None]
    labels.write_text("one.png,1\ntwo.png,seven\n")
    with pytest.raises(DataError, match=r"labels\.csv:2: digit must be 0-9; got 'seven'"):
        read_labels_csv(labels)
    assert output_names([Path("a/x.jpg"), Path("b/x.png"), Path("c/X.bmp")]) == [
        "x.png", "x-2.png", "X-3.png"]


def test_spec_is_validated() -> None:
    with pytest.raises(ValueError, match="exclude each other"):
        ImageScoreSpec(images=(Path("."),), labels=Path("l.csv"), labels_from_names=True)
    with pytest.raises(ValueError, match="at least one"):
        ImageScoreSpec(images=())


def test_disturbed_digits_score_like_the_store_and_bad_files_are_reported(
    trained: Trained, local_client: Client, tmp_path: Path
) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (digit, label) in enumerate(zip(trained.x_test, trained.y_test)):
        disturb(digit, rng).save(folder / f"{label}_{i:04d}.jpg")
    bad = write_bad_files(folder)
    spec = ImageScoreSpec(
        images=(folder,), models=str(trained.models), store=trained.store, out=tmp_path / "run",
        labels_from_names=True, save_preprocessed=tmp_path / "pre", partition_files=100,
        cluster=ClusterSpec(scheduler=local_client.scheduler.address),
    )
    report = run_image_scoring(spec)

    predictors = load_predictors(ModelRef.from_directory(trained.models))
    straight = float((predictors.mlp.predict(trained.x_test) == trained.y_test).mean())
    disturbed = report["models"]["mlp"]["accuracy"]
    print(f"MLP accuracy on {N_TEST} digits: store {straight:.4f}, disturbed files {disturbed:.4f}")
    assert report["models"]["mlp"]["n_images"] == N_TEST
    assert disturbed >= straight - 0.01
    knn_straight = float((predictors.knn.predict(trained.x_test) == trained.y_test).mean())
    assert report["models"]["knn"]["accuracy"] >= knn_straight - 0.02

    inputs = report["images"]
    assert (inputs["n_files"], inputs["n_scored"], inputs["n_failed"]) == (N_TEST + 3, N_TEST, 3)
    errors = {Path(e["file"]).name: e["reason"] for e in inputs["failures"]["examples"]}
    assert sorted(errors) == sorted(bad)
    assert "one frame" in errors["1_animated.png"] and "blank" in errors["3_blank.png"]
    assert "not a readable PNG, JPEG, BMP or TIFF" in errors["5_corrupt.png"]
    assert sum(inputs["failures"]["by_reason"].values()) == 3
    assert inputs["file_partitions"] == 7
    assert len(list((tmp_path / "pre").glob("*.png"))) == N_TEST

    # Per-file results are in the predictions store, failures included; report.json is bounded.
    predictions = zarr.open_group(str(tmp_path / "run" / "predictions.zarr"), mode="r")
    assert predictions["mlp"].shape == (N_TEST,) and predictions["ids"].shape == (N_TEST,)
    failed = dict(zip(map(str, predictions["failures/file"][:]),
                      map(str, predictions["failures/reason"][:]), strict=True))
    assert {Path(f).name: r for f, r in failed.items()} == errors
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["schema"] == "mnist-dist-report/1" and "files" not in saved
    assert len(saved["images"]["failures"]["examples"]) <= FAILURE_EXAMPLES
    assert len(json.dumps(saved)) < 200_000  # counts and bounded samples, not rows per file
    html = (tmp_path / "run" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    markdown = (tmp_path / "run" / "report.md").read_text()
    for text in (html, markdown):  # the failures are shown, from the bounded section
        assert "Image files" in text and "5_corrupt.png" in text and "failed: image is blank" in text
    # Every sampled digit is named by its file, the file whose prediction it shows.
    ids = list(map(str, predictions["ids"][:]))
    sampled = [item for model in saved["models"].values() for item in model["misclassified"]]
    sampled += saved["predictions"]["least_confident"] + saved["predictions"]["disagreements"]
    assert sampled and all(item["id"] == ids[item["index"]] for item in sampled)
    assert all(int(Path(item["id"]).name[0]) == item["true"] for item in sampled)
    assert all(f">{Path(item['id']).name}</span>" in html for item in sampled)

    # jobs.export of the run: one row per scored file, equal to the predictions store.
    table = pd.read_parquet(md.export(md.ExportSpec(run=tmp_path / "run")).path)
    assert table["id"].tolist() == list(map(str, predictions["ids"][:]))
    assert table["knn"].tolist() == predictions["knn"][:].tolist()
    assert table["mlp"].tolist() == predictions["mlp"][:].tolist()
    proba = predictions["mlp_probabilities"][:]
    assert np.array_equal(table["mlp_probability"].to_numpy(),
                          proba[np.arange(N_TEST), predictions["mlp"][:]])
    assert table["label"].tolist() == [int(Path(i).name[0]) for i in table["id"]]


def test_job_main_prints_the_table(
    trained: Trained, local_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        Image.fromarray(trained.x_test[i].reshape(28, 28)).save(tmp_path / f"d{i}.png")
    (tmp_path / "labels.csv").write_text(
        "".join(f"d{i}.png,{trained.y_test[i]}\n" for i in range(3))
    )
    code = score_job.main([
        "--images", str(tmp_path / "d0.png"), str(tmp_path / "d1.png"), str(tmp_path / "d2.png"),
        "--labels", str(tmp_path / "labels.csv"), "--models", str(trained.models),
        "--out", str(tmp_path / "run"), "--scheduler", local_client.scheduler.address,
    ])
    assert code == 0
    ran_with = json.loads((tmp_path / "run" / "report.json").read_text())["effective_settings"]
    assert ran_with["models"] == str(trained.models)
    out = capsys.readouterr().out
    assert "scored 3 of 3 image files (0 failed)" in out and "KNN" in out and "MLP" in out
    with pytest.raises(SystemExit):
        score_job.parse_args(["--labels", "x.csv"])  # needs --images
    with pytest.raises(SystemExit):
        score_job.parse_args(["--images", "x", "--labels", "l.csv", "--labels-from-names"])


def labelled_scans(folder: Path, trained: Trained, count: int) -> Path:
    """The first `count` test digits as PNG files in a new `folder`, each named
    `<true digit>_<row>.png` (for --labels-from-names)."""
    folder.mkdir()
    for i in range(count):
        Image.fromarray(trained.x_test[i].reshape(28, 28)).save(folder / f"{trained.y_test[i]}_{i}.png")
    return folder


def test_an_interrupted_image_run_resumes_without_ingesting_again(
    trained: Trained, local_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = labelled_scans(tmp_path / "scans", trained, 40)
    write_bad_files(folder)
    run = tmp_path / "run"
    flags = ["--images", str(folder), "--labels-from-names", "--models", str(trained.models),
             "--out", str(run), "--scheduler", local_client.scheduler.address]
    assert score_job.main(flags) == 12  # three files cannot be scored
    before = json.loads((run / "report.json").read_text())
    knn = zarr.open_group(str(run / "predictions.zarr"), mode="r")["knn"][:]
    markers = sorted((run / "partitions").iterdir())
    assert len(markers) >= 2
    for path in (run / "report.json", markers[-1]):  # stopped before the last partition
        path.unlink()
    ingested = (run / "images.zarr").stat().st_mtime_ns
    capsys.readouterr()
    assert score_job.main([*flags, "--resume"]) == 12
    assert "scored 40 of 43 image files (3 failed)" in capsys.readouterr().out
    after = json.loads((run / "report.json").read_text())
    assert (run / "images.zarr").stat().st_mtime_ns == ingested  # not ingested again
    assert after["dataset"]["partitions_computed"] == 1
    assert np.array_equal(zarr.open_group(str(run / "predictions.zarr"), mode="r")["knn"][:], knn)
    for model in ("knn", "mlp"):
        assert after["models"][model]["confusion"] == before["models"][model]["confusion"]
    assert after["images"]["n_failed"] == before["images"]["n_failed"] == 3
    (run / "report.json").unlink()
    (folder / "0_extra.png").write_bytes((folder / f"{trained.y_test[0]}_0.png").read_bytes())
    assert score_job.main([*flags, "--resume"]) == 13  # other files: refused, not mixed
    assert "holds a run of other image files (43 then, 44 now)" in capsys.readouterr().err


def test_an_image_run_stopped_while_ingesting_resumes_by_ingesting_again(
    trained: Trained, local_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = labelled_scans(tmp_path / "scans", trained, 20)
    run = tmp_path / "run"
    flags = ["--images", str(folder), "--labels-from-names", "--models", str(trained.models),
             "--out", str(run), "--scheduler", local_client.scheduler.address]
    assert score_job.main(flags) == 0
    before = json.loads((run / "report.json").read_text())
    # What an attempt killed while ingesting leaves: its run store (half written), a staging
    # store and the lock of a process that is gone; no run.json, no partition yet.
    for name in ("report.json", "report.html", "report.md", "run.json"):
        (run / name).unlink()
    for name in ("partitions", "predictions.zarr"):
        shutil.rmtree(run / name)
    shutil.rmtree(run / "images.zarr" / "images" / "labels")
    (run / "images-staging.zarr").mkdir()
    (run / "run.lock").write_text(json.dumps({"pid": 2**22 + 1, "host": socket.gethostname(),
                                              "started": "2026-01-01T00:00:00"}))  # no such pid
    capsys.readouterr()
    assert score_job.main(flags) == 5  # a new run never replaces it
    assert "finish that run with --resume" in capsys.readouterr().err
    assert score_job.main([*flags, "--resume"]) == 0
    after = json.loads((run / "report.json").read_text())
    for model in ("knn", "mlp"):
        assert after["models"][model]["confusion"] == before["models"][model]["confusion"]
    assert not (run / "images-staging.zarr").exists()
    # A store of that name that no run of ours made is the user's: refused, kept.
    mine = tmp_path / "mine"
    zarr.open_group(str(mine / "images.zarr"), mode="w").attrs["note"] = "mine"
    assert score_job.main([*flags[:-4], "--out", str(mine), "--resume",
                           "--scheduler", local_client.scheduler.address]) == 5
    assert "that no run created (images.zarr)" in capsys.readouterr().err
    assert zarr.open_group(str(mine / "images.zarr"), mode="r").attrs["note"] == "mine"


def test_cli_subprocess_reports_failed_files_with_exit_code_12(
    trained: Trained, tmp_path: Path
) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        disturb(trained.x_test[i], rng).save(folder / f"{trained.y_test[i]}_{i}.jpg")
    bad = write_bad_files(folder)
    result = subprocess.run(
        [sys.executable, "-m", "jobs.score", "--images", str(folder), "--labels-from-names",
         "--models", str(trained.models), "--out", str(tmp_path / "run"), "--workers", "1",
         "--save-preprocessed", str(tmp_path / "pre")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 12, result.stderr[-2000:]
    assert "3 of 9 image files could not be scored" in result.stderr
    lines = result.stdout.splitlines()
    assert "scored 6 of 9 image files (3 failed)" in lines
    for name in bad:
        assert any(line.startswith("  failed: ") and name in line for line in lines)
    assert (tmp_path / "run" / "report.html").is_file()
    assert len(list((tmp_path / "pre").glob("*.png"))) == 6


@pytest.mark.slow
def test_client_memory_of_20000_files_is_within_10_percent_of_2000(
    tmp_path: Path, small_store: Path, small_models: Path,
) -> None:
    digits = np.asarray(zarr.open_group(str(small_store), mode="r")["test/images"][:])
    peaks = {}
    for count in (2_000, 20_000):
        folder = write_digit_pngs(tmp_path / f"files-{count}", digits, count)
        peaks[count] = job_peak_rss_kib("score", [
            "--images", str(folder), "--models", str(small_models),
            "--out", str(tmp_path / f"run-{count}")], cwd=REPO)
    predictions = zarr.open_group(str(tmp_path / "run-20000" / "predictions.zarr"), mode="r")
    assert predictions["mlp"].shape == (20_000,)
    assert peaks[20_000] <= 1.10 * peaks[2_000], peaks


@pytest.mark.browser
def test_the_report_of_an_images_run_renders_in_chromium(
    small_models: Path, vendored: RawMnist, local_client: Client, tmp_path: Path,
) -> None:
    from tests.test_report_browser import (
        DevTools,
        assert_not_blank,
        chromium,
        console_errors,
        open_report,
        page_socket,
        screenshot,
    )

    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(40):
        disturb(vendored.x_test[i], rng).save(folder / f"{vendored.y_test[i]}_{i}.jpg")
    write_bad_files(folder)
    spec = ImageScoreSpec(images=(folder,), models=str(small_models), out=tmp_path / "run",
                          labels_from_names=True)
    run_image_scoring(spec, client=local_client)  # the caller's client, left open
    assert local_client.status == "running" and local_client.submit(sum, [1, 2]).result() == 3
    html = tmp_path / "run" / "report.html"
    with chromium(tmp_path / "profile") as base:
        page = DevTools(page_socket(base))
        try:
            open_report(page, html)
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            shot = screenshot(page)
        finally:
            page.close()
    assert console_errors(page.events) == []
    assert len(images) == html.read_text().count("<img ") >= 5
    assert [alt for done, width, alt in images if not (done and width > 0)] == []
    assert_not_blank(shot)


def test_an_unexpected_failure_with_an_s3_store_is_one_storage_line_not_a_traceback(
    small_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The store flag stays a URL (`s3://b/x`, never `s3:/b/x`): an OSError of a run whose
    store is on S3 is reported as a storage failure, one line."""
    from mnist_dist.scoring import images as image_job

    seen = []

    def failing(spec: ImageScoreSpec, *, client: object = None) -> None:
        seen.append(spec.store)
        raise OSError("connection reset")

    monkeypatch.setattr(image_job, "run_image_scoring", failing)
    png = tmp_path / "7.png"
    Image.new("L", (28, 28)).save(png)
    code = score_job.main(["--images", str(png), "--models", str(small_models),
                           "--store", "s3://bucket/mnist.zarr", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert seen == ["s3://bucket/mnist.zarr"]
    assert code == 15 and "Traceback" not in err
    expected = ("error: object storage: object storage failed (connection reset); rerun with "
                "--resume once it is back")
    assert [line for line in err.splitlines() if line.startswith("error:")] == [expected]
