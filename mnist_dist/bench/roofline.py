"""The machine's limit: measured float32 matmul rate, and the images/s it allows each model."""

from __future__ import annotations

import os
import platform
import statistics
import time
from itertools import pairwise
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from mnist_dist.models.inputs import N_CLASSES, N_PIXELS

MATMUL_SIZE = 2048


def matmul_gflops(threads: int, size: int = MATMUL_SIZE, repeats: int = 5) -> list[float]:
    """GFLOP/s of `repeats` float32 (size, size) @ (size, size) products on `threads` BLAS threads."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    samples = []
    with threadpool_limits(threads, user_api="blas"):
        a @ b  # warm-up: thread pool start, page faults
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            samples.append(2.0 * size**3 / (time.perf_counter() - start) / 1e9)
    return samples


def knn_flops(n_reference: int) -> float:
    """FLOPs of one exact KNN query: a 784-long dot product with every reference row."""
    return 2.0 * N_PIXELS * n_reference


def mlp_flops(hidden: list[int] | tuple[int, ...]) -> float:
    """FLOPs of one image through the dense layers 784 → hidden… → 10."""
    dims = [N_PIXELS, *hidden, N_CLASSES]
    return 2.0 * sum(a * b for a, b in pairwise(dims))


def rate_summary(samples: list[float]) -> dict[str, Any]:
    """Median and best of GFLOP/s samples (the median is what ratios use)."""
    return {"median": statistics.median(samples), "max": max(samples), "samples": samples}


def blas_facts() -> dict[str, Any]:
    """Which BLAS runs and which kernel it picked (threadpoolctl), plus OPENBLAS_CORETYPE."""
    libraries = [
        {key: info.get(key) for key in
         ("user_api", "internal_api", "version", "architecture", "num_threads", "prefix")}
        for info in threadpool_info()
    ]
    return {"libraries": libraries, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}


def machine_facts() -> dict[str, Any]:
    """CPU, cores, memory and OS of this process's host: what makes runs comparable."""
    import psutil

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def roofline(
    one_thread: list[float], all_threads: list[float], threads: int, flops: dict[str, float]
) -> dict[str, Any]:
    """The roofline section: GFLOP/s (1 thread, all threads) and images/s limits per model."""
    single, every = rate_summary(one_thread), rate_summary(all_threads)
    return {
        "matmul_size": MATMUL_SIZE,
        "gflops_1thread": single,
        "gflops_all": {**every, "threads": threads},
        "flops_per_image": flops,
        "images_per_second_1thread": {
            name: single["median"] * 1e9 / value for name, value in flops.items()
        },
        "images_per_second_all": {
            name: every["median"] * 1e9 / value for name, value in flops.items()
        },
    }
