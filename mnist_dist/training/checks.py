"""Checks before training: the models go where they may, and replace only models."""

from __future__ import annotations

from pathlib import Path

from mnist_dist.errors import SpecError, StoreExistsError
from mnist_dist.locations import is_url, local_path
from mnist_dist.models.artifacts import ARTIFACTS, MANIFEST, OPTIONAL_ARTIFACTS
from mnist_dist.publish import exists
from mnist_dist.settings import IN_DATA_HOME, data_home, package_default
from mnist_dist.training.spec import TrainSpec


def check_model_folder(spec: TrainSpec) -> None:
    """Raise SpecError when models trained with other than the study's settings would go into
    the default model folder, where a later `jobs.score` would silently score them."""
    study = {"epochs": package_default("train.epochs"), "seed": package_default("train.seed"),
             "train_limit": None}
    folder = data_home() / IN_DATA_HOME["models"]  # the data home's, whatever flags say
    models = str(spec.models)
    if spec.settings() == study or is_url(models) or Path(models).resolve() != folder.resolve():
        return
    differing = ", ".join(f"{key}={value}" for key, value in spec.settings().items()
                          if study[key] != value)
    raise SpecError(
        f"models trained with {differing} must not go into the default model folder "
        f"{folder}/ (jobs.score scores what is there; the study's settings are "
        f"epochs={study['epochs']}, seed={study['seed']}, all training rows); "
        "pass --models DIR for them"
    )


def check_models_target(spec: TrainSpec) -> None:
    """StoreExistsError when `spec.models` exists, unless `force` and it is a model folder
    holding nothing but model files (a file, a link or another file in it is never replaced):
    --force retrains, it never deletes other data."""
    models = str(spec.models)
    local = None if is_url(models) else Path(local_path(models))
    if not exists(models) and not (local is not None and local.is_symlink()):
        return
    reason = None if local is None else foreign_reason(local)
    if reason:
        raise StoreExistsError(f"{models} exists and is not a model folder ({reason}); "
                               "--force replaces only models: move it away or choose "
                               "another --models")
    if not spec.force:
        raise StoreExistsError(f"{models} already exists; pass --force to retrain")


def foreign_reason(folder: Path) -> str | None:
    """Why the existing local `folder` is not a model folder written by training, or None."""
    if folder.is_symlink():
        return "it is a link"
    if not folder.is_dir():
        return "it is a file"
    ours = (MANIFEST, *ARTIFACTS, *OPTIONAL_ARTIFACTS)
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    return f"it holds {', '.join(foreign[:3])}" if foreign else None


