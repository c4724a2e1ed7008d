"""Both models as one predictor that travels by reference: `load_models(...).predict(x)`.

A `Models` holds only a `ModelRef` (location and checksums): pickling it sends those few
hundred bytes, and each process loads and verifies the predictors once (`cache.load_predictors`),
so mapping it over a Dask array loads the models once per worker, never ships them in tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.errors import DataError, SpecError
from mnist_dist.locations import absolute
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors, read_models
from mnist_dist.models.inputs import N_PIXELS, check_images
from mnist_dist.models.knn import GemmKnn
from mnist_dist.models.mlp import OnnxMlp
from mnist_dist.models.outputs import MODEL_NAMES, OUTPUT_ARRAYS, check_model_names, timed_outputs
from mnist_dist.settings import default_models


@dataclass(frozen=True)
class Models:
    """The exact KNN and the ONNX MLP of one model folder, loaded lazily once per process.

    `predict` takes uint8 pixels (n, 784) or (n, 28, 28) as a NumPy array (answers now) or a
    Dask array (answers as lazy Dask arrays). `ort_threads` are onnxruntime's threads per call.

    >>> models = load_models("models")                        # doctest: +SKIP
    >>> models.predict(images)["knn"]                         # doctest: +SKIP
    array([7, 2, 1, ...], dtype=uint8)
    """

    ref: ModelRef
    ort_threads: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.ort_threads, bool) or not isinstance(self.ort_threads, int) \
                or self.ort_threads < 1:
            raise SpecError(f"ort_threads must be an integer >= 1; got {self.ort_threads!r}")

    @property
    def location(self) -> str:
        """The model folder's path or URL."""
        return self.ref.directory

    @property
    def knn(self) -> GemmKnn:
        """The exact KNN (k=3, standardised pixels): `predict(x)`, `kneighbors(x)`."""
        return load_predictors(self.ref, self.ort_threads).knn

    @property
    def mlp(self) -> OnnxMlp:
        """The ONNX MLP: `predict(x)`, `predict_proba(x)`."""
        return load_predictors(self.ref, self.ort_threads).mlp

    def predict(self, images: Any, models: tuple[str, ...] = MODEL_NAMES) -> dict[str, Any]:
        """Every output of each model in `models` (see `output_names`) for uint8 `images`:
        `knn`, `mlp` digits uint8 (n,), `mlp_probabilities` float32 (n, 10), `knn_neighbours`
        int64 (n, 3) (rows of the KNN's reference set) and `knn_distances` float32 (n, 3).
        A Dask array in gives lazy Dask arrays out, each block scored once."""
        names = check_model_names(tuple(models))
        if is_dask_array(images):
            return self._predict_lazy(images, names)
        if not isinstance(images, np.ndarray):
            raise DataError(f"images must be a NumPy or Dask array, uint8 of shape "
                            f"(n, {N_PIXELS}); got {type(images).__name__} instead")
        predictors = load_predictors(self.ref, self.ort_threads)
        return timed_outputs(predictors, names, check_images(images))[0]

    def _predict_lazy(self, images: Any, names: tuple[str, ...]) -> dict[str, Any]:
        """Lazy outputs of a Dask array: one task per block of rows, one getter per output."""
        import dask
        import dask.array as da

        flat = lazy_pixels(images)
        score = dask.delayed(predict_block, pure=True)
        blocks = [score(block, self, names) for block in flat.to_delayed().ravel()]
        out = {}
        for name, dtype, columns in output_specs(names):
            parts = [da.from_delayed(block[name], (rows,) + ((columns,) if columns else ()),
                                     dtype=dtype)
                     for block, rows in zip(blocks, flat.chunks[0], strict=True)]
            out[name] = da.concatenate(parts) if parts else da.empty(
                (0,) + ((columns,) if columns else ()), dtype=dtype)
        return out


def predict_block(images: np.ndarray, models: Models, names: tuple[str, ...]
                  ) -> dict[str, np.ndarray]:
    """Outputs of one block of uint8 rows (n, 784): the task body of a lazy `predict`."""
    return models.predict(images, names)


def output_specs(names: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(output, dtype, columns; 0 for (n,)) of every output of the models `names`."""
    return [spec for name in names for spec in OUTPUT_ARRAYS[name]]


def output_names(names: tuple[str, ...] = MODEL_NAMES) -> list[str]:
    """The keys `Models.predict` returns for the models `names`."""
    return [name for name, _, _ in output_specs(check_model_names(names))]


def is_dask_array(value: Any) -> bool:
    """True for a Dask array (without importing Dask for NumPy callers)."""
    return type(value).__module__.startswith("dask.array")


def lazy_pixels(images: Any) -> Any:
    """A Dask array of uint8 (n, 784) or (n, 28, 28) as (n, 784), chunked along rows only."""
    if images.dtype != np.uint8 or images.shape[1:] not in ((N_PIXELS,), (28, 28)):
        raise DataError(f"images must be uint8 of shape (n, {N_PIXELS}) or (n, 28, 28); "
                        f"got {images.dtype} {images.shape} instead")
    flat = images.reshape(images.shape[0], N_PIXELS) if images.ndim == 3 else images
    return flat.rechunk({1: N_PIXELS})


def load_models(location: str | Path | None = None, ort_threads: int = 1) -> Models:
    """Both models of the folder or URL `location` (default: the data home's `models`), every
    artifact verified against its manifest once, here; raises ModelNotFoundError,
    ArtifactChecksumError or ModelFormatError.

    >>> models = load_models("s3://bucket/models")            # doctest: +SKIP
    """
    where = default_models() if location is None else location
    return Models(read_models(absolute(str(where))).ref, ort_threads)
