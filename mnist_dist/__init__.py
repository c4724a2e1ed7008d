"""mnist-dist: distributed batch scoring of handwritten digits on Dask.

The public API, imported lazily (``import mnist_dist`` loads neither Dask nor the models)::

    import mnist_dist as md
    models = md.load_models("models")          # verified once; pickles by reference
    out = models.predict(x)                    # uint8 (n, 784) -> digits, probabilities, ...
    report = md.score(md.ScoreSpec(store="data/mnist.zarr", split="test"), client=client)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib import metadata
from typing import Any

__version__ = "0.1.0"

# Public name → the module that defines it.
_EXPORTS = {
    "Models": "mnist_dist.predictor",
    "load_models": "mnist_dist.predictor",
    "ScoreSpec": "mnist_dist.score_job",
    "score": "mnist_dist.score_job",
}
__all__ = ["Models", "ScoreSpec", "__version__", "installed_versions", "load_models", "score"]


def __getattr__(name: str) -> Any:
    """The public names of `_EXPORTS`, imported on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mnist_dist' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def installed_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in `packages`; None for a missing one."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
