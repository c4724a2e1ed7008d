"""The exact KNN's GEMM against this machine's float32 matmul peak, on one worker thread: the
single-thread sgemm peak of each kernel the search may choose (numpy's BLAS, onnxruntime's
MLAS, both through `TileProduct.run`), the bound GEMM's rate during a real search of the test
split over the best of them (paired rounds: the peaks are sampled in every round, beside the
search), the search's seconds per phase, and the kernel choice the worker made when it loaded
the model, with how long that calibration takes."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors, load_seconds
from mnist_dist.models.knn_bound import PHASES
from mnist_dist.models.matmul import BACKENDS, TileProduct
from mnist_dist.scoring.sweep import sample_images

SGEMM_SIZE = 1024  # square float32 products: 2.1 GFLOP, ~0.05 s each on one thread
SGEMM_REPEATS = 2  # per round and kernel; the fastest counts (a peak)


def sgemm_peaks(products: dict[str, TileProduct], size: int, repeats: int = SGEMM_REPEATS
                ) -> dict[str, float]:
    """GFLOP/s of the fastest of `repeats` (size, size) @ (size, size) float32 products by each
    kernel (after one warm-up product), on the calling thread."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), np.float32)
    peaks = {}
    for name, product in products.items():
        product.run(name, a, b, out)
        fastest = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            product.run(name, a, b, out)
            fastest = min(fastest, time.perf_counter() - start)
        peaks[name] = 2.0 * size**3 / fastest / 1e9
    return peaks


def gemm_on_worker(ref: ModelRef, store: str, split: str, n_images: int, rounds: int,
                   size: int = SGEMM_SIZE) -> dict[str, Any]:
    """`rounds` paired rounds on this worker (1 BLAS thread) of each kernel's sgemm peak, then
    the bound search of `n_images` test digits timed per phase; the medians, the round of
    median wall time's phases, and the loaded model's kernel choices."""
    knn = load_predictors(ref).knn
    index = knn.index
    if index is None:
        return {"skipped": f"the KNN's search is {knn.search!r}: no bound GEMM to time"}
    images = sample_images(store, split, n_images)
    flops = knn.gemm_flops(images)
    products = {name: TileProduct(size, name) for name in BACKENDS}
    measured = []
    with threadpool_limits(1):
        knn.kneighbors(images[:8])
        for _ in range(rounds):
            peaks = sgemm_peaks(products, size)
            phases: dict[str, float] = dict.fromkeys(PHASES, 0.0)
            start = time.perf_counter()
            knn.kneighbors(images, phases)
            wall = time.perf_counter() - start
            rate = flops / phases["gemm"] / 1e9
            measured.append({"sgemm_gflops": peaks, "wall_seconds": wall, "phases": phases,
                             "gemm_gflops": rate, "gemm_over_best_sgemm": rate / max(
                                 peaks.values())})
    middle = sorted(measured, key=lambda r: r["wall_seconds"])[len(measured) // 2]
    sgemm = {name: statistics.median(r["sgemm_gflops"][name] for r in measured)
             for name in BACKENDS}
    return {
        "skipped": None, "images": n_images, "rounds": measured, "sgemm_size": size,
        "sgemm_gflops": sgemm, "best_sgemm_backend": max(sgemm, key=sgemm.__getitem__),
        "gemm_flops_per_image": flops / n_images,
        "gemm_gflops": statistics.median(r["gemm_gflops"] for r in measured),
        "gemm_over_best_sgemm": statistics.median(r["gemm_over_best_sgemm"] for r in measured),
        "wall_seconds": middle["wall_seconds"], "phases": middle["phases"],
        "choices": [asdict(choice) for choice in index.matmul.choices],
        "calibration_seconds": index.matmul.calibration_seconds
        + index.narrow_matmul.calibration_seconds, "load_seconds": load_seconds(ref),
    }
