"""Throughput and latency vs batch size of our predictors and the baselines, inside one worker."""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_dist.bench.baselines import (
    Predict,
    keras_mlp_predictor,
    mlp_hidden,
    sklearn_knn_predictor,
    tensorflow_available,
)
from mnist_dist.bench.roofline import MATMUL_SIZE, blas_facts, knn_flops, matmul_gflops
from mnist_dist.errors import SpecError
from mnist_dist.models.artifacts import ModelRef, load_predictors
from mnist_dist.throughput import sample_images

log = logging.getLogger(__name__)

BATCH_SIZES = (1, 10, 100, 1000, 10000)


@dataclass(frozen=True)
class SweepSpec:
    """Timing of each (predictor, batch size): at least `min_repeats` calls and `min_seconds`,
    stopping early once `max_seconds` is spent (at least one call) or at `max_repeats`."""

    batch_sizes: tuple[int, ...] = BATCH_SIZES
    min_repeats: int = 3
    max_repeats: int = 200
    min_seconds: float = 1.0
    max_seconds: float = 20.0
    matmul_size: int = MATMUL_SIZE
    paired_rounds: int = 5
    paired_batch: int = 2000

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise SpecError(f"batch_sizes must be positive; got {self.batch_sizes} instead")
        if self.min_repeats < 1 or self.max_repeats < self.min_repeats:
            raise SpecError(
                f"need 1 <= min_repeats <= max_repeats; got {self.min_repeats}, "
                f"{self.max_repeats} instead"
            )


def time_predictor(predict: Predict, images: np.ndarray, batch: int, spec: SweepSpec) -> list[float]:
    """Seconds of each call of `predict` on `batch` images (different rows each call)."""
    predict(images[: min(batch, 64)])  # warm-up: lazy initialisation, allocator growth
    times: list[float] = []
    spent = 0.0
    while len(times) < spec.max_repeats:
        offset = (len(times) * batch) % max(1, len(images) - batch + 1)
        start = time.perf_counter()
        predict(images[offset : offset + batch])
        times.append(time.perf_counter() - start)
        spent += times[-1]
        enough = len(times) >= spec.min_repeats and spent >= spec.min_seconds
        if enough or spent >= spec.max_seconds:
            break
    return times


def summarise(model: str, batch: int, times: list[float]) -> dict[str, Any]:
    """Median images/s and per-batch latency p50/p95 of one (model, batch size)."""
    median = statistics.median(times)
    return {
        "model": model, "batch_size": batch, "repeats": len(times),
        "seconds_per_batch": median, "images_per_second": batch / median,
        "latency_p50_ms": 1e3 * float(np.percentile(times, 50)),
        "latency_p95_ms": 1e3 * float(np.percentile(times, 95)),
    }


def timed_call(predict: Predict, images: np.ndarray) -> float:
    """Seconds of one call of `predict` on `images`."""
    start = time.perf_counter()
    predict(images)
    return time.perf_counter() - start


def paired_rounds(
    knn: Predict, sklearn: Predict | None, images: np.ndarray, n_reference: int,
    gemm_flops: float, spec: SweepSpec,
) -> dict[str, Any]:
    """Rounds of matmul, our KNN, scikit-learn's, matmul on the same batch: each round's ratios
    see one machine load, and their medians are robust to load that changes between rounds.

    The roofline fraction counts the nominal 2·784·N FLOPs per query; `knn_gemm_fraction`
    counts the FLOPs the search's GEMMs really run (`gemm_flops`, fewer: blank pixels are
    skipped), i.e. how close those GEMMs plus the selection come to the matmul rate."""
    knn(images[:64])
    rounds: list[dict[str, Any]] = []
    for _ in range(spec.paired_rounds):
        before = matmul_gflops(1, spec.matmul_size, repeats=1)[0]
        seconds = timed_call(knn, images)
        ours = len(images) / seconds
        theirs = None if sklearn is None else len(images) / timed_call(sklearn, images)
        after = matmul_gflops(1, spec.matmul_size, repeats=1)[0]
        limit = 0.5 * (before + after) * 1e9 / knn_flops(n_reference)
        rounds.append({"matmul_gflops": 0.5 * (before + after), "knn_images_per_second": ours,
                       "sklearn_images_per_second": theirs,
                       "knn_fraction_of_roofline": ours / limit,
                       "knn_gemm_fraction": gemm_flops / seconds / 1e9 / (0.5 * (before + after)),
                       "knn_over_sklearn": None if theirs is None else ours / theirs})
    over = [float(r["knn_over_sklearn"]) for r in rounds if r["knn_over_sklearn"] is not None]
    return {
        "batch_size": len(images), "rounds": rounds,
        "knn_fraction_of_roofline": statistics.median(
            float(r["knn_fraction_of_roofline"]) for r in rounds),
        "knn_gemm_fraction": statistics.median(float(r["knn_gemm_fraction"]) for r in rounds),
        "gemm_flops_per_image": gemm_flops / len(images),
        "knn_over_sklearn": statistics.median(over) if over else None,
    }


def sweep_on_worker(
    ref: ModelRef, store: str, split: str, spec: SweepSpec, ort_threads: int, baselines: bool
) -> dict[str, Any]:
    """Sweep our two predictors (and the baselines) on this worker, with the single-thread
    matmul rate measured between them so the roofline sees the same conditions."""
    predictors = load_predictors(ref, ort_threads)
    images = sample_images(store, split, max(spec.batch_sizes))
    knn_model = predictors.knn.model
    candidates: dict[str, Predict] = {"knn": predictors.knn.predict}
    skipped: str | None = None
    if baselines:
        candidates["sklearn_knn"] = sklearn_knn_predictor(knn_model)
    candidates["mlp"] = predictors.mlp.predict
    if baselines:
        if tensorflow_available():
            candidates["keras_mlp"] = keras_mlp_predictor(mlp_hidden(ref), knn_model.scaler)
        else:
            skipped = "keras_mlp skipped: TensorFlow is not installed"
    else:
        skipped = "baselines skipped (--skip-baselines)"
    measured: dict[tuple[str, int], dict[str, Any]] = {}
    matmul = []
    with threadpool_limits(1):  # one worker thread: single-threaded BLAS and OpenMP, like Dask's
        matmul += matmul_gflops(1, spec.matmul_size)
        # Batch by batch, each predictor in turn: a change of machine load hits ours and the
        # baselines alike, and the matmul rate is sampled between batch sizes.
        for batch in spec.batch_sizes:
            for name, predict in candidates.items():
                times = time_predictor(predict, images, batch, spec)
                measured[name, batch] = summarise(name, batch, times)
                log.info("%s batch %d: %.0f images/s", name, batch,
                         measured[name, batch]["images_per_second"])
            matmul += matmul_gflops(1, spec.matmul_size, repeats=3)
        batch_images = images[: min(spec.paired_batch, len(images))]
        paired = paired_rounds(
            predictors.knn.predict, candidates.get("sklearn_knn"), batch_images,
            len(knn_model.reference), predictors.knn.gemm_flops(batch_images), spec,
        )
        blas = blas_facts()
    rows = [measured[name, batch] for name in candidates for batch in spec.batch_sizes]
    return {
        "rows": rows, "paired": paired, "matmul_1thread": matmul, "skipped": skipped, "blas_in_worker": blas,
        "n_reference": len(knn_model.reference), "hidden": mlp_hidden(ref),
        "knn": {"block_rows": predictors.knn.block_rows, "shortlist": predictors.knn.shortlist},
        "model_bytes": model_bytes(predictors.knn),
    }


def model_bytes(knn: Any) -> int:
    """Bytes of every array the KNN keeps resident (its float32 GEMM operand included)."""
    arrays = [value for value in vars(knn).values() if isinstance(value, np.ndarray)]
    return int(sum(a.nbytes for a in arrays) + knn.model.reference.nbytes)
