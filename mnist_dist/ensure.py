"""Inputs a job needs, made when missing: the store from the vendored MNIST, the models by training."""

from __future__ import annotations

import logging
from pathlib import Path

from mnist_dist.data.sources import load_vendored
from mnist_dist.data.store import build_store, open_store
from mnist_dist.errors import MnistDistError, StoreNotFoundError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.publish import exists
from mnist_dist.training import TrainSpec, models_exist, train_models

log = logging.getLogger(__name__)


def ensure_store(store: Path | str) -> None:
    """Build the store (a local path or URL) from the vendored MNIST when it does not exist."""
    try:
        open_store(store)
    except StoreNotFoundError:
        if exists(store):
            raise
        log.info("store %s not found: building it from the vendored MNIST", store)
        build_store(load_vendored(), store)


def ensure_models(models: Path, store: Path, epochs: int | None = None) -> None:
    """Train both models when `models` holds no complete, verified model set."""
    if models_exist(models):
        return
    if models.exists():
        ModelRef.from_directory(models)  # raises the precise error (checksum, missing file)
    log.info("models %s not found: training them on %s (takes a minute or two)", models, store)
    try:
        train_models(TrainSpec(store=store, models=models,
                               **({} if epochs is None else {"epochs": epochs})))
    except ImportError as exc:
        raise MnistDistError(
            f"models {models} not found and training needs TensorFlow ({exc}); "
            "install the `train` extra (pip install -e '.[train]') or run jobs.train elsewhere"
        ) from exc
