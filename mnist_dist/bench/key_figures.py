"""The bench's key figures (`figures`: the flat numbers the table leads with, the targets
test and the history compares) and its targets (`targets`: each figure against its bar)."""

from __future__ import annotations

from typing import Any

# Targets of the performance issue: figure → (minimum, what it means).
TARGETS: dict[str, tuple[float, str]] = {
    "knn_fraction_of_roofline": (0.85, "exact KNN vs the 1-thread matmul roofline (paired)"),
    "knn_over_sklearn": (8.0, "exact KNN vs the scikit-learn brute reference (paired, 1 thread)"),
    "knn_over_faiss": (3.0, "exact KNN vs FAISS IndexFlatL2 on the test split (paired, 1 thread)"),
    "knn_worst_input_over_faiss": (1.5, "exact KNN on its worst hard input set vs FAISS (paired)"),
    "knn_gemm_over_best_sgemm": (0.75, "the search's GEMM rate vs the best 1-thread sgemm peak"),
    "knn_worst_input_over_test": (0.5, "exact KNN on its worst hard input set vs the test split"),
    "end_to_end_images_per_second": (3000.0, "main job end to end, both models, default cluster"),
    "end_to_end_over_before_bound_search": (2.5, "main job end to end vs 1,195 images/s before"),
    "knn_bound_over_shortlist": (1.0, "the bound search vs the shortlist search (tuning grid)"),
    "knn_agrees_with_sklearn": (1.0, "fraction of identical predictions, whole split"),
    "mlp_over_keras_batch1000": (10.0, "onnxruntime vs Keras model.predict at batch 1,000"),
    "mlp_over_keras_batch1": (100.0, "onnxruntime vs Keras model.predict at batch 1"),
    "mlp_fraction_of_roofline_batch1000": (0.85, "MLP at batch 1,000 vs the 1-thread roofline"),
    "dask_over_in_process": (0.90, "Dask end to end vs the same work in one process"),
    "score_over_in_process_with_load": (0.85, "fresh workers vs a fresh process, load timed"),
    "knn_ours_over_parallel_post_fit": (1.0, "ours vs dask-ml ParallelPostFit, KNN"),
    "mlp_ours_over_parallel_post_fit": (1.0, "ours vs dask-ml ParallelPostFit, ONNX MLP"),
}
# Targets that are maxima: figure → (maximum, what it means).
TARGET_MAXIMA: dict[str, tuple[float, str]] = {
    "knn_latency_p50_ms_batch1": (1.0, "exact KNN, one image per call, p50 (1 thread)"),
    "knn_max_query_ms": (20.0, "exact KNN, slowest single query over every input set"),
    "knn_calibration_seconds": (0.2, "the KNN's load-time choice of matmul kernel"),
    "worker_ready_seconds": (0.5, "a worker joining a running cluster until its models load"),
}
# The main job end to end before the bound search (2026-12-01, commit 79d64e7, both
# models, the default 2-worker LocalCluster, the 2-core machine kind the nightly bench runs on).
END_TO_END_BEFORE_BOUND_SEARCH = 1195.0
# Worker memory must not grow with the number of images: full split vs half, same partitions.
MEMORY_GROWTH_LIMIT = 1.10


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
        "mlp_fraction_of_roofline_batch1000": ratio(mlp_1000,
                                                    roof["images_per_second_1thread"]["mlp"]),
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
        **speed_figures(document),
    }


def speed_figures(document: dict[str, Any]) -> dict[str, Any]:
    """Ours against FAISS, the search's GEMM against each kernel's sgemm peak, the load-time
    kernel choice, and fresh workers (each None where not measured)."""
    faiss, gemm = document["knn_inputs"]["faiss"], document["knn_gemm"]
    sgemm, fresh = gemm.get("sgemm_gflops") or {}, document["fresh_workers"]
    return {
        "knn_over_faiss": faiss.get("knn_over_faiss"),
        "knn_worst_input_over_faiss": faiss.get("worst_over_faiss"),
        "knn_agrees_with_faiss": faiss.get("predictions_agree"),
        "sgemm_gflops_numpy": sgemm.get("numpy"),
        "sgemm_gflops_onnxruntime": sgemm.get("onnxruntime"),
        "knn_gemm_gflops": gemm.get("gemm_gflops"),
        "knn_gemm_over_best_sgemm": gemm.get("gemm_over_best_sgemm"),
        "knn_calibration_seconds": gemm.get("calibration_seconds"),
        "score_over_in_process_with_load": fresh.get("score_over_in_process_with_load"),
        "worker_ready_seconds": fresh.get("worker_ready_seconds"),
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
