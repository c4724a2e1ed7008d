"""One training run, as the caller describes it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_dist.errors import SpecError
from mnist_dist.settings import setting_field


@dataclass(frozen=True)
class TrainSpec:
    """Train both models on `store`'s training split into the folder `models` (each a local
    path or URL). `train_limit` (optional) trains on the first rows only: for quick runs.
    """

    store: Path | str
    models: Path | str
    epochs: int = setting_field("train.epochs")
    seed: int = setting_field("train.seed")
    train_limit: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("store", "models"):
            value = getattr(self, name)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise SpecError(f"{name} must be a path or URL; got {value!r} instead")
        check_integer("epochs", self.epochs, 1)
        check_integer("seed", self.seed, 0)
        if self.train_limit is not None:
            check_integer("train_limit", self.train_limit, 1, "or None for every row")

    def settings(self) -> dict[str, Any]:
        """The settings that change the trained models (not where they are read or written)."""
        return {"epochs": self.epochs, "seed": self.seed, "train_limit": self.train_limit}


def check_integer(name: str, value: object, low: int, alternative: str = "") -> None:
    """SpecError unless `value` is an integer >= `low` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        otherwise = f", {alternative}" if alternative else ""
        raise SpecError(f"{name} must be an integer >= {low}{otherwise}; got {value!r} instead")
