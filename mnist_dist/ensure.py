"""Models a job needs, trained when missing (a missing store is built by
`mnist_dist.preparation.store.ensure_store`)."""

from __future__ import annotations

import logging
from pathlib import Path

from mnist_dist.errors import MnistDistError
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
