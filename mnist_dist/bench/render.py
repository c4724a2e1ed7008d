"""Renderings of bench.json: a short text table, and the PNG plots of its HTML page (see
`mnist_dist.bench.page`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_dist.bench.history import KEY_FIGURES, lookup, machine_key
from mnist_dist.report import plots
from mnist_dist.report.formats import HYPHEN, data_uri, fixed

TABLE_NAME = "bench.txt"
HTML_NAME = "bench.html"
MODEL_LABELS = {
    "knn": "KNN (ours)", "sklearn_knn": "KNeighborsClassifier.predict",
    "mlp": "MLP (onnxruntime, ours)", "keras_mlp": "Keras model.predict",
}
DPI = 100
STYLE: dict[Any, Any] = {}  # matplotlib's own defaults, not the score report's style


def table_text(doc: dict[str, Any]) -> str:
    """The short human table printed by `jobs.bench` and saved as bench.txt."""
    lines = [
        *roofline_lines(doc), "", *throughput_lines(doc), "", *tuning_lines(doc),
        *speed_lines(doc), "", *end_to_end_lines(doc), *memory_lines(doc), "",
        *fixed_cost_lines(doc), *fresh_lines(doc), "",
        *target_lines(doc),
    ]
    fig = doc["figures"]
    lines.append(f"key figures: {fig['knn_images_per_second'] or 0:,.0f} KNN images/s, "
                 f"{fig['end_to_end_images_per_second']:,.0f} end-to-end images/s")
    return "\n".join(lines)


def roofline_lines(doc: dict[str, Any]) -> list[str]:
    """The run's header line and the float32 matmul roofline with its per-image limits."""
    roof = doc["roofline"]
    return [
        (f"bench {doc['created']}  commit {doc.get('commit') or HYPHEN}  "
         f"{doc['machine']['cpu']} ({doc['machine']['cores']} cores)"
         + ("  [quick]" if doc["quick"] else "")),
        (f"roofline: float32 matmul {fixed(roof['gflops_1thread']['median'], 1)} GFLOP/s on 1 "
         f"thread (worker), {fixed(roof['gflops_all']['median'], 1)} on "
         f"{roof['gflops_all']['threads']} threads; cluster "
         f"{fixed(roof['gflops_cluster']['sum_of_worker_medians'], 1)}"),
        (f"  limit per thread: KNN {fixed(roof['images_per_second_1thread']['knn'])} images/s "
         f"({roof['flops_per_image']['knn'] / 1e6:.1f} MFLOP/image), MLP "
         f"{fixed(roof['images_per_second_1thread']['mlp'])} images/s "
         f"({roof['flops_per_image']['mlp'] / 1e6:.2f} MFLOP/image)"),
    ]


def throughput_lines(doc: dict[str, Any]) -> list[str]:
    """One line per (predictor, batch size) on one worker thread, then the paired rounds."""
    lines = [(f"{'predictor (1 worker thread)':<30} {'batch':>6} {'images/s':>11} {'p50 ms':>9} "
              f"{'p95 ms':>9}")]
    for row in doc["throughput"]:
        lines.append(
            f"{MODEL_LABELS.get(row['model'], row['model']):<30} {row['batch_size']:>6} "
            f"{fixed(row['images_per_second']):>11} {row['latency_p50_ms']:>9.3f} "
            f"{row['latency_p95_ms']:>9.3f}"
        )
    paired = doc["paired"]
    lines.append(
        f"paired rounds (batch {paired['batch_size']}, {len(paired['rounds'])} rounds of matmul, "
        f"ours, scikit-learn, matmul): KNN at {paired['knn_fraction_of_roofline']:.2f} of the "
        f"roofline (nominal 2·784·N FLOPs; its GEMMs run "
        f"{paired['gemm_flops_per_image'] / 1e6:.1f} MFLOP/image at "
        f"{paired['knn_gemm_fraction']:.2f} of the matmul rate)"
        + ("" if paired["knn_over_sklearn"] is None
           else f", x{paired['knn_over_sklearn']:.2f} scikit-learn"))
    if doc["baselines"]["skipped"]:
        lines.append(f"  note: {doc['baselines']['skipped']}")
    return lines


def tuning_lines(doc: dict[str, Any]) -> list[str]:
    """KNN settings, hard inputs, FAISS and onnxruntime settings, one line each."""
    tuning, hard, faiss = doc["tuning"], doc["knn_inputs"], doc["tuning"]["faiss"]
    return [
        f"KNN settings ({tuning['images']} images/call): " + ", ".join(
            f"block {r['block_rows']}/shortlist {r['shortlist']} {fixed(r['images_per_second'])}"
            f" (GEMM {100 * r['gemm_share']:.0f}%)" for r in tuning["knn"]),
        f"KNN hard inputs ({hard['images']} images/call, {hard['rounds']} paired rounds, "
        "1 thread): " + ", ".join(
            f"{r['input']} {fixed(r['images_per_second'])}"
            + ("" if r["over_test"] is None else f" (x{r['over_test']:.2f})")
            + f" max {r['max_single_query_ms']:.1f} ms" for r in hard["rows"]),
        "FAISS IndexFlatL2: " + (
            f"{fixed(faiss['images_per_second'])} images/s (agrees "
            f"{faiss['predictions_agree']:.4f})" if faiss["installed"] else "not installed"),
        "onnxruntime: " + ", ".join(
            f"{r['graph_optimization']}/{r['intra_op_threads']}t/b{r['batch_size']} "
            f"{fixed(r['images_per_second'])}" for r in tuning["ort"]),
    ]


def speed_lines(doc: dict[str, Any]) -> list[str]:
    """Ours against FAISS, the search's GEMM against each kernel's sgemm peak, its seconds per
    phase, and the kernel chosen per row count when the worker loaded the model."""
    faiss, gemm = doc["knn_inputs"]["faiss"], doc["knn_gemm"]
    lines = [
        f"KNN vs FAISS {faiss['index']}, paired rounds: x{faiss['knn_over_faiss']:.2f} on the "
        f"test split, x{faiss['worst_over_faiss']:.2f} on its worst set ({faiss['worst_input']});"
        f" FAISS {fixed(faiss['images_per_second'])} images/s, predictions agree "
        f"{faiss['predictions_agree']:.4f}" if faiss["installed"] else
        "KNN vs FAISS: not installed"]
    if gemm["skipped"]:
        return [*lines, f"KNN GEMM: {gemm['skipped']}"]
    peaks = ", ".join(f"{name} {fixed(rate, 1)}" for name, rate in gemm["sgemm_gflops"].items())
    load = gemm["load_seconds"]
    return [
        *lines,
        (f"sgemm peak, 1 thread, {gemm['sgemm_size']}²: {peaks} GFLOP/s; the search's GEMM "
         f"{fixed(gemm['gemm_gflops'], 1)} GFLOP/s, {gemm['gemm_over_best_sgemm']:.2f} of the "
         "best"),
        f"KNN search phases ({gemm['images']:,} test images, ms): " + ", ".join(
            f"{name} {1e3 * seconds:.2f}" for name, seconds in gemm["phases"].items())
        + f" of {1e3 * gemm['wall_seconds']:.2f} wall",
        "KNN kernel chosen at load: " + ", ".join(
            f"≥{c['rows']} rows {c['backend']}" for c in gemm["choices"])
        + f" (calibration {gemm['calibration_seconds']:.3f} s; whole model load "
        + (HYPHEN if load is None else f"{load:.2f}") + " s)",
    ]


def end_to_end_lines(doc: dict[str, Any]) -> list[str]:
    """Dask against one process per partition size, the dask-ml peers, and scaling."""
    lines = [(f"{'end to end: partition':<24} {'Dask img/s':>11} {'1 process':>11} "
              f"{'ratio':>6} {'peak MB/worker':>15}")]
    for row in doc["end_to_end"]:
        mark = " (default)" if row["partition_rows"] == doc["default_partition_rows"] else ""
        lines.append(
            f"{str(row['partition_rows']) + mark:<24} {fixed(row['dask_images_per_second']):>11} "
            f"{fixed(row['in_process_images_per_second']):>11} "
            f"{row['dask_over_in_process']:>6.2f} {row['max_worker_peak_rss'] / 2**20:>15,.0f}"
        )
    for name in ("knn", "mlp"):
        peer = doc["peers"][name]
        lines.append(
            f"peer {name}: ours {fixed(peer['ours_images_per_second'])} images/s vs "
            f"{peer['peer']} {fixed(peer['peer_images_per_second'])} "
            f"(x{peer['ours_over_peer']:.2f}, predictions agree {peer['predictions_agree']:.4f})"
        )
    scaling = doc["scaling"]
    if scaling["skipped"]:
        lines.append(f"scaling: {scaling['skipped']}")
    for run in scaling["runs"]:
        lines.append(f"scaling: {run['workers']} worker(s) {fixed(run['images_per_second'])} "
                     f"images/s, {fixed(run['images_per_second_per_core'])} per core")
    return lines


def memory_lines(doc: dict[str, Any]) -> list[str]:
    """Peak worker memory against images scored, and once the models are loaded."""
    lines = ["memory: " + ", ".join(
        f"{r['images']:,} images → {r['max_worker_peak_rss'] / 2**20:,.0f} MB peak/worker"
        for r in doc["memory_vs_images"]["runs"])
        + f" (models {doc['model_bytes'] / 2**20:,.0f} MB resident)"]
    loaded = doc["cluster"].get("worker_rss_models_loaded") or {}
    if loaded:
        lines.append(f"memory: {max(loaded.values()) / 2**20:,.0f} MB per worker once the models "
                     "are loaded, before any partition")
    return lines


def fixed_cost_lines(doc: dict[str, Any]) -> list[str]:
    """A one-partition score job's wall, task and fixed (wall − task) seconds: on the bench's
    warm client and as `python -m jobs.score` with a fresh LocalCluster."""
    fixed = doc.get("fixed_cost")
    if not fixed:
        return []
    lines = [(f"{'fixed cost: one partition':<42} {'images':>7} {'wall s':>8} {'task s':>8} "
              f"{'fixed s':>8}")]
    warm = fixed["warm"]
    for label, run in ((f"warm client, md.score (median of {warm['runs']})", warm),
                       ("fresh LocalCluster, python -m jobs.score", fixed["fresh"])):
        if run is None:
            lines.append(f"{label:<42} skipped (--quick)")
            continue
        lines.append(f"{label:<42} {run['n_images']:>7,} {run['wall_seconds']:>8.2f} "
                     f"{run['task_seconds']:>8.2f} {run['fixed_seconds']:>8.2f}")
    return lines


def fresh_lines(doc: dict[str, Any]) -> list[str]:
    """The main job on fresh workers against one fresh process, both loading the models inside
    their timing, and a joining worker's seconds until its models are usable."""
    fresh = doc["fresh_workers"]
    if fresh["skipped"]:
        return [f"fresh workers: {fresh['skipped']}"]
    return [(f"fresh workers, models loaded inside the timing: Dask "
             f"{fixed(fresh['dask_images_per_second'])} images/s vs one fresh process "
             f"{fixed(fresh['in_process_images_per_second'])} "
             f"(x{fresh['score_over_in_process_with_load']:.2f}); a joining worker's models "
             f"ready in {fresh['worker_ready_seconds']:.2f} s")]


QUICK_TARGETS = ("targets: not checked (--quick runs smoke-test sizes whose figures mean nothing; "
                 "run without --quick to check them)")


def target_lines(doc: dict[str, Any]) -> list[str]:
    """Each target met or not (none for a --quick run: its sizes say nothing of them), then
    the regressions against the history."""
    lines = [QUICK_TARGETS] if doc.get("quick") else ["targets:"]
    for target in [] if doc.get("quick") else doc["targets"]:
        state = {True: "met", False: "NOT MET", None: "not measured"}[target["met"]]
        value = HYPHEN if target["value"] is None else f"{target['value']:.3g}"
        lines.append(f"  {state:<12} {target['figure']:<34} {value:>8} (target "
                     f"{target['target']:g}): {target['meaning']}")
    for regression in doc.get("regressions", []):
        lines.append(f"REGRESSION {regression['figure']}: {regression['value']:.4g} vs median "
                     f"{regression['median']:.4g} (allowed ±{regression['allowed']:.3g})")
    return lines


def throughput_plot(doc: dict[str, Any]) -> str:
    """Images/s vs batch size (log-log) per model family, with the roofline as a line."""
    with plots.figure(11, 4, dpi=DPI, style=STYLE) as figure:
        axes = figure.subplots(1, 2)
        for axis, family, models in ((axes[0], "knn", ("knn", "sklearn_knn")),
                                     (axes[1], "mlp", ("mlp", "keras_mlp"))):
            for model in models:
                rows = [r for r in doc["throughput"] if r["model"] == model]
                if rows:
                    axis.plot([r["batch_size"] for r in rows],
                              [r["images_per_second"] for r in rows],
                              marker="o", label=MODEL_LABELS[model])
            axis.axhline(doc["roofline"]["images_per_second_1thread"][family], color="grey",
                         linestyle="--", label="matmul roofline (1 thread)")
            axis.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images/s",
                     title=family.upper())
            axis.legend(fontsize=8)
        return data_uri(plots.png_bytes(figure, DPI, tight=True))


def end_to_end_plot(doc: dict[str, Any]) -> str:
    """Dask vs one process per partition size, and scaling over workers."""
    with plots.figure(11, 4, dpi=DPI, style=STYLE) as figure:
        axes = figure.subplots(1, 2)
        rows = doc["end_to_end"]
        positions = range(len(rows))
        axes[0].bar([p - 0.2 for p in positions], [r["dask_images_per_second"] for r in rows],
                    0.4, label="Dask")
        axes[0].bar([p + 0.2 for p in positions],
                    [r["in_process_images_per_second"] for r in rows], 0.4, label="one process")
        axes[0].set_xticks(list(positions), [str(r["partition_rows"]) for r in rows])
        axes[0].set(xlabel="partition rows", ylabel="images/s (both models)", title="end to end")
        axes[0].legend(fontsize=8)
        runs = doc["scaling"]["runs"]
        if runs:
            workers = [r["workers"] for r in runs]
            axes[1].plot(workers, [r["images_per_second"] for r in runs], marker="o",
                         label="images/s")
            axes[1].plot(workers, [r["images_per_second_per_core"] for r in runs], marker="s",
                         label="images/s per core")
            axes[1].legend(fontsize=8)
        axes[1].set(xlabel="workers (1 thread each)", title="scaling")
        return data_uri(plots.png_bytes(figure, DPI, tight=True))


def trend_plot(records: list[dict[str, Any]]) -> str | None:
    """Each key figure over the runs on this record's machine (needs two runs or more)."""
    if len(records) < 2:
        return None
    same = [r for r in records if machine_key(r) == machine_key(records[-1])]
    rows = -(-len(KEY_FIGURES) // 4)
    with plots.figure(14, 2.7 * rows, dpi=DPI, style=STYLE) as figure:
        axes = figure.subplots(rows, 4)
        for axis in axes.ravel()[len(KEY_FIGURES):]:
            axis.set_visible(False)
        for axis, figure_path in zip(axes.ravel(), KEY_FIGURES):
            points = [(r.get("created", "")[:16], lookup(r, figure_path)) for r in same]
            points = [(when, value) for when, value in points if value is not None]
            axis.plot(range(len(points)), [value for _, value in points], marker="o")
            axis.set_title(figure_path.split(".")[-1], fontsize=8)
            axis.set_xticks(range(len(points)), [when for when, _ in points], rotation=60,
                            fontsize=6)
        figure.tight_layout()
        return data_uri(plots.png_bytes(figure, DPI, tight=True))


def write_html(doc: dict[str, Any], records: list[dict[str, Any]], out: Path) -> Path:
    """bench.html: the document's sections as tables, then the plots (see `page.write_page`)."""
    from mnist_dist.bench.page import write_page  # page imports this module's plots and labels

    return write_page(doc, records, out)
