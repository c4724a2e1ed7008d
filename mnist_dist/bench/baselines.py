"""The study's baselines and the peer a Dask user reaches for first, built from our model files.

- `sklearn_knn_predictor`: the KNN reference of `models.knn` (`KNeighborsClassifier(3)`, brute,
  float64 standardised pixels), timed as the study's KNN.
- `keras_mlp_predictor`: Keras `model.predict` of the study's architecture (TensorFlow needed).
- `parallel_post_fit_knn` / `parallel_post_fit_onnx`: dask-ml's `ParallelPostFit` around the
  scikit-learn KNN and around the ONNX model's predict; the estimator travels in the graph.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from mnist_dist.models.artifacts import ModelRef, read_artifact
from mnist_dist.models.knn import KnnModel, predict_sklearn, sklearn_classifier
from mnist_dist.models.scaler import Scaler

Predict = Callable[[np.ndarray], np.ndarray]


def tensorflow_available() -> bool:
    """True when TensorFlow can be imported (the `train` extra is installed)."""
    return importlib.util.find_spec("tensorflow") is not None


def mlp_hidden(ref: ModelRef) -> list[int]:
    """Hidden layer sizes of the exported MLP, from `mlp.json`."""
    return [int(units) for units in json.loads(read_artifact(ref, "mlp.json")).get("hidden", [])]


def sklearn_knn_predictor(model: KnnModel) -> Predict:
    """Raw uint8 pixels (n, 784) → digits (n,) through the scikit-learn reference
    (`knn.sklearn_classifier`: brute force on float64 standardised pixels), fitted once."""
    classifier = sklearn_classifier(model)
    return partial(predict_sklearn, model, classifier=classifier)


def keras_mlp_predictor(hidden: list[int], scaler: Scaler, threads: int = 1) -> Predict:
    """Raw uint8 pixels (n, 784) → digits (n,) through Keras `model.predict`, one step per call.

    The weights are untrained (speed does not depend on them); TensorFlow gets `threads` threads
    so it is compared with onnxruntime like with like. Raises ImportError without TensorFlow.
    """
    # mlp_train first: importing it sets TensorFlow's C++ log level, read when TF loads.
    from mnist_dist.models.mlp_train import MlpSettings, build_mlp

    tf = importlib.import_module("tensorflow")

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialised in this process: keep its pools
        pass
    model = build_mlp(MlpSettings(hidden=tuple(hidden) or (1,)))

    def predict(images: np.ndarray) -> np.ndarray:
        pixels = scaler.transform(images, np.float32)
        probabilities = model.predict(pixels, batch_size=max(1, len(pixels)), verbose=0)
        return np.asarray(probabilities).argmax(axis=1).astype(np.uint8)

    return predict


class OnnxEstimator:
    """A scikit-learn-style estimator around the ONNX bytes, as a Dask user would write one.

    It pickles the model bytes; each unpickled copy opens its own onnxruntime session.
    """

    def __init__(self, model: bytes) -> None:
        self.model = model
        self._session: Any = None

    def fit(self, X: Any = None, y: Any = None) -> OnnxEstimator:
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"model": self.model}

    def set_params(self, **params: Any) -> OnnxEstimator:
        self.model = params.get("model", self.model)
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "_session": None}

    def predict(self, X: np.ndarray) -> np.ndarray:
        from mnist_dist.models.mlp import OnnxMlp

        if self._session is None:
            self._session = OnnxMlp.load_bytes(self.model)
        return self._session.predict(np.ascontiguousarray(X, dtype=np.uint8))


def parallel_post_fit_knn(model: KnnModel) -> Any:
    """dask-ml `ParallelPostFit(KNeighborsClassifier(3))`, fitted on the standardised reference."""
    from dask_ml.wrappers import ParallelPostFit

    return ParallelPostFit(
        sklearn_classifier(model), predict_meta=np.empty((0,), dtype=np.uint8)
    )


def parallel_post_fit_onnx(ref: ModelRef) -> Any:
    """dask-ml `ParallelPostFit` around the ONNX model's predict (raw uint8 pixels in)."""
    from dask_ml.wrappers import ParallelPostFit

    return ParallelPostFit(
        OnnxEstimator(read_artifact(ref, "mlp.onnx")), predict_meta=np.empty((0,), dtype=np.uint8)
    )
