"""`run_bench`: every measurement of `python -m jobs.bench` in one run, written as bench.json,
a short table and an HTML page, optionally appended to the nightly history."""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distributed import Client

import mnist_dist
from mnist_dist.atomic import write_bytes_atomic, write_json_atomic
from mnist_dist.bench import endtoend, fixed_cost, history, observability, render
from mnist_dist.bench.knn_inputs import knn_inputs_on_worker
from mnist_dist.bench.outputs import BENCH_JSON, SCHEMA, check_outputs
from mnist_dist.bench.roofline import (
    blas_facts,
    knn_flops,
    machine_facts,
    matmul_gflops,
    mlp_flops,
    rate_summary,
    roofline,
)
from mnist_dist.bench.sweep import BenchSweepSpec, sweep_on_worker
from mnist_dist.bench.tuning import tune_on_worker
from mnist_dist.cluster import ClusterSpec, cluster_facts, connect, ort_threads_for, workers_info
from mnist_dist.data.partitioning import default_score_rows
from mnist_dist.ensure import ensure_models
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.knn import load_knn
from mnist_dist.preparation.store import ensure_store
from mnist_dist.settings import effective_settings, setting_field
from mnist_dist.training.run import library_versions

log = logging.getLogger(__name__)

PARTITION_SIZES = (500, 1000, 3500)  # plus jobs.score's default, see BenchSpec.partitions
QUICK_BATCH_SIZES = (1, 10, 100)
QUICK_PARTITION_SIZES = (150,)
# Targets of the performance issue: figure → (minimum, what it means).
TARGETS: dict[str, tuple[float, str]] = {
    "knn_fraction_of_roofline": (0.85, "exact KNN vs the 1-thread matmul roofline (paired)"),
    "knn_over_sklearn": (10.0, "exact KNN vs the scikit-learn brute reference (paired, 1 thread)"),
    "knn_worst_input_over_test": (0.5, "exact KNN on its worst hard input set vs the test split"),
    "end_to_end_images_per_second": (3000.0, "main job end to end, both models, default cluster"),
    "end_to_end_over_before_bound_search": (2.5, "main job end to end vs 1,195 images/s before"),
    "knn_bound_over_shortlist": (1.0, "the bound search vs the shortlist search (tuning grid)"),
    "knn_agrees_with_sklearn": (1.0, "fraction of identical predictions, whole split"),
    "mlp_over_keras_batch1000": (10.0, "onnxruntime vs Keras model.predict at batch 1,000"),
    "mlp_over_keras_batch1": (100.0, "onnxruntime vs Keras model.predict at batch 1"),
    "dask_over_in_process": (0.90, "Dask end to end vs the same work in one process"),
    "knn_ours_over_parallel_post_fit": (1.0, "ours vs dask-ml ParallelPostFit, KNN"),
    "mlp_ours_over_parallel_post_fit": (1.0, "ours vs dask-ml ParallelPostFit, ONNX MLP"),
}
# Targets that are maxima: figure → (maximum, what it means).
TARGET_MAXIMA: dict[str, tuple[float, str]] = {
    "knn_latency_p50_ms_batch1": (2.0, "exact KNN, one image per call, p50 (1 thread)"),
    "knn_max_query_ms": (20.0, "exact KNN, slowest single query over every input set"),
}
# The main job end to end before the bound search (2026-12-01, commit 79d64e7, both
# models, the default 2-worker LocalCluster, the 2-core machine kind the nightly bench runs on).
END_TO_END_BEFORE_BOUND_SEARCH = 1195.0
# Worker memory must not grow with the number of images: full split vs half, same partitions.
MEMORY_GROWTH_LIMIT = 1.10


@dataclass(frozen=True)
class BenchSpec:
    """What `jobs.bench` measures and where it writes; `quick` shrinks everything for CI."""

    store: Path = setting_field("store", Path)
    models: Path = setting_field("models", Path)
    out: Path = setting_field("bench.out", Path)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    split: str = setting_field("score.split")
    quick: bool = False
    baselines: bool = True
    history: Path | None = None
    batch_sizes: tuple[int, ...] | None = None
    partition_sizes: tuple[int, ...] | None = None
    default_partition_rows: int = field(default_factory=default_score_rows)

    def sweep(self) -> BenchSweepSpec:
        """Timing settings: full, or a quick smoke test."""
        if self.quick:
            return BenchSweepSpec(
                batch_sizes=self.batch_sizes or QUICK_BATCH_SIZES, min_repeats=2,
                min_seconds=0.05, max_seconds=2.0, matmul_size=512, paired_rounds=2,
            )
        return BenchSweepSpec(batch_sizes=self.batch_sizes) if self.batch_sizes else BenchSweepSpec()

    def partitions(self) -> tuple[int, ...]:
        """Partition sizes of the end-to-end runs, always including the default."""
        sizes = self.partition_sizes or (QUICK_PARTITION_SIZES if self.quick else PARTITION_SIZES)
        return tuple(sorted({*sizes, self.default_partition_rows}))

    def repeats(self) -> dict[int, int]:
        """End-to-end repeats per partition size (the median is reported): 3 for the default,
        whose figures are the targets, 1 for the others; 1 for all when quick."""
        return {rows: 1 if self.quick or rows != self.default_partition_rows else 3
                for rows in self.partitions()}

    def hard_inputs(self) -> tuple[int, int, int]:
        """KNN hard-input timing: images per call, paired rounds, single queries per set."""
        return (32, 1, 4) if self.quick else (500, 3, 50)

    def tuning_images(self) -> int:
        """Images per timed call of the settings grid (a partition's worth when not quick)."""
        return 64 if self.quick else self.default_partition_rows


def commit_of(root: Path) -> str | None:
    """The checked-out commit: $BENCH_COMMIT or $GITHUB_SHA, else read from `root/.git`."""
    for variable in ("BENCH_COMMIT", "GITHUB_SHA"):
        if os.environ.get(variable):
            return os.environ[variable]
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def ensure_inputs(spec: BenchSpec) -> ModelRef:
    """The store and models the bench measures, built when missing: models with the study's
    settings, since they may land in the folder that `jobs.score` reads."""
    ensure_store(spec.store)
    ensure_models(spec.models, spec.store)
    return ModelRef.from_directory(spec.models)


def run_bench(spec: BenchSpec) -> dict[str, Any]:
    """Run every measurement; returns the bench document (also written under `spec.out`)."""
    check_outputs(spec.out, spec.history)
    past = history.read_history(spec.history) if spec.history is not None else []  # before work
    ref = ensure_inputs(spec)
    store = str(spec.store.resolve())
    spec.out.mkdir(parents=True, exist_ok=True)
    sweep_spec = spec.sweep()
    cores = os.cpu_count() or 1
    log.info("matmul rate of this process on %d threads", cores)
    all_threads = matmul_gflops(cores, sweep_spec.matmul_size)
    knn_model = load_knn(spec.models)
    default_rows = spec.default_partition_rows
    with tempfile.TemporaryDirectory(prefix="bench-", dir=spec.out) as tmp:
        workdir = Path(tmp)
        with connect(spec.cluster) as client:
            ort_threads = ort_threads_for(client)
            facts = {**cluster_facts(client), "ort_threads": ort_threads}
            # Scoring first, on workers holding nothing but our models: the baselines come
            # last because TensorFlow and scikit-learn's copy of the reference stay resident.
            facts["worker_rss_models_loaded"] = endtoend.warm(client, ref, ort_threads)
            end_to_end = endtoend.end_to_end(
                client, store, spec.split, ref, spec.partitions(), ort_threads,
                facts["threads"], spec.repeats(), workdir,
            )
            default_run = next(r for r in end_to_end if r["partition_rows"] == default_rows)
            overhead = observability.measure(client, spec, store, ref, ort_threads, workdir)
            memory = endtoend.memory_vs_images(client, store, spec.split, ref, default_rows,
                                               ort_threads, workdir, default_run)
            peers = endtoend.peers(client, store, spec.split, ref, knn_model, default_rows,
                                   ort_threads)
            warm, job = fixed_cost.warm(client, store, spec.split, ref, spec.quick, workdir)
            swept, tuning, hard = on_one_worker(
                client, spec, ref, store, sweep_spec, ort_threads, cores
            )
            cluster_rates = client.run(matmul_gflops, 1, sweep_spec.matmul_size)
        scaling = run_scaling(spec, store, ref, facts, default_run, workdir)
        fixed = fixed_cost.section(warm, None if spec.quick else fixed_cost.fresh(job, workdir))
    flops = {"knn": knn_flops(swept["n_reference"]), "mlp": mlp_flops(swept["hidden"])}
    cluster_rate = sum(statistics.median(samples) for samples in cluster_rates.values())
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit_of(Path(mnist_dist.__file__).resolve().parents[1]),
        "code_version": mnist_dist.__version__,
        "quick": spec.quick,
        "settings": {**{k: str(v) for k, v in asdict(spec).items() if k != "cluster"},
                     "cluster": asdict(spec.cluster), "sweep": asdict(sweep_spec),
                     "partition_sizes": list(spec.partitions())},
        "effective_settings": effective_settings(),
        "machine": {**machine_facts(), "blas": blas_facts(),
                    "blas_in_worker": swept["blas_in_worker"], "versions": library_versions()},
        "cluster": facts,
        "roofline": {
            **roofline(swept["matmul_1thread"], all_threads, cores, flops),
            "gflops_cluster": {"sum_of_worker_medians": cluster_rate,
                               "per_worker": {w: rate_summary(s) for w, s in cluster_rates.items()}},
        },
        "knn_settings": swept["knn"],
        "model_bytes": swept["model_bytes"],
        "throughput": swept["rows"],
        "paired": swept["paired"],
        "tuning": tuning,
        "knn_inputs": hard,
        "baselines": {"ran": spec.baselines and swept["skipped"] is None,
                      "skipped": swept["skipped"]},
        "end_to_end": end_to_end,
        "default_partition_rows": default_rows,
        "memory_vs_images": memory,
        "peers": peers,
        "scaling": scaling,
        "fixed_cost": fixed, "observability": overhead,
    }
    document["figures"] = figures(document)
    document["targets"] = (targets(document["figures"]) + fixed_cost.target_rows(fixed)
                           + observability.target_rows(overhead))
    finish(document, spec, past)
    return document


def on_one_worker(
    client: Client, spec: BenchSpec, ref: ModelRef, store: str, sweep_spec: BenchSweepSpec,
    ort_threads: int, cores: int,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The batch sweep, the settings grid and the KNN's hard inputs, each run on one worker."""
    worker = min(workers_info(client))
    log.info("sweeping batch sizes %s on %s", sweep_spec.batch_sizes, worker)
    swept = client.submit(
        sweep_on_worker, ref, store, spec.split, sweep_spec, ort_threads, spec.baselines,
        workers=[worker], pure=False,
    ).result()
    log.info("timing KNN and onnxruntime settings on %s", worker)
    tuning = client.submit(
        tune_on_worker, ref, store, spec.split, spec.tuning_images(),
        1 if spec.quick else 3, cores, workers=[worker], pure=False,
    ).result()
    log.info("timing the KNN on hard inputs on %s", worker)
    hard = client.submit(
        knn_inputs_on_worker, ref, store, spec.split, *spec.hard_inputs(),
        workers=[worker], pure=False,
    ).result()
    return swept, tuning, hard


def run_scaling(
    spec: BenchSpec, store: str, ref: ModelRef, facts: dict[str, Any],
    default_run: dict[str, Any], workdir: Path,
) -> dict[str, Any]:
    """1, 2, … local workers (LocalCluster only); the main cluster's own run is reused."""
    if spec.cluster.scheduler is not None:
        return {"skipped": "scaling runs only on a LocalCluster (a scheduler was given)",
                "runs": []}
    n_workers = facts["workers"]
    reuse = {n_workers: {"images": default_run["images"],
                         "seconds": statistics.median(default_run["dask_seconds"]),
                         "peak_rss": default_run["worker_peak_rss"]}}
    counts = tuple(range(1, n_workers + 1))
    runs = endtoend.scaling(counts, store, spec.split, ref, spec.default_partition_rows,
                            workdir, reuse)
    return {"skipped": None, "runs": runs}


def throughput_row(document: dict[str, Any], model: str, batch: int) -> dict[str, Any] | None:
    """The sweep row of `model` at `batch`, if it was measured."""
    for row in document["throughput"]:
        if row["model"] == model and row["batch_size"] == batch:
            return row
    return None


def rate_at(document: dict[str, Any], model: str, batch: int) -> float | None:
    """Median images/s of `model` at `batch`, if measured."""
    row = throughput_row(document, model, batch)
    return None if row is None else float(row["images_per_second"])


def best_rate(document: dict[str, Any], model: str) -> float | None:
    """The highest median images/s of `model` over the batch sizes."""
    rates = [r["images_per_second"] for r in document["throughput"] if r["model"] == model]
    return max(rates) if rates else None


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return a / b if a is not None and b else None


def figures(document: dict[str, Any]) -> dict[str, Any]:
    """The flat key figures: what the table leads with, targets test and history compares."""
    roof = document["roofline"]
    default = next(r for r in document["end_to_end"]
                   if r["partition_rows"] == document["default_partition_rows"])
    knn, sklearn = best_rate(document, "knn"), best_rate(document, "sklearn_knn")
    mlp_1000, keras_1000 = (rate_at(document, m, 1000) for m in ("mlp", "keras_mlp"))
    mlp_1, keras_1 = (rate_at(document, m, 1) for m in ("mlp", "keras_mlp"))
    mlp_1_row = throughput_row(document, "mlp", 1)
    knn_1_row = throughput_row(document, "knn", 1)
    peers = document["peers"]
    cluster_limit = roof["gflops_cluster"]["sum_of_worker_medians"] * 1e9 / sum(
        roof["flops_per_image"].values())
    return {
        "matmul_gflops_1thread": roof["gflops_1thread"]["median"],
        "matmul_gflops_all": roof["gflops_all"]["median"],
        "matmul_gflops_cluster": roof["gflops_cluster"]["sum_of_worker_medians"],
        "knn_images_per_second": knn,
        "knn_roofline_images_per_second": roof["images_per_second_1thread"]["knn"],
        "knn_fraction_of_roofline": document["paired"]["knn_fraction_of_roofline"],
        "knn_over_sklearn": document["paired"]["knn_over_sklearn"],
        "knn_gemm_fraction_of_matmul": document["paired"]["knn_gemm_fraction"],
        "knn_fraction_of_roofline_sweep": ratio(knn, roof["images_per_second_1thread"]["knn"]),
        "sklearn_knn_images_per_second": sklearn,
        "knn_over_sklearn_sweep": ratio(knn, sklearn),
        "knn_agrees_with_sklearn": peers["knn"]["predictions_agree"],
        "knn_worst_input_over_test": document["knn_inputs"]["worst_over_test"],
        "knn_max_query_ms": document["knn_inputs"]["max_single_query_ms"],
        "knn_latency_p50_ms_batch1": knn_1_row["latency_p50_ms"] if knn_1_row else None,
        "knn_gemm_share": default_knn_tuning(document).get("gemm_share"),
        "faiss_images_per_second": document["tuning"]["faiss"].get("images_per_second"),
        "mlp_images_per_second": best_rate(document, "mlp"),
        "mlp_fraction_of_roofline": ratio(best_rate(document, "mlp"),
                                          roof["images_per_second_1thread"]["mlp"]),
        "mlp_images_per_second_batch1000": mlp_1000,
        "mlp_latency_p50_ms_batch1": mlp_1_row["latency_p50_ms"] if mlp_1_row else None,
        "mlp_over_keras_batch1000": ratio(mlp_1000, keras_1000),
        "mlp_over_keras_batch1": ratio(mlp_1, keras_1),
        "end_to_end_images_per_second": default["dask_images_per_second"],
        "end_to_end_over_before_bound_search": ratio(default["dask_images_per_second"],
                                                END_TO_END_BEFORE_BOUND_SEARCH),
        "knn_bound_over_shortlist": ratio(default_knn_tuning(document).get("images_per_second"),
                                          shortlist_tuning(document).get("images_per_second")),
        "end_to_end_fraction_of_cluster_roofline": default["dask_images_per_second"]
        / cluster_limit,
        "dask_over_in_process": default["dask_over_in_process"],
        "knn_ours_over_parallel_post_fit": peers["knn"]["ours_over_peer"],
        "mlp_ours_over_parallel_post_fit": peers["mlp"]["ours_over_peer"],
        "max_worker_peak_rss": default["max_worker_peak_rss"],
        "memory_full_over_half": document["memory_vs_images"]["peak_ratio_full_over_half"],
    }


def default_knn_tuning(document: dict[str, Any]) -> dict[str, Any]:
    """The tuning row of the KNN's default settings: how much of its time is the GEMM."""
    settings = document["knn_settings"]
    for row in document["tuning"]["knn"]:
        if (row.get("search", "bound"), row["block_rows"], row["shortlist"]) == (
                settings.get("search", "bound"), settings["block_rows"], settings["shortlist"]):
            return row
    return {}


def shortlist_tuning(document: dict[str, Any]) -> dict[str, Any]:
    """The tuning row of the shortlist search at its former defaults (block 256, shortlist 8)."""
    for row in document["tuning"]["knn"]:
        if (row.get("search"), row["block_rows"], row["shortlist"]) == ("shortlist", 256, 8):
            return row
    return {}


def targets(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue: the measured value, the bar, met or not (None: not measured)."""
    rows = []
    for name, (minimum, meaning) in TARGETS.items():
        value = values.get(name)
        rows.append({"figure": name, "meaning": meaning, "value": value, "target": minimum,
                     "met": None if value is None else value >= minimum})
    for name, (maximum, meaning) in TARGET_MAXIMA.items():
        value = values.get(name)
        rows.append({"figure": name, "meaning": meaning, "value": value, "target": maximum,
                     "met": None if value is None else value <= maximum})
    growth = values.get("memory_full_over_half")
    rows.append({"figure": "memory_full_over_half",
                 "meaning": "peak worker memory, all images vs half (bounded: not growing)",
                 "value": growth, "target": MEMORY_GROWTH_LIMIT,
                 "met": None if growth is None else growth <= MEMORY_GROWTH_LIMIT})
    return rows


def finish(document: dict[str, Any], spec: BenchSpec, past: list[dict[str, Any]]) -> None:
    """Compare with the history read before the work (`past`) and append to it, then write
    bench.json, the table and the page."""
    if spec.history is not None:
        found = history.find_regressions(document, past)
        document["regressions"] = history.regressions_as_dicts(found)
        document["history"] = {"path": str(spec.history), "earlier_runs": len(past),
                               "same_machine": sum(history.machine_key(r)
                                                   == history.machine_key(document)
                                                   for r in past)}
        history.append_record(spec.history, document)
    else:
        document["regressions"] = []
    write_json_atomic(spec.out / BENCH_JSON, document)
    write_bytes_atomic(spec.out / render.TABLE_NAME, (render.table_text(document) + "\n").encode())
    render.write_html(document, [*past, document] if spec.history else [], spec.out)
