"""The measurements behind the defaults, run on a worker: GemmKnn's search, block size and
shortlist against the bare GEMM of the same shape (and FAISS when installed), and onnxruntime's
graph optimisation level and threads."""

from __future__ import annotations

import importlib.util
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_dist.models.artifacts import ModelRef, read_artifact
from mnist_dist.models.cache import load_predictors
from mnist_dist.models.knn import GemmKnn, vote
from mnist_dist.models.mlp import GRAPH_OPTIMIZATION, OnnxMlp, OrtSettings
from mnist_dist.scoring.sweep import sample_images

# (search, block_rows, shortlist): the bound search's block sizes, and the shortlist search
# (the previous default) for comparison.
KNN_SETTINGS = (("bound", 32, 8), ("bound", 64, 8), ("bound", 128, 8), ("shortlist", 256, 8),
                ("shortlist", 512, 16))
ORT_BATCHES = (1, 1000)


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of `repeats` calls after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_only(knn: GemmKnn, images: np.ndarray) -> Callable[[], None]:
    """The bare float32 GEMMs that GemmKnn's search performs for `images`, nothing else: the
    shortlist's numpy product, or the bound search's onnxruntime products tile by tile."""
    rows = min(knn.block_rows, len(images))
    if knn.index is None:
        operand = knn.weights.T
        pixels = np.ones((rows, operand.shape[0]), dtype=np.float32)
        out = np.empty((rows, operand.shape[1]), dtype=np.float32)

        def run() -> None:
            for _ in range(0, len(images), rows):
                np.matmul(pixels, operand, out=out)

        return run
    index = knn.index
    pixels = np.ones((rows, index.tiles.shape[1]), dtype=np.float32)
    out = np.empty((rows, index.tiles.shape[2]), dtype=np.float32)

    def run_tiles() -> None:
        for _ in range(0, len(images), rows):
            for tile in index.tiles:
                index.matmul(pixels, tile, out)

    return run_tiles


def faiss_predictor(knn: GemmKnn) -> Callable[[np.ndarray], np.ndarray] | None:
    """FAISS IndexFlatL2 on the standardised reference (1 thread), or None when not installed."""
    if importlib.util.find_spec("faiss") is None:
        return None
    import faiss

    faiss.omp_set_num_threads(1)
    model = knn.model
    index = faiss.IndexFlatL2(784)
    index.add(model.scaler.transform(model.reference, np.float32))

    def predict(images: np.ndarray) -> np.ndarray:
        _, neighbours = index.search(model.scaler.transform(images, np.float32), model.n_neighbors)
        return vote(model.labels[neighbours])

    return predict


def tune_on_worker(
    ref: ModelRef, store: str, split: str, n_images: int, repeats: int, cores: int
) -> dict[str, Any]:
    """KNN settings, FAISS and onnxruntime settings timed on this worker (1 BLAS thread)."""
    predictors = load_predictors(ref)
    pool = sample_images(store, split, max(n_images, *ORT_BATCHES))
    images = pool[:n_images]
    knn_rows, ort_rows = [], []
    with threadpool_limits(1):
        for name, block_rows, shortlist in KNN_SETTINGS:
            # Built like any GemmKnn: the settings are its parameters, and it clamps them.
            search = GemmKnn(predictors.knn.model, block_rows, shortlist, search=name)
            gemm = median_seconds(gemm_only(search, images), repeats)
            seconds = median_seconds(partial(search.predict, images), repeats)
            knn_rows.append({
                "search": name, "block_rows": block_rows, "shortlist": shortlist,
                "images_per_second": n_images / seconds, "gemm_seconds": gemm,
                "gemm_share": gemm / seconds,
            })
            del search  # one extra search's arrays resident at a time
        faiss = faiss_predictor(predictors.knn)
        faiss_row: dict[str, Any] = {"installed": faiss is not None}
        if faiss is not None:
            seconds = median_seconds(partial(faiss, images), repeats)
            faiss_row.update({
                "images_per_second": n_images / seconds,
                "predictions_agree": float(
                    (faiss(images) == predictors.knn.predict(images)).mean()),
            })
        onnx = read_artifact(ref, "mlp.onnx")
        for level in GRAPH_OPTIMIZATION:
            for threads in sorted({1, cores}):
                mlp = OnnxMlp.load_bytes(onnx, OrtSettings(threads, level))
                for batch in ORT_BATCHES:
                    seconds = median_seconds(partial(mlp.predict, pool[:batch]),
                                             max(repeats, 20))
                    ort_rows.append({"graph_optimization": level, "intra_op_threads": threads,
                                     "batch_size": batch, "images_per_second": batch / seconds})
    return {"images": n_images, "knn": knn_rows, "faiss": faiss_row, "ort": ort_rows}
