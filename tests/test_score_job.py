"""`python -m jobs.score` and `jobs.train` as users run them: report.json, errors, fresh folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
import zarr

from jobs import score as score_job
from jobs import train as train_job

REPO = Path(__file__).resolve().parents[1]
FAST_SWEEP = ["--batch-sizes", "1,10,100", "--sweep-seconds", "0.05"]


def score_args(store: Path, models: Path, out: Path, *extra: str) -> list[str]:
    return ["--store", str(store), "--models", str(models), "--out", str(out),
            "--no-progress", "--workers", "2", *FAST_SWEEP, *extra]


def check_report(
    report: dict, n_images: int, batch_sizes: tuple[int, ...], workers: int = 2
) -> None:
    """Every field the issue names, with values that make sense."""
    assert report["schema"] == "mnist-dist-report/1"
    for name in ("knn", "mlp"):
        model = report["models"][name]
        assert 0.5 < model["accuracy"] <= 1.0
        assert len(model["per_class_accuracy"]) == 10
        assert all(0.0 <= a <= 1.0 for a in model["per_class_accuracy"])
        confusion = model["confusion"]
        assert len(confusion) == 10 and all(len(row) == 10 for row in confusion)
        assert sum(map(sum, confusion)) == n_images
        diagonal = sum(confusion[d][d] for d in range(10))
        assert diagonal / n_images == pytest.approx(model["accuracy"])
        assert model["images_per_second"] > 0 and model["train_seconds"] > 0
        rows = [r for r in report["throughput"] if r["model"] == name]
        assert [r["batch_size"] for r in rows] == list(batch_sizes)
        for row in rows:
            assert row["images_per_second"] == pytest.approx(
                row["batch_size"] / row["seconds_per_batch"])
    assert report["dataset"]["n_images"] == n_images
    assert report["dataset"]["split"] == "test"
    assert report["cluster"]["workers"] == workers and report["cluster"]["threads"] == workers
    assert report["cluster"]["scheduler"].startswith("tcp://127.0.0.1:")
    assert report["timing"]["wall_seconds"] > 0


def test_score_writes_a_complete_report(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert score_job.main(score_args(small_store, small_models, out, "--performance-report")) == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report, 600, (1, 10, 100))
    # The settings it ran with: the flags given, the package's defaults for the rest.
    ran_with = report["effective_settings"]
    assert ran_with["score"]["batch-sizes"] == [1, 10, 100]
    assert ran_with["models"] == str(small_models) and ran_with["store"] == str(small_store)
    assert ran_with["train"] == {"epochs": 10, "seed": 42}
    assert "<html" in (out / "dask-performance.html").read_text()[:2000].lower()
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    printed = capsys.readouterr().out
    assert f"{100 * report['models']['knn']['accuracy']:.2f}%" in printed
    assert "MLP" in printed and "digit" in printed
    assert (out / "predictions.zarr").is_dir()


def test_score_refuses_to_overwrite_a_finished_run(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "report.json").write_text("{}")
    assert score_job.main(score_args(small_store, small_models, out)) == 5
    assert "report.json exists" in capsys.readouterr().err
    assert (out / "report.json").read_text() == "{}"


def test_score_refuses_a_tampered_model(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    shutil.copytree(small_models, models)
    data = bytearray((models / "mlp.onnx").read_bytes())
    data[-1] ^= 0xFF
    (models / "mlp.onnx").write_bytes(bytes(data))
    code = score_job.main(score_args(small_store, models, tmp_path / "run"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 7
    assert len(err) == 1 and "mlp.onnx" in err[0] and "SHA-256" in err[0]


def test_score_reports_an_unreachable_scheduler_quickly(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = score_args(small_store, small_models, tmp_path / "run",
                      "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "2")
    assert score_job.main(args) == 9
    assert "cannot reach Dask scheduler tcp://127.0.0.1:9" in capsys.readouterr().err


def test_train_job_writes_verified_models(
    small_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert train_job.main(["--store", str(small_store), "--models", str(models),
                           "--epochs", "1", "--train-limit", "1000"]) == 0
    manifest = json.loads((models / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"knn.npz", "knn.json", "mlp.onnx", "mlp.json",
                                          "knn_index.npz"}
    assert manifest["n_train"] == 1000
    assert manifest["effective_settings"]["train"] == {"epochs": 1, "seed": 42}
    # The recorded accuracy is the exported model's, measured here by a plain onnxruntime session.
    group = zarr.open_group(str(small_store), mode="r")
    session = ort.InferenceSession(str(models / "mlp.onnx"), providers=["CPUExecutionProvider"])
    (proba,) = session.run(None, {"pixels": group["test/images"][:]})
    correct = int((proba.argmax(axis=1) == group["test/labels"][:]).sum())
    assert abs(manifest["models"]["mlp"]["test_accuracy"] * 600 - correct) <= 1
    assert "knn: test accuracy" in capsys.readouterr().out
    assert train_job.main(["--store", str(small_store), "--models", str(models)]) == 5
