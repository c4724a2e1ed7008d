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
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors
from mnist_dist.models.knn import GemmKnn
from mnist_dist.scoring.sweep import SweepSpec, batch_rate, sample_images, time_batches

log = logging.getLogger(__name__)

# Warm-up calls of at most this many rows: a slow baseline's large batch is not paid twice.
WARMUP_ROWS = 64


@dataclass(frozen=True)
class BenchSweepSpec(SweepSpec):
    """The sweep's timing with the bench's defaults, plus the matmul size of the roofline
    samples and the paired rounds (`paired_rounds` rounds on `paired_batch` images)."""

    min_repeats: int = 3
    max_repeats: int = 200
    max_seconds: float = 20.0
    matmul_size: int = MATMUL_SIZE
    paired_rounds: int = 5
    paired_batch: int = 2000

    def __post_init__(self) -> None:
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise SpecError(f"batch_sizes must be positive; got {self.batch_sizes} instead")
        super().__post_init__()


def summarise(model: str, batch: int, times: list[float]) -> dict[str, Any]:
    """Median images/s and per-batch latency p50/p95 of one (model, batch size)."""
    return {
        **batch_rate(model, batch, times), "repeats": len(times),
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
    gemm_flops: float, spec: BenchSweepSpec,
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
    ref: ModelRef, store: str, split: str, spec: BenchSweepSpec, ort_threads: int, baselines: bool
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
                times = time_batches(predict, images, batch, spec, WARMUP_ROWS)
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
        "knn": {"search": predictors.knn.search, "block_rows": predictors.knn.block_rows,
                "shortlist": predictors.knn.shortlist},
        "model_bytes": model_bytes(predictors.knn),
    }


def model_bytes(knn: GemmKnn) -> int:
    """Bytes of every array the KNN keeps resident, its model's and its own (the float32 GEMM
    operand included), an array sharing memory with one counted already not again:
    `knn.reference` is the model's own array when that is contiguous."""
    counted: list[np.ndarray] = []
    for owner in (knn.model.scaler, knn.model, knn, *([knn.index] if knn.index else [])):
        for value in vars(owner).values():
            if isinstance(value, np.ndarray) and not any(
                np.shares_memory(value, seen) for seen in counted
            ):
                counted.append(value)
    return int(sum(array.nbytes for array in counted))
