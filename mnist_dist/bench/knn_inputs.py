"""The exact KNN on hard inputs, on one worker thread: deformed digits, salt-and-pepper noise,
inked border pixels, single-pixel images, one-pixel edits of training digits, shifted digits,
uniform noise (every pixel inked) and blurred digits,
each timed in paired rounds against the test split and FAISS's exact IndexFlatL2 (the same
call, the same machine load), plus the slowest single query and batch-1 latency."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_dist.bench.tuning import faiss_predictor
from mnist_dist.data.expand import DeformParams
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import load_predictors
from mnist_dist.models.inputs import N_PIXELS
from mnist_dist.preparation.tasks import generate_partition
from mnist_dist.scoring.sweep import sample_images

SEED = 14
NOISE_FRACTION = 0.02  # salt-and-pepper: this share of pixels set to 0 or 255
BORDER_PIXELS = 4  # inked pixels on the outer two-pixel ring of a digit
SIDE = 28
SHIFT = 2  # pixels right and down


def border_ring() -> np.ndarray:
    """Flat indices of the pixels within 2 of the image edge (rarely or never inked in MNIST)."""
    rows, cols = np.divmod(np.arange(N_PIXELS), SIDE)
    return np.flatnonzero((np.minimum(rows, cols) < 2) | (np.maximum(rows, cols) >= SIDE - 2))


def salt_and_pepper(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of uint8 (n, 784) with NOISE_FRACTION of each image's pixels set to 0 or 255."""
    noisy = images.copy()
    hit = rng.random(noisy.shape) < NOISE_FRACTION
    noisy[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return noisy


def border_ink(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of uint8 (n, 784) with BORDER_PIXELS random border-ring pixels inked (255)."""
    inked = images.copy()
    ring = border_ring()
    for row in inked:
        row[rng.choice(ring, BORDER_PIXELS, replace=False)] = 255
    return inked


def single_pixels(n: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 784) images with one pixel of random position and value in 1..255."""
    images = np.zeros((n, N_PIXELS), dtype=np.uint8)
    images[np.arange(n), rng.integers(0, N_PIXELS, n)] = rng.integers(1, 256, n)
    return images


def one_pixel_edits(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Copies of uint8 (n, 784) with one random pixel each set to a different random value."""
    edited = images.copy()
    pixels = rng.integers(0, N_PIXELS, len(images))
    rows = np.arange(len(images))
    edited[rows, pixels] = (edited[rows, pixels] + rng.integers(1, 256, len(images))) % 256
    return edited


def shifted(images: np.ndarray) -> np.ndarray:
    """Copies of uint8 (n, 784) moved SHIFT pixels right and down (blank where they leave)."""
    square = images.reshape(-1, SIDE, SIDE)
    moved = np.zeros_like(square)
    moved[:, SHIFT:, SHIFT:] = square[:, : SIDE - SHIFT, : SIDE - SHIFT]
    return moved.reshape(-1, N_PIXELS)


def uniform_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 784) images of independent uniform pixels 0..255: every rare pixel inked."""
    return rng.integers(0, 256, (n, N_PIXELS), dtype=np.uint8)


def blurred(images: np.ndarray) -> np.ndarray:
    """Copies of uint8 (n, 784) averaged over each pixel's 3x3 neighbourhood (zero outside):
    wider strokes that ink pixels next to every stroke."""
    padded = np.pad(images.reshape(-1, SIDE, SIDE).astype(np.uint16), ((0, 0), (1, 1), (1, 1)))
    total = sum(padded[:, i : i + SIDE, j : j + SIDE] for i in range(3) for j in range(3))
    return (total // 9).astype(np.uint8).reshape(-1, N_PIXELS)


def hard_inputs(test_images: np.ndarray, training_images: np.ndarray) -> dict[str, np.ndarray]:
    """Each hard input set, uint8 (n, 784), derived from `test_images` (n, 784) (and one-pixel
    edits of the first n `training_images`) with a fixed seed: the expanded set's deformations,
    noise, border ink, single pixels, one-pixel edits, shifts, uniform noise, blur."""
    rng = np.random.default_rng(SEED)
    n = len(test_images)
    labels = np.zeros(n, dtype=np.uint8)
    deformed, _ = generate_partition(test_images, labels, 0, n, SEED, DeformParams())
    return {"deformed": deformed, "salt_and_pepper": salt_and_pepper(test_images, rng),
            "border_ink": border_ink(test_images, rng), "single_pixel": single_pixels(n, rng),
            "one_pixel_edit": one_pixel_edits(training_images[:n], rng),
            "shifted": shifted(test_images), "uniform_noise": uniform_noise(n, rng),
            "blurred": blurred(test_images)}


def seconds(predict: Any, images: np.ndarray) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    predict(images)
    return time.perf_counter() - start


def knn_inputs_on_worker(
    ref: ModelRef, store: str, split: str, n_images: int, rounds: int, n_single: int
) -> dict[str, Any]:
    """Per input set: median over `rounds` paired rounds of its images/s over the test split's
    and over FAISS's (one worker thread, batch `n_images`), the slowest of `n_single` batch-1
    queries, and whether FAISS predicts the same digits."""
    knn = load_predictors(ref).knn
    faiss = faiss_predictor(knn)
    test = sample_images(store, split, n_images)
    sets = {"test": test, **hard_inputs(test, knn.model.reference)}
    ratios: dict[str, list[float]] = {name: [] for name in sets}
    over_faiss: dict[str, list[float]] = {name: [] for name in sets}
    rates: dict[str, list[float]] = {name: [] for name in sets}
    faiss_rates: list[float] = []
    single: dict[str, float] = {}
    with threadpool_limits(1):
        knn.predict(test[:8])
        if faiss is not None:
            faiss(test[:8])
        for _ in range(rounds):
            test_rate = n_images / seconds(knn.predict, test)
            # FAISS's flat index scans every reference row whatever the query: its speed barely
            # depends on the input, so one timing per round (on the test split) serves each set.
            faiss_rate = None if faiss is None else n_images / seconds(faiss, test)
            if faiss_rate is not None:
                faiss_rates.append(faiss_rate)
            for name, images in sets.items():
                rate = test_rate if name == "test" else n_images / seconds(knn.predict, images)
                rates[name].append(rate)
                ratios[name].append(rate / test_rate)
                if faiss_rate is not None:
                    over_faiss[name].append(rate / faiss_rate)
        for name, images in sets.items():
            single[name] = max(seconds(knn.predict, images[i : i + 1])
                               for i in range(min(n_single, len(images))))
        agree = {name: None if faiss is None else float((faiss(images) == knn.predict(images))
                                                        .mean()) for name, images in sets.items()}
    over = {name: statistics.median(values) for name, values in ratios.items() if name != "test"}
    worst = min(over, key=over.__getitem__)
    faiss_over = {name: statistics.median(v) if v else None for name, v in over_faiss.items()}
    rows = [{"input": name, "images_per_second": statistics.median(rates[name]),
             "over_test": over.get(name), "over_faiss": faiss_over[name],
             "faiss_agrees": agree[name], "max_single_query_ms": 1e3 * single[name]}
            for name in sets]
    return {"images": n_images, "rounds": rounds, "single_queries": n_single, "rows": rows,
            "worst_input": worst, "worst_over_test": over[worst],
            "max_single_query_ms": 1e3 * max(single.values()),
            "faiss": faiss_section(faiss is not None, faiss_rates, faiss_over, agree["test"])}


def faiss_section(installed: bool, rates: list[float], over: dict[str, float | None],
                  agree: float | None) -> dict[str, Any]:
    """The FAISS comparison: its images/s on the test split, ours over it there and on the
    worst hard set (the lowest ratio), and the share of test-split predictions that agree."""
    hard = {name: value for name, value in over.items() if name != "test" and value is not None}
    worst = min(hard, key=hard.__getitem__) if hard else None
    return {"installed": installed, "index": "IndexFlatL2 (1 thread)",
            "images_per_second": statistics.median(rates) if rates else None,
            "knn_over_faiss": over["test"], "worst_input": worst,
            "worst_over_faiss": None if worst is None else hard[worst],
            "predictions_agree": agree}
