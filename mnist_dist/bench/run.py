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
from mnist_dist.bench import endtoend, fixed_cost, fresh, history, observability, render
from mnist_dist.bench.key_figures import (  # the targets, re-exported: read here too
    TARGET_MAXIMA,  # noqa: F401
    TARGETS,  # noqa: F401
    figures,
    targets,
)
from mnist_dist.bench.knn_gemm import SGEMM_SIZE, gemm_on_worker
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
        return (32, 1, 4) if self.quick else (500, 5, 50)

    def knn_gemm(self) -> tuple[int, int, int]:
        """The GEMM against the sgemm peaks: test images searched, paired rounds, sgemm size."""
        return (100, 2, 512) if self.quick else (self.sweep().paired_batch, 5, SGEMM_SIZE)

    def fresh_repeats(self) -> int:
        """Rounds of the fresh-worker runs (a new LocalCluster and a new process each)."""
        return 1 if self.quick else 3

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
            on_worker = on_one_worker(client, spec, ref, store, sweep_spec, ort_threads, cores)
            swept = on_worker.pop("swept")
            cluster_rates = client.run(matmul_gflops, 1, sweep_spec.matmul_size)
        scaling = run_scaling(spec, store, ref, facts, default_run, workdir)
        fresh_workers = fresh.measure(spec.cluster, facts, store, spec.split, ref, default_rows,
                                      ort_threads, spec.fresh_repeats(), workdir)
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
        **on_worker,  # tuning, knn_inputs, knn_gemm
        "baselines": {"ran": spec.baselines and swept["skipped"] is None,
                      "skipped": swept["skipped"]},
        "end_to_end": end_to_end,
        "default_partition_rows": default_rows,
        "memory_vs_images": memory,
        "peers": peers,
        "scaling": scaling,
        "fixed_cost": fixed, "observability": overhead, "fresh_workers": fresh_workers,
    }
    document["figures"] = figures(document)
    document["targets"] = (targets(document["figures"]) + fixed_cost.target_rows(fixed)
                           + observability.target_rows(overhead))
    finish(document, spec, past)
    return document


def on_one_worker(
    client: Client, spec: BenchSpec, ref: ModelRef, store: str, sweep_spec: BenchSweepSpec,
    ort_threads: int, cores: int,
) -> dict[str, dict[str, Any]]:
    """The batch sweep, the settings grid, the KNN's hard inputs (and FAISS) and its GEMM
    against the sgemm peaks, each run on one worker; by their names in bench.json."""
    worker = min(workers_info(client))

    def on_worker(what: str, function: Any, *args: Any) -> dict[str, Any]:
        log.info("%s on %s", what, worker)
        return client.submit(function, *args, workers=[worker], pure=False).result()

    return {
        "swept": on_worker(f"sweeping batch sizes {sweep_spec.batch_sizes}", sweep_on_worker,
                           ref, store, spec.split, sweep_spec, ort_threads, spec.baselines),
        "tuning": on_worker("timing KNN and onnxruntime settings", tune_on_worker, ref, store,
                            spec.split, spec.tuning_images(), 1 if spec.quick else 3, cores),
        "knn_inputs": on_worker("timing the KNN on hard inputs and FAISS", knn_inputs_on_worker,
                                ref, store, spec.split, *spec.hard_inputs()),
        "knn_gemm": on_worker("timing the KNN's GEMM against the sgemm peaks", gemm_on_worker,
                              ref, store, spec.split, *spec.knn_gemm()),
    }


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
