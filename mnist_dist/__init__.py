"""mnist-dist: distributed batch scoring of handwritten digits on Dask.

The public API, imported lazily (``import mnist_dist`` loads neither Dask nor the models)::

    import mnist_dist as md
    models = md.load_models()                  # the data home's models, verified once
    out = models.predict(x)                    # uint8 (n, 784) -> digits, probabilities, ...
    result = md.score(md.ScoreSpec(split="test"), client=client)  # the data home's store
    result.predictions                         # every image's predictions, a Dask DataFrame

Each job is `md.<job>(md.<Job>Spec(...), client=None)` (score, ingest, export, prepare, train):
with a client it runs there and leaves it open, without one it starts a LocalCluster.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib import metadata
from typing import Any

__version__ = "0.1.0"

# Public name → (the module that defines it, its name there); each job is its package's `run`.
_EXPORTS = {
    "read_predictions": ("mnist_dist.exporting.graph", "read_predictions"),
    "ExportResult": ("mnist_dist.exporting.result", "ExportResult"),
    "export": ("mnist_dist.exporting.run", "run"),
    "ExportSpec": ("mnist_dist.exporting.spec", "ExportSpec"),
    "IngestResult": ("mnist_dist.ingestion.result", "IngestResult"),
    "ingest": ("mnist_dist.ingestion.run", "run"),
    "IngestSpec": ("mnist_dist.ingestion.spec", "IngestSpec"),
    "ClusterSpec": ("mnist_dist.cluster", "ClusterSpec"),
    "ImageScoreSpec": ("mnist_dist.images.spec", "ImageScoreSpec"),
    "score_images": ("mnist_dist.scoring.images", "score_images"),
    "apply_storage_options": ("mnist_dist.storage_options", "apply_storage_options"),
    "render_report": ("mnist_dist.report.render", "render_run"),
    "Models": ("mnist_dist.predictor", "Models"),
    "load_models": ("mnist_dist.predictor", "load_models"),
    "PrepareResult": ("mnist_dist.preparation.result", "PrepareResult"),
    "prepare": ("mnist_dist.preparation.run", "run"),
    "PrepareSpec": ("mnist_dist.preparation.spec", "PrepareSpec"),
    "ScoreResult": ("mnist_dist.scoring.result", "ScoreResult"),
    "ScoreSpec": ("mnist_dist.scoring.spec", "ScoreSpec"),
    "score": ("mnist_dist.scoring.run", "run"),
    "data_home": ("mnist_dist.settings", "data_home"),
    "default_models": ("mnist_dist.settings", "default_models"),
    "default_store": ("mnist_dist.settings", "default_store"),
    "SweepSpec": ("mnist_dist.scoring.sweep", "SweepSpec"),
    "TrainResult": ("mnist_dist.training.result", "TrainResult"),
    "train": ("mnist_dist.training.run", "run"),
    "TrainSpec": ("mnist_dist.training.spec", "TrainSpec"),
}
__all__ = [
    "ClusterSpec", "ExportResult", "ExportSpec", "ImageScoreSpec", "IngestResult", "IngestSpec",
    "Models", "PrepareResult", "PrepareSpec", "ScoreResult", "ScoreSpec", "SweepSpec",
    "TrainResult", "TrainSpec", "__version__", "apply_storage_options", "data_home",
    "default_models", "default_store", "export", "ingest", "installed_versions", "load_models", "prepare", "read_predictions", "render_report",
    "score", "score_images", "train",
]


def __getattr__(name: str) -> Any:
    """The public names of `_EXPORTS`, imported on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mnist_dist' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def installed_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in `packages`; None for a missing one."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
