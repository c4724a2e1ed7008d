"""Models a job needs, trained when missing (a missing store is built by
`mnist_dist.preparation.store.ensure_store`), then read once."""

from __future__ import annotations

import logging
from pathlib import Path

from mnist_dist.errors import MnistDistError
from mnist_dist.locations import is_url
from mnist_dist.models.cache import ModelFiles, read_models
from mnist_dist.training.checks import check_model_folder
from mnist_dist.training.run import run as train
from mnist_dist.training.spec import TrainSpec

log = logging.getLogger(__name__)


def ensure_models(models: Path, store: Path, epochs: int | None = None) -> None:
    """Train both models when the folder `models` does not exist; an existing one is read (and
    any fault in it named) by the job that uses it, which reads each file once."""
    if models.exists():
        return
    log.info("models %s not found: training them on %s (takes a minute or two)", models, store)
    spec = (TrainSpec(store=store, models=models) if epochs is None
            else TrainSpec(store=store, models=models, epochs=epochs))
    try:
        train(spec)
    except ImportError as exc:
        raise MnistDistError(
            f"models {models} not found and training needs TensorFlow ({exc}); "
            "install the `train` extra (pip install -e '.[train]') or run jobs.train elsewhere"
        ) from exc


def trained_models(models: str, store: str, epochs: int) -> ModelFiles:
    """The models at `models` (absolute path or URL), each file read and verified once; a
    missing local folder is first trained on the local `store` (built when missing)."""
    if not is_url(models) and not is_url(store) and not Path(models).exists():
        # Refuse before building anything when the trained models would land in the wrong place.
        check_model_folder(TrainSpec(store=Path(store), models=Path(models), epochs=epochs))
        ensure_models(Path(models), Path(store), epochs)
    return read_models(models)
