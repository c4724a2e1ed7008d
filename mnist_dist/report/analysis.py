"""The study's analysis on a report.json: differences, confused pairs, crossover, footprint.

Pure functions on dicts and small NumPy arrays (10x10 confusion, a few throughput rows):
nothing here grows with the number of images scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_dist.report.formats import EN_DASH, compact, pct, points, size

# The report's model sections, in display order (the same names as `predict.MODEL_NAMES`,
# kept here so that rendering never imports the prediction stack).
MODELS = ("knn", "mlp")
LABELS = {"knn": "KNN", "mlp": "MLP"}
TOP_PAIRS = 5  # confused pairs shown per model


@dataclass(frozen=True)
class StudyFigures:
    """The study's published figures (measured on a different machine)."""

    knn_accuracy: float = 0.9465
    knn_per_class: tuple[float, ...] = (
        0.981, 0.992, 0.941, 0.950, 0.936, 0.941, 0.972, 0.927, 0.899, 0.920,
    )
    mlp_accuracy_range: tuple[float, float] = (0.971, 0.974)
    ms_per_image: tuple[tuple[str, float], ...] = (("knn", 0.86), ("mlp", 0.05))
    batch_size: int = 1000


STUDY = StudyFigures()


@dataclass(frozen=True)
class ConfusedPair:
    """`count` test digits of class `true` predicted as `predicted`; `share` of that class."""

    true: int
    predicted: int
    count: int
    share: float


@dataclass(frozen=True)
class Series:
    """One model's throughput sweep, sorted by batch size (all tuples have the same length)."""

    batch_sizes: tuple[int, ...]
    images_per_second: tuple[float, ...]
    ms_per_image: tuple[float, ...]


@dataclass(frozen=True)
class Crossover:
    """Where the MLP overtakes KNN in images/s: the first measured batch size and an estimate.

    `batch_size` is None when there is no crossover; `summary` says why in one sentence.
    """

    batch_size: int | None
    estimate: float | None
    summary: str


def as_confusion(report: dict[str, Any], model: str) -> np.ndarray:
    """The (10, 10) int64 confusion counts of `model`; rows true digit, columns predicted."""
    return np.asarray(report["models"][model]["confusion"], dtype=np.int64)


def row_percentages(confusion: np.ndarray) -> np.ndarray:
    """(10, 10) float: each row as a percentage of its true-digit total (0 for empty rows)."""
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(100.0 * confusion, totals, out=np.zeros(confusion.shape), where=totals > 0)


def differences(first: list[float | None], second: list[float | None]) -> list[float | None]:
    """`second - first` per digit (None where either is missing)."""
    return [None if a is None or b is None else b - a for a, b in zip(first, second)]


def confused_pairs(confusion: np.ndarray, top: int = 5) -> list[ConfusedPair]:
    """The `top` largest off-diagonal cells, largest first (ties: by true then predicted)."""
    shares = row_percentages(confusion) / 100.0
    cells = [
        (int(confusion[t, p]), t, p)
        for t in range(confusion.shape[0]) for p in range(confusion.shape[1])
        if t != p and confusion[t, p] > 0
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [ConfusedPair(t, p, n, float(shares[t, p])) for n, t, p in cells[:top]]


def throughput_series(throughput: list[dict[str, Any]], model: str) -> Series:
    """The sweep rows of `model`, sorted by batch size."""
    rows = sorted((r for r in throughput if r["model"] == model), key=lambda r: r["batch_size"])
    return Series(
        batch_sizes=tuple(int(r["batch_size"]) for r in rows),
        images_per_second=tuple(float(r["images_per_second"]) for r in rows),
        ms_per_image=tuple(float(r["ms_per_image"]) for r in rows),
    )


def crossover(knn: Series, mlp: Series) -> Crossover:
    """The first batch size from which the MLP stays faster than KNN, with a log-log estimate."""
    speeds = common_speeds(knn, mlp)
    if not speeds:
        return Crossover(None, None, "No batch size was measured for both models.")
    ahead = [m > k for _, k, m in speeds]
    if all(ahead):
        return Crossover(None, None, "The MLP is faster than KNN at every measured batch size.")
    if not ahead[-1]:
        return Crossover(None, None, "The MLP does not overtake KNN at the measured batch sizes.")
    first = max(i for i, faster in enumerate(ahead) if not faster) + 1
    estimate = log_crossing(speeds[first - 1], speeds[first])
    return Crossover(
        speeds[first][0], estimate,
        f"The MLP overtakes KNN between batch sizes {speeds[first - 1][0]:,} and "
        f"{speeds[first][0]:,} (about {estimate:,.0f} by log-log interpolation).",
    )


def common_speeds(knn: Series, mlp: Series) -> list[tuple[int, float, float]]:
    """(batch size, KNN images/s, MLP images/s) at the batch sizes both sweeps measured."""
    mlp_speed = dict(zip(mlp.batch_sizes, mlp.images_per_second))
    return [
        (b, k, mlp_speed[b]) for b, k in zip(knn.batch_sizes, knn.images_per_second)
        if b in mlp_speed
    ]


def log_crossing(before: tuple[int, float, float], after: tuple[int, float, float]) -> float:
    """Batch size where log(MLP/KNN speed) crosses zero, linear in log(batch size)."""
    gap_before = math.log(before[2] / before[1])
    gap_after = math.log(after[2] / after[1])
    fraction = gap_before / (gap_before - gap_after)
    return math.exp(math.log(before[0]) + fraction * (math.log(after[0]) - math.log(before[0])))


def at_batch(series: Series, batch_size: int) -> float | None:
    """ms/image of `series` at `batch_size`, None when it was not measured."""
    lookup = dict(zip(series.batch_sizes, series.ms_per_image))
    return lookup.get(batch_size)


def model_bytes(model: dict[str, Any]) -> int:
    """Total size on disk of a model's artifacts, bytes."""
    return sum(int(a["bytes"]) for a in model.get("artifacts", {}).values())


def plural(count: int, word: str) -> str:
    """`word`, with an s unless `count` is 1."""
    return word if count == 1 else f"{word}s"


def kernels_summary(startup: dict[str, Any]) -> str | None:
    """One sentence on the KNN GEMM kernels the workers chose at load (`startup.knn_kernels`):
    the first worker's, and whether the others chose alike; None when not recorded."""
    kernels = startup.get("knn_kernels") or {}
    if not kernels:
        return None
    first = next(iter(kernels.values()))
    alike = all(k == first for k in kernels.values())
    who = "every worker" if alike else f"{next(iter(kernels))} (others differ: see report.json)"
    return (f"KNN GEMM kernels measured at load on {who}: {first['bound']}; "
            f"narrow bound {first['narrow']}.")


def worker_rss(cluster: dict[str, Any]) -> list[tuple[str, int]]:
    """(worker address, resident bytes), sorted by address."""
    return sorted((str(k), int(v)) for k, v in cluster.get("worker_rss_bytes", {}).items())


@dataclass(frozen=True)
class StudyRow:
    """One figure of this run next to the study's: ours as a number (with its display format
    and its path in report.json, if any), theirs and the comparison as text."""

    label: str
    ours: float | None
    fmt: str
    key: tuple[str, ...] | None
    theirs: str
    note: str


def study_comparison(report: dict[str, Any]) -> list[StudyRow]:
    """The headline comparison: both accuracies and the ms/image at the study's batch size."""
    models, study = report["models"], STUDY
    knn, mlp = models["knn"]["accuracy"], models["mlp"]["accuracy"]
    low, high = study.mlp_accuracy_range
    rows = [
        StudyRow("KNN accuracy", knn, "pct", ("models", "knn", "accuracy"),
                 pct(study.knn_accuracy), f"{points(knn - study.knn_accuracy)} points"),
        StudyRow("MLP accuracy", mlp, "pct", ("models", "mlp", "accuracy"),
                 f"{100 * low:.1f}–{100 * high:.1f}%", range_note(mlp, low, high)),
    ]
    for name, theirs in study.ms_per_image:
        ours = at_batch(throughput_series(report.get("throughput", []), name), study.batch_size)
        note = EN_DASH if ours is None else f"{ours / theirs:.2g}× the study's time"
        rows.append(StudyRow(f"{LABELS[name]} ms/image at batch {study.batch_size:,}", ours,
                             "sig", None, f"{theirs}", note))
    return rows


def range_note(value: float, low: float, high: float) -> str:
    """Where `value` falls relative to the range [low, high]."""
    if value < low:
        return f"{points(value - low)} points below the range"
    if value > high:
        return f"{points(value - high)} points above the range"
    return "within the range"


def image_files_facts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of a `jobs.score --images` run's `images` section: files, scored,
    failed, failures by reason and the first failed files; none for other runs."""
    section = report.get("images")
    if not isinstance(section, dict):
        return []
    failures = section.get("failures") or {}
    rows = [(key, f"{section.get(key, EN_DASH)}") for key in ("n_files", "n_scored", "n_failed")]
    rows += [(f"failed: {reason}", f"{count}")
             for reason, count in (failures.get("by_reason") or {}).items()]
    rows += [(f"failed file {i + 1}", f"{e.get('file')}: {e.get('reason')}")
             for i, e in enumerate(failures.get("examples") or [])]
    return rows



# Run facts as a reader reads them: report.json's keys in words, bytes in units.
FACT_LABELS = {
    "store_split": "how the store split MNIST", "partition_rows": "rows per partition",
    "n_images": "images", "partitions_computed": "partitions scored in this run",
    "threads_per_worker": "threads per worker", "memory_limit_per_worker":
    "memory limit per worker", "ort_threads": "onnxruntime threads", "models_shipped":
    "models sent by the client", "worker_rss_bytes": "worker memory after the run",
    "wall_seconds": "wall time (s)", "images_computed": "images scored in this run",
    "images_per_second": "images / s", "performance_report": "Dask performance report",
}
BYTE_FACTS = frozenset({"memory_limit_per_worker", "worker_rss_bytes"})


def fact_rows(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) of each fact: keys in words, sizes in units, a missing value as a dash."""
    return [(FACT_LABELS.get(key, key.replace("_", " ")), fact_text(key, value))
            for key, value in values.items()]


def fact_text(key: str, value: Any) -> str:
    """One fact's value as text (see `fact_rows`)."""
    if value is None:
        return EN_DASH
    if key in BYTE_FACTS:
        if isinstance(value, dict):
            return ", ".join(f"{k} {fact_text(key, v)}" for k, v in value.items())
        if isinstance(value, list):
            return ", ".join(fact_text(key, v) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return size(value)
    return compact(value)
