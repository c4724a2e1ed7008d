"""The default model folder, where `jobs.score` looks, only ever receives the study's models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jobs import score as score_job
from jobs import train as train_job
from mnist_dist.bench.run import BenchSpec, ensure_inputs
from mnist_dist.errors import SpecError
from mnist_dist.settings import default_models
from mnist_dist.training.checks import check_model_folder
from mnist_dist.training.run import run as train
from mnist_dist.training.spec import TrainSpec


@pytest.mark.parametrize("settings", [{"epochs": 3}, {"seed": 7}, {"train_limit": 1000}])
def test_training_other_settings_into_the_default_folder_is_refused(
    small_store: Path, tmp_path: Path, data_home: Path, monkeypatch: pytest.MonkeyPatch,
    settings: dict,
) -> None:
    with pytest.raises(SpecError, match=f"{next(iter(settings))}=.*--models DIR"):
        train(TrainSpec(store=small_store, models=default_models(), **settings))
    assert not (data_home / "models").exists()
    # The same settings anywhere else, or the study's settings here, are fine.
    check_model_folder(TrainSpec(store=small_store, models=tmp_path / "elsewhere", **settings))
    check_model_folder(TrainSpec(store=small_store, models=data_home / "models"))
    monkeypatch.chdir(data_home)
    with pytest.raises(SpecError):  # the same folder spelled as a relative path
        check_model_folder(TrainSpec(store=small_store, models=Path("models"), **settings))


def test_jobs_refuse_quick_models_in_the_default_folder_before_any_work(
    tmp_path: Path, data_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert score_job.main(["--epochs", "1", "--no-progress"]) == 13
    assert train_job.main(["--epochs", "1", "--store", "data/mnist.zarr"]) == 13
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") and "epochs=1" in e for e in errors)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run folder
    assert sorted(p.name for p in data_home.iterdir()) == []  # no store or models


def test_bench_trains_missing_default_models_with_the_studys_settings(
    small_store: Path, data_home: Path
) -> None:
    shutil.copytree(small_store, data_home / "mnist.zarr")
    ensure_inputs(BenchSpec())
    manifest = json.loads((data_home / "models" / "manifest.json").read_text())
    study = TrainSpec(store=small_store, models=default_models())
    assert manifest["models"]["mlp"]["params"]["epochs"] == study.epochs
    assert manifest["models"]["mlp"]["params"]["seed"] == study.seed
    assert manifest["n_train"] == 3000  # every training row of the store
