"""The train job end to end: fit the scaler on the store's training split, build the KNN, train
and export the MLP, all in this process.

Writes a model directory (see `models/artifacts.py`) atomically: everything goes into a temporary
sibling directory which is renamed into place once the manifest is written.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from distributed import Client

import mnist_dist
from mnist_dist.data.splits import read_split
from mnist_dist.data.store import open_store, store_info, store_provenance, zarr_array
from mnist_dist.models.artifacts import MANIFEST, write_manifest
from mnist_dist.preparation.store import ensure_store
from mnist_dist.publish import built_aside
from mnist_dist.settings import effective_settings
from mnist_dist.storage import check_buckets, storage_errors
from mnist_dist.training.checks import check_model_folder, check_models_target
from mnist_dist.training.knn import train_knn
from mnist_dist.training.mlp import train_and_export_mlp
from mnist_dist.training.result import TrainResult
from mnist_dist.training.scaler import fit_scaler
from mnist_dist.training.spec import TrainSpec

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = (
    "numpy", "scikit-learn", "dask", "distributed", "dask-ml", "zarr", "onnxruntime",
    "onnx", "tf2onnx", "tensorflow-cpu", "tensorflow", "keras",
)


def run(spec: TrainSpec, *, client: Client | None = None) -> TrainResult:
    """Train both models on `spec.store` (built from the vendored MNIST when missing) into
    `spec.models`; returns their test figures.

    Training runs in this process (TensorFlow's threads), not on a cluster: `client` is taken
    for the shape every job shares and left untouched and open.

    >>> import mnist_dist as md                                                 # doctest: +SKIP
    >>> result = md.train(md.TrainSpec(store="data/mnist.zarr", models="models"))  # doctest: +SKIP
    >>> result.mlp.test_accuracy                                                # doctest: +SKIP
    """
    check_model_folder(spec)
    store, models = str(spec.store), str(spec.models)
    with storage_errors(locations=(store, models)):
        check_buckets({"--store": store, "--models": models})
        check_models_target(spec)  # before a missing store is built
        ensure_store(store)
        manifest = write_models(spec)
    return TrainResult.from_manifest(models, manifest)


def write_models(spec: TrainSpec) -> dict[str, Any]:
    """Train, export, verify and checksum both models into `spec.models`; returns the manifest.

    The training split is read once, into memory: the scaler, the KNN and the MLP all use it.
    """
    store = str(spec.store)
    open_store(store)
    x_train, y_train = read_split(store, "train", slice(0, spec.train_limit))
    x_test, y_test = read_split(store, "test")
    chunk_rows = int(zarr_array(store, "train/images").chunks[0])
    with built_aside(spec.models, marker=MANIFEST) as tmp:
        tmp.mkdir()
        scaler = fit_scaler(x_train, chunk_rows)
        knn = train_knn(x_train, y_train, scaler, x_test, y_test, tmp)
        mlp = train_and_export_mlp(x_train, y_train, scaler, x_test, y_test, tmp,
                                   spec.epochs, spec.seed)
        manifest = write_manifest(tmp, {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": mnist_dist.__version__,
            "store": {"path": store, **store_provenance(store_info(store))},
            "n_train": len(x_train),
            "n_test": len(x_test),
            "models": {"knn": knn, "mlp": mlp},
            "versions": library_versions(),
            "effective_settings": effective_settings(),
        })
    log.info("wrote models to %s", spec.models)
    return manifest


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that produce or run the models (missing ones left out)."""
    installed = mnist_dist.installed_versions(VERSIONED_PACKAGES)
    return {package: version for package, version in installed.items() if version}
