"""Training: fit the scaler on the store's training split, build the KNN, train and export the MLP.

Writes a model directory (see `models/artifacts.py`) atomically: everything goes into a temporary
sibling directory which is renamed into place once the manifest is written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask.array as da
import dask.config
import numpy as np

import mnist_dist
from mnist_dist.data.store import open_store, read_split, store_info, store_provenance
from mnist_dist.errors import SpecError, StoreExistsError
from mnist_dist.locations import is_url, local_path
from mnist_dist.models.artifacts import ARTIFACTS, MANIFEST, ModelRef, write_manifest
from mnist_dist.models.knn import GemmKnn, KnnModel, save_knn
from mnist_dist.models.mlp import INPUT_NAME, OUTPUT_NAME, OnnxMlp
from mnist_dist.models.scaler import Scaler
from mnist_dist.publish import built_aside, exists
from mnist_dist.settings import effective_settings, package_default, setting_field

log = logging.getLogger(__name__)


VERSIONED_PACKAGES = (
    "numpy", "scikit-learn", "dask", "distributed", "dask-ml", "zarr", "onnxruntime",
    "onnx", "tf2onnx", "tensorflow-cpu", "tensorflow", "keras",
)


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

    def settings(self) -> dict[str, Any]:
        """The settings that change the trained models (not where they are read or written)."""
        return {"epochs": self.epochs, "seed": self.seed, "train_limit": self.train_limit}


def check_model_folder(spec: TrainSpec) -> None:
    """Raise SpecError when models trained with other than the study's settings would go into
    the default model folder, where a later `jobs.score` would silently score them."""
    study = {"epochs": package_default("train.epochs"), "seed": package_default("train.seed"),
             "train_limit": None}
    folder = Path(package_default("models"))  # the shipped default, whatever flags say
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
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in (MANIFEST, *ARTIFACTS))
    return f"it holds {', '.join(foreign[:3])}" if foreign else None


def fit_scaler(store: Path | str, rows: int | None = None) -> Scaler:
    """StandardScaler (dask-ml) fitted on the training images read lazily from the store."""
    from dask_ml.preprocessing import StandardScaler

    images = da.from_zarr(str(store), component="train/images")
    if rows is not None:
        images = images[:rows]
    # This process's threads, never a distributed Client that happens to be the default (its
    # workers may lack this process's files or storage credentials).
    with dask.config.set(scheduler="threads"):
        fitted = StandardScaler().fit(images.astype(np.float64))
    return Scaler.from_moments(np.asarray(fitted.mean_), np.asarray(fitted.var_))


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that produce or run the models (missing ones left out)."""
    installed = mnist_dist.installed_versions(VERSIONED_PACKAGES)
    return {package: version for package, version in installed.items() if version}


def models_exist(directory: Path) -> bool:
    """True when `directory` holds a complete, verified model set."""
    try:
        ModelRef.from_directory(directory)
    except (OSError, ValueError):
        return False
    return True


def train_models(spec: TrainSpec) -> dict[str, Any]:
    """Train, export, verify and checksum both models; returns the manifest."""
    check_model_folder(spec)
    check_models_target(spec)
    store = str(spec.store)
    open_store(store)
    x_train, y_train = read_split(store, "train", slice(0, spec.train_limit))
    x_test, y_test = read_split(store, "test")
    with built_aside(spec.models, marker=MANIFEST) as tmp:
        tmp.mkdir()
        scaler = fit_scaler(store, spec.train_limit)
        knn = train_knn(x_train, y_train, scaler, x_test, y_test, tmp)
        mlp = train_and_export_mlp(x_train, y_train, scaler, x_test, y_test, tmp, spec)
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


def train_knn(
    x_train: np.ndarray, y_train: np.ndarray, scaler: Scaler,
    x_test: np.ndarray, y_test: np.ndarray, directory: Path,
) -> dict[str, Any]:
    """Fit (store) the KNN, save it, and measure its test accuracy with the fast backend."""
    start = time.perf_counter()
    model = KnnModel(x_train, y_train, scaler, n_neighbors=3)
    save_knn(model, directory)
    seconds = time.perf_counter() - start
    log.info("KNN saved (%d reference rows); scoring the test split", len(x_train))
    accuracy = float((GemmKnn(model).predict(x_test) == y_test).mean())
    log.info("KNN test accuracy %.4f", accuracy)
    return {
        "train_seconds": seconds, "test_accuracy": accuracy,
        "params": {"n_neighbors": 3, "weights": "uniform", "metric": "euclidean"},
        "artifacts": ["knn.npz", "knn.json"],
    }


def train_and_export_mlp(
    x_train: np.ndarray, y_train: np.ndarray, scaler: Scaler,
    x_test: np.ndarray, y_test: np.ndarray, directory: Path, spec: TrainSpec,
) -> dict[str, Any]:
    """Train the Keras MLP, export it to ONNX, verify ONNX vs Keras on the whole test split."""
    from mnist_dist.models.mlp_train import MlpSettings, export_onnx, train_mlp, verify_onnx

    settings = MlpSettings(epochs=spec.epochs, seed=spec.seed)
    start = time.perf_counter()
    model = train_mlp(x_train, y_train, scaler, settings)
    seconds = time.perf_counter() - start
    onnx_path = directory / "mlp.onnx"
    export_onnx(model, scaler, onnx_path)
    max_diff = verify_onnx(model, scaler, onnx_path, x_test)
    accuracy = float((OnnxMlp.load(onnx_path).predict(x_test) == y_test).mean())
    log.info("MLP test accuracy %.4f (ONNX vs Keras max |dp| %.2e)", accuracy, max_diff)
    params = {**asdict(settings), "input": INPUT_NAME, "output": OUTPUT_NAME}
    (directory / "mlp.json").write_text(json.dumps(params, indent=2) + "\n")
    return {
        "train_seconds": seconds, "test_accuracy": accuracy, "onnx_max_abs_diff": max_diff,
        "params": params, "artifacts": ["mlp.onnx", "mlp.json"],
    }

