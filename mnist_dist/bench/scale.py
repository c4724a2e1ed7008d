"""Scale benchmark: generate expanded splits of N digits, score them with one model at a time,
and record throughput and peak worker memory per N (`python -m jobs.scale`, writes scale.json).

Each size gets its own group `expanded-<N>` in a benchmark store (a copy of the base store's
`zarr.json`, train and test arrays under `work/`), generated when missing. Every phase runs on
a new LocalCluster, so each peak is measured from fresh worker processes (on a `--scheduler`
cluster the workers persist between phases, so later peaks include earlier leftovers): a sampler
thread in every worker records its resident memory every `sample_seconds` (psutil). Cost per image is
reported three ways: wall time, summed prediction-task time and worker CPU time, each divided
by N; the summary gives each one's largest deviation from its median across sizes, and the
ratio of the largest to the smallest peak worker memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import shutil
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from distributed import Client

from mnist_dist.atomic import temporary_sibling, write_json_atomic
from mnist_dist.bench.endtoend import warm_worker
from mnist_dist.cluster import (
    ClusterSpec,
    cluster_facts,
    connect,
    ort_threads_for,
    ship_models_if_needed,
)
from mnist_dist.data.expand import DeformParams
from mnist_dist.data.partitioning import SCORE_BYTES_PER_ROW, chunk_rows_of, partition_rows
from mnist_dist.data.store import open_store
from mnist_dist.errors import SpecError, StoreExistsError, StoreNotFoundError
from mnist_dist.metrics import accuracy, per_class_accuracy
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.preparation.graph import expand_store
from mnist_dist.preparation.plan import check_group_target, directory_bytes
from mnist_dist.preparation.spec import ExpandSpec
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.settings import effective_settings, setting_field
from mnist_dist.worker_memory import start_rss_sampler, stop_rss_sampler

log = logging.getLogger(__name__)

SCALE_FORMAT = "mnist-dist-scale/1"
MLP_SIZES = (70_000, 1_000_000, 8_100_000)
KNN_SIZES = (14_000, 70_000, 140_000)
TOLERANCE = 0.15
MB = 1 << 20


@dataclass(frozen=True)
class ScaleSpec:
    """What to run: sizes per model, where the benchmark store lives, and how to partition."""

    store: Path
    models: Path
    work: Path
    out: Path | None = None
    mlp_sizes: tuple[int, ...] = MLP_SIZES
    knn_sizes: tuple[int, ...] = KNN_SIZES
    seed: int = setting_field("expand.seed")
    params: DeformParams = field(default_factory=DeformParams)
    generate_partition_mb: float = setting_field("expand.partition-mb")
    score_partition_mb: float = setting_field("scale.partition-mb")
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    sample_seconds: float = 0.05
    cleanup: bool = False

    def __post_init__(self) -> None:
        sizes = (*self.mlp_sizes, *self.knn_sizes)
        if not sizes or min(sizes) < 1:
            raise SpecError(f"sizes must be positive integers; got {sizes} instead")
        if self.seed < 0:
            raise SpecError(f"seed must be >= 0; got {self.seed} instead")
        for name in ("generate_partition_mb", "score_partition_mb"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise SpecError(f"{name} must be a finite number of MiB > 0; got {value} instead")

    @property
    def report_path(self) -> Path:
        """Where scale.json goes (default: `work/scale.json`)."""
        return self.out or self.work / "scale.json"


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


@dataclass
class Measurement:
    """RSS samples' peak and median (bytes, per worker) and summed worker CPU seconds."""

    rss: dict[str, dict[str, int]] = field(default_factory=dict)
    cpu: float = 0.0

    def memory(self) -> dict[str, Any]:
        """Peak RSS in MiB (the largest worker's and each worker's), and the largest median."""
        per_worker = {w: round(r["peak"] / MB, 1) for w, r in sorted(self.rss.items())}
        medians = [r["median"] / MB for r in self.rss.values()]
        return {"peak_worker_rss_mb": max(per_worker.values(), default=0.0),
                "peak_rss_mb_per_worker": per_worker,
                "median_worker_rss_mb": round(max(medians, default=0.0), 1),
                # Other load on the machine inflates wall and CPU time; recorded to judge that.
                "load_average_1m": round(os.getloadavg()[0], 2)}


@contextlib.contextmanager
def measured(client: Client, interval: float) -> Iterator[Measurement]:
    """Sample every worker's RSS and CPU time around the body; filled in on exit."""
    result = Measurement()
    before = client.run(cpu_seconds)
    client.run(start_rss_sampler, interval)
    try:
        yield result
    finally:
        result.rss = client.run(stop_rss_sampler)
        after = client.run(cpu_seconds)
        result.cpu = sum(after[w] - before.get(w, 0.0) for w in after)


def expand_spec(spec: ScaleSpec, bench: Path, n: int) -> ExpandSpec:
    """The expanded split `expanded-<n>` of the benchmark store."""
    return ExpandSpec(store=bench, n=n, seed=spec.seed, params=spec.params,
                      partition_mb=spec.generate_partition_mb, group=f"expanded-{n}")


def check_outputs(spec: ScaleSpec, bench: Path) -> None:
    """StoreExistsError, before any work, when an output location holds what the job did not
    make: WORK a file, the report present, WORK/scale.zarr not a benchmark store (or a link),
    or one of its `expanded-<n>` not an expanded split."""
    if spec.work.exists() and not spec.work.is_dir():
        raise StoreExistsError(f"--work {spec.work} is a file; expected a folder")
    if spec.report_path.exists() or spec.report_path.is_symlink():
        raise StoreExistsError(f"{spec.report_path} exists; choose another --out or move it")
    if not bench.exists() and not bench.is_symlink():
        return
    if bench.is_symlink() or not is_store(bench):
        raise StoreExistsError(
            f"{bench} exists and is not a benchmark store of jobs.scale (a mnist-dist store, "
            "not a link); move it away or choose another --work"
        )
    for n in sorted({*spec.mlp_sizes, *spec.knn_sizes}):
        check_group_target(expand_spec(spec, bench, n))


def is_store(path: Path) -> bool:
    """True when `path` is a complete mnist-dist store."""
    try:
        open_store(path)
    except StoreNotFoundError:
        return False
    return True


def prepare_bench_store(base: Path, bench: Path) -> None:
    """Copy the base store's root metadata and train/test arrays into `bench` (once), through
    a fresh temporary sibling: nothing there but what this call made is ever deleted."""
    open_store(base)  # a clear error when the base store is missing
    if bench.exists():
        return
    bench.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(bench)
    try:
        tmp.mkdir()
        shutil.copy2(base / "zarr.json", tmp / "zarr.json")
        for split in ("train", "test"):
            shutil.copytree(base / split, tmp / split)
        tmp.rename(bench)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def generate(client: Client, spec: ScaleSpec, bench: Path, n: int) -> dict[str, Any]:
    """Make group `expanded-<n>` (reused when present); the record of that phase."""
    expand = expand_spec(spec, bench, n)
    with measured(client, spec.sample_seconds) as usage:
        result = expand_store(client, expand)
    record: dict[str, Any] = {
        "n": n, "group": result.group, "reused": result.reused,
        "partitions": result.partitions, "partition_rows": result.partition_rows,
        "chunk_rows": result.chunk_rows, "group_bytes": result.group_bytes,
        "bytes_per_digit": round(result.group_bytes / n, 1),
    }
    if not result.reused:
        record.update({
            "seconds": round(result.wall_seconds, 2),
            "digits_per_s": round(n / result.wall_seconds, 1),
            "cpu_us_per_digit": round(1e6 * usage.cpu / n, 2),
            **usage.memory(),
        })
    log.info("generation n=%d: %s", n, record)
    return record


def score_one(
    client: Client, spec: ScaleSpec, bench: Path, n: int, model: str, ref: ModelRef
) -> dict[str, Any]:
    """Score group `expanded-<n>` with `model` only, on fresh workers; the record of that run."""
    group = f"expanded-{n}"
    rows = partition_rows(spec.score_partition_mb, SCORE_BYTES_PER_ROW,
                          chunk_rows_of(bench, f"{group}/images"))
    # A fresh name: a folder already there (anyone's) is never deleted.
    run_dir = temporary_sibling(spec.work / "runs" / f"{model}-{n}")
    payload = ship_models_if_needed(client, ref)
    ort_threads = ort_threads_for(client)
    loaded = client.run(warm_worker, ref, ort_threads) if payload is None else {}
    job = ScoreJob(store=str(bench.resolve()), run_dir=run_dir, models=ref, split=group,
                   partition_rows=rows, ort_threads=ort_threads, model_names=(model,))
    try:
        with measured(client, spec.sample_seconds) as usage:
            result = score_graph(client, job, show_progress=False, payload=payload)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    confusion = result.confusion[model]
    record = {
        "model": model, "n": n, "partitions": result.partitions, "partition_rows": rows,
        "seconds": round(result.wall_seconds, 2),
        "images_per_s": round(n / result.wall_seconds, 1),
        "wall_us_per_image": round(1e6 * result.wall_seconds / n, 3),
        "task_us_per_image": round(1e6 * result.task_seconds[model] / n, 3),
        "cpu_us_per_image": round(1e6 * usage.cpu / n, 3),
        **usage.memory(),
        "rss_after_model_load_mb": round(max(loaded.values(), default=0) / MB, 1),
        "accuracy": round(accuracy(confusion), 5),
        "per_class_accuracy": [None if a is None else round(a, 5)
                               for a in per_class_accuracy(confusion)],
    }
    log.info("scoring %s n=%d: %s", model, n, record)
    return record


def spread(values: list[float]) -> float:
    """Largest relative deviation from the median, e.g. 0.08 for ±8 %."""
    middle = statistics.median(values)
    return max(abs(v / middle - 1.0) for v in values) if middle else 0.0


def summarise(scoring: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: cost-per-image spread across sizes and the peak-memory ratio."""
    summary: dict[str, Any] = {}
    for model in sorted({r["model"] for r in scoring}):
        runs = sorted((r for r in scoring if r["model"] == model), key=lambda r: r["n"])
        costs = {key: spread([r[key] for r in runs])
                 for key in ("wall_us_per_image", "task_us_per_image", "cpu_us_per_image")}
        summary[model] = {
            "sizes": [r["n"] for r in runs],
            "cost_spread": {k: round(v, 4) for k, v in costs.items()},
            "cost_within_tolerance": {k: v <= TOLERANCE for k, v in costs.items()},
            **memory_summary(runs),
        }
    return summary


def memory_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak and median worker RSS per size, and the ratio of the largest to the smallest peak."""
    peaks = [r["peak_worker_rss_mb"] for r in runs]
    return {
        "peak_worker_rss_mb": peaks,
        "median_worker_rss_mb": [r.get("median_worker_rss_mb") for r in runs],
        "peak_rss_ratio_max_over_min": round(max(peaks) / min(peaks), 3) if peaks else None,
    }


def run_scale(spec: ScaleSpec) -> dict[str, Any]:
    """Run every phase; scale.json is rewritten after each, so partial results survive."""
    bench = spec.work / "scale.zarr"
    check_outputs(spec, bench)
    ref = ModelRef.from_directory(spec.models)
    prepare_bench_store(spec.store, bench)
    sizes = sorted(set(spec.mlp_sizes) | set(spec.knn_sizes))
    report: dict[str, Any] = {
        "format": SCALE_FORMAT,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": str(bench.resolve()), "seed": spec.seed, "deformation": spec.params.as_dict(),
        "partition_mb": {"generate": spec.generate_partition_mb,
                         "score": spec.score_partition_mb},
        "machine": {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total
                                                              / 1e9, 1),
                    "platform": platform.platform()},
        "generation": [], "scoring": [],
        "effective_settings": effective_settings(),
    }
    for n in sizes:
        with connect(spec.cluster) as client:
            report["cluster"] = cluster_facts(client)
            report["generation"].append(generate(client, spec, bench, n))
        write_json_atomic(spec.report_path, report)
        for model, wanted in (("mlp", spec.mlp_sizes), ("knn", spec.knn_sizes)):
            if n in wanted:
                with connect(spec.cluster) as client:
                    report["scoring"].append(score_one(client, spec, bench, n, model, ref))
                report["summary"] = summarise(report["scoring"])
                write_json_atomic(spec.report_path, report)
    generated = [g for g in report["generation"] if not g["reused"]]
    report["generation_summary"] = memory_summary(generated) if generated else {}
    report["store_bytes"] = directory_bytes(bench)
    report["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if spec.cleanup:
        shutil.rmtree(bench)
        report["store_removed"] = True
    write_json_atomic(spec.report_path, report)
    return report


def summary_text(report: dict[str, Any]) -> str:
    """A short table of the figures for the terminal."""
    lines = ["generation: n, digits/s, CPU µs/digit, peak worker MiB, B/digit on disk"]
    for g in report["generation"]:
        lines.append(f"  {g['n']:>10,} {g.get('digits_per_s', '(reused)'):>10} "
                     f"{g.get('cpu_us_per_digit', '-'):>8} {g.get('peak_worker_rss_mb', '-'):>8} "
                     f"{g['bytes_per_digit']:>7}")
    lines.append("scoring: model, n, images/s, wall/task/CPU µs per image, peak worker MiB, acc")
    for r in report["scoring"]:
        lines.append(f"  {r['model']} {r['n']:>10,} {r['images_per_s']:>10} "
                     f"{r['wall_us_per_image']:>9} {r['task_us_per_image']:>9} "
                     f"{r['cpu_us_per_image']:>9} {r['peak_worker_rss_mb']:>8} "
                     f"{r['accuracy']:.4f}")
    for model, s in report.get("summary", {}).items():
        lines.append(f"{model}: cost spread {s['cost_spread']}, peak RSS max/min "
                     f"{s['peak_rss_ratio_max_over_min']}")
    return "\n".join(lines)
