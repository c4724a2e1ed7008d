"""bench.html: the bench document as the score report's sections, each measurement a table with
its units in the headers, then the plots as figures with captions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.bench.history import MIN_RUNS
from mnist_dist.bench.render import (
    HTML_NAME,
    MODEL_LABELS,
    QUICK_TARGETS,
    end_to_end_plot,
    throughput_plot,
    trend_plot,
)
from mnist_dist.report.formats import FORMATS, HYPHEN, fixed, sig
from mnist_dist.report.pages import Num, Row, render_page, stylesheet

MIB = 2**20
STATES = {True: ("met", "pos"), False: ("NOT MET", "neg"), None: ("not measured", "muted")}


@dataclass(frozen=True)
class Table:
    """One HTML table: its headers (units included), rows, an optional title above it."""

    head: list[str]
    rows: list[Row]
    title: str = ""
    cls: str = "num"


@dataclass(frozen=True)
class Section:
    """A section of the page: its anchor (menu link), heading, tables and notes below them."""

    anchor: str
    title: str
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Figure:
    """A plot: its title (the image's alt text), PNG data URI and caption."""

    title: str
    uri: str
    caption: str


def write_page(doc: dict[str, Any], records: list[dict[str, Any]], out: Path) -> Path:
    """Write OUT/bench.html for `doc`; `records` (the history with this run last) for the
    trend plot."""
    path = out / HTML_NAME
    write_bytes_atomic(path, page_html(doc, figures(doc, records)).encode("utf-8"))
    return path


def page_html(doc: dict[str, Any], shown: list[Figure]) -> str:
    """The whole self-contained page (CSS inline, plots as data URIs)."""
    parts = sections(doc)
    nav = [(s.anchor, s.title) for s in parts] + [("plots", "Plots")]
    return render_page(
        "bench.html", css=stylesheet("score.css") + stylesheet("bench.css"), doc=doc,
        commit=doc.get("commit") or HYPHEN, cards=cards(doc), nav=nav, sections=parts,
        figures=shown,
    )


def figures(doc: dict[str, Any], records: list[dict[str, Any]]) -> list[Figure]:
    """The throughput and end-to-end plots, and the trend when the history has two runs."""
    shown = [
        Figure("Throughput against batch size", throughput_plot(doc),
               "Images per second on one worker thread against the batch size (log-log), per "
               "predictor; dashed: the float32 matmul roofline of one thread."),
        Figure("End to end and scaling", end_to_end_plot(doc),
               "Left: images per second of both models through Dask and in one process, per "
               "partition size. Right: the default job on 1, 2, … workers of one thread each."),
    ]
    trend = trend_plot(records)
    if trend:
        shown.append(Figure("Key figures over time", trend,
                            "Each key figure over the runs of the history on this machine."))
    return shown


def cell(doc: dict[str, Any], *path: str | int, fmt: str = "sig", cls: str = "") -> Num:
    """The number at `path` in the document as `fmt` shows it, with that path as `data-key`."""
    value: Any = doc
    for part in path:
        value = value[part]
    if value is None:
        return Num(HYPHEN, cls=cls)
    return Num(FORMATS[fmt](value), json.dumps(list(path)), fmt, cls)


def mib(value: float | None) -> Num:
    """Bytes in MiB, no decimals."""
    return Num(HYPHEN if value is None else fixed(value / MIB))


def cards(doc: dict[str, Any]) -> list[tuple[Num, str]]:
    """The header's headline numbers: KNN and end-to-end rates, targets met, regressions."""
    targets = doc["targets"]
    met = sum(t["met"] is True for t in targets)
    regressions = doc.get("regressions", [])
    return [
        (cell(doc, "figures", "knn_images_per_second"), "KNN images / s (1 thread)"),
        (cell(doc, "figures", "end_to_end_images_per_second"), "end-to-end images / s"),
        (Num("not checked" if doc["quick"] else f"{met} of {len(targets)}"), "targets met"),
        (Num(str(len(regressions)) if "history" in doc else "no history"), "regressions"),
    ]


def sections(doc: dict[str, Any]) -> list[Section]:
    """Every section of the page, the targets first."""
    from mnist_dist.bench.page_sections import fresh_section, speed_section  # they import this

    return [
        targets_section(doc), regressions_section(doc), roofline_section(doc),
        throughput_section(doc), paired_section(doc), knn_section(doc), speed_section(doc),
        end_to_end_section(doc), peers_section(doc), scaling_section(doc),
        memory_section(doc), fixed_cost_section(doc), fresh_section(doc),
    ]


def targets_section(doc: dict[str, Any]) -> Section:
    """Each target's figure, value, bar, state and meaning; none for a --quick run."""
    if doc["quick"]:
        return Section("targets", "Targets", notes=[QUICK_TARGETS])
    rows = []
    for index, target in enumerate(doc["targets"]):
        state, cls = STATES[target["met"]]
        rows.append(Row(target["figure"], [
            cell(doc, "targets", index, "value"), Num(f"{target['target']:,g}"),
            Num(state, cls=f"state {cls}"), Num(target["meaning"]),
        ], kind="code"))
    return Section("targets", "Targets", [Table(
        ["figure", "value", "target", "state", "meaning"], rows, cls="num targets")])


def regressions_section(doc: dict[str, Any]) -> Section:
    """Key figures worse than the median of earlier runs on this machine."""
    found = doc.get("regressions", [])
    past = doc.get("history")
    notes = [f"History {past['path']}: {past['earlier_runs']} earlier runs, "
             f"{past['same_machine']} of them on this machine (a regression needs {MIN_RUNS})."
             if past else "No history given (--history): nothing to compare with."]
    if not found:
        return Section("regressions", "Regressions", notes=["No regression."] + notes)
    rows = [Row(r["figure"], [
        cell(doc, "regressions", i, "value"), cell(doc, "regressions", i, "median"),
        cell(doc, "regressions", i, "allowed"),
        Num(f"{100 * r['change']:+.1f}", cls="neg"),
    ], kind="code") for i, r in enumerate(found)]
    return Section("regressions", "Regressions", [Table(
        ["figure", "this run", "median of earlier runs", "allowed ±", "change (%)"], rows)],
        notes)


def roofline_section(doc: dict[str, Any]) -> Section:
    """The float32 matmul rates and the per-image limits they set."""
    roof = doc["roofline"]
    rates = [
        Row("1 thread (a worker's)", [cell(doc, "roofline", "gflops_1thread", "median"),
                                      cell(doc, "roofline", "gflops_1thread", "max")]),
        Row(f"{roof['gflops_all']['threads']} threads (this process)",
            [cell(doc, "roofline", "gflops_all", "median"),
             cell(doc, "roofline", "gflops_all", "max")]),
        Row("cluster (sum of worker medians)",
            [cell(doc, "roofline", "gflops_cluster", "sum_of_worker_medians"), Num(HYPHEN)]),
    ]
    limits = [Row(MODEL_LABELS[m], [
        Num(sig(roof["flops_per_image"][m] / 1e6)),
        cell(doc, "roofline", "images_per_second_1thread", m),
        cell(doc, "roofline", "images_per_second_all", m),
    ]) for m in ("knn", "mlp")]
    return Section("roofline", "Roofline", [
        Table(["float32 matmul", "median (GFLOP/s)", "max (GFLOP/s)"], rates, "Matmul rate"),
        Table(["predictor", "MFLOP / image", "limit, 1 thread (images/s)",
               f"limit, {roof['gflops_all']['threads']} threads (images/s)"], limits,
              "Per-image limits"),
    ])


def throughput_section(doc: dict[str, Any]) -> Section:
    """Images/s and latency per predictor and batch size on one worker thread."""
    rows = [Row(MODEL_LABELS.get(r["model"], r["model"]), [
        cell(doc, "throughput", i, "batch_size", fmt="int"),
        cell(doc, "throughput", i, "images_per_second"),
        cell(doc, "throughput", i, "latency_p50_ms"),
        cell(doc, "throughput", i, "latency_p95_ms"),
        cell(doc, "throughput", i, "repeats", fmt="int"),
    ]) for i, r in enumerate(doc["throughput"])]
    skipped = doc["baselines"]["skipped"]
    return Section("throughput", "Throughput per predictor and batch size", [Table(
        ["predictor (1 worker thread)", "batch size (images)", "images/s", "p50 latency (ms)",
         "p95 latency (ms)", "repeats"], rows)], [f"Baselines: {skipped}"] if skipped else [])


def paired_section(doc: dict[str, Any]) -> Section:
    """The KNN against the matmul and scikit-learn, timed in alternating rounds."""
    paired = doc["paired"]
    summary = [
        Row("batch size (images)", [cell(doc, "paired", "batch_size", fmt="int")]),
        Row("KNN / matmul roofline (nominal 2·784·N FLOPs)",
            [cell(doc, "paired", "knn_fraction_of_roofline")]),
        Row("KNN GEMM work (MFLOP / image)", [Num(sig(paired["gemm_flops_per_image"] / 1e6))]),
        Row("KNN GEMM rate / matmul rate", [cell(doc, "paired", "knn_gemm_fraction")]),
        Row("KNN / scikit-learn (×)", [cell(doc, "paired", "knn_over_sklearn")]),
    ]
    fields = ("matmul_gflops", "knn_images_per_second", "sklearn_images_per_second",
              "knn_fraction_of_roofline", "knn_gemm_fraction", "knn_over_sklearn")
    rounds = [Row(str(i + 1), [cell(doc, "paired", "rounds", i, f) for f in fields])
              for i in range(len(paired["rounds"]))]
    return Section("paired", "Paired rounds", [
        Table(["figure", "value"], summary, "Summary (median of the rounds)"),
        Table(["round", "matmul (GFLOP/s)", "KNN (images/s)", "scikit-learn (images/s)",
               "KNN / roofline", "GEMM / matmul rate", "KNN / scikit-learn (×)"], rounds,
              "Rounds of matmul, ours, scikit-learn, matmul"),
    ])


def knn_section(doc: dict[str, Any]) -> Section:
    """The KNN settings grid, its hard inputs, FAISS and the onnxruntime settings."""
    tuning, hard = doc["tuning"], doc["knn_inputs"]
    grid = [Row(r.get("search", "bound"), [
        cell(doc, "tuning", "knn", i, "block_rows", fmt="int"),
        cell(doc, "tuning", "knn", i, "shortlist", fmt="int"),
        cell(doc, "tuning", "knn", i, "images_per_second"),
        cell(doc, "tuning", "knn", i, "gemm_share", fmt="pct"),
    ]) for i, r in enumerate(tuning["knn"])]
    inputs = [Row(r["input"], [
        cell(doc, "knn_inputs", "rows", i, "images_per_second"),
        cell(doc, "knn_inputs", "rows", i, "over_test"),
        cell(doc, "knn_inputs", "rows", i, "max_single_query_ms"),
    ]) for i, r in enumerate(hard["rows"])]
    ort = [Row(r["graph_optimization"], [
        cell(doc, "tuning", "ort", i, "intra_op_threads", fmt="int"),
        cell(doc, "tuning", "ort", i, "batch_size", fmt="int"),
        cell(doc, "tuning", "ort", i, "images_per_second"),
    ]) for i, r in enumerate(tuning["ort"])]
    tables = [
        Table(["search", "block rows", "shortlist", "images/s", "GEMM share"], grid,
              f"KNN settings ({tuning['images']:,} images per call)"),
        Table(["input set", "images/s", "vs test split (×)", "slowest single query (ms)"],
              inputs, f"KNN hard inputs ({hard['images']:,} images per call, {hard['rounds']} "
              "paired rounds, 1 thread)"),
    ]
    faiss = tuning["faiss"]
    if faiss["installed"]:
        tables.append(Table(["index", "images/s", "predictions agree"], [Row("IndexFlatL2", [
            cell(doc, "tuning", "faiss", "images_per_second"),
            cell(doc, "tuning", "faiss", "predictions_agree", fmt="pct")])], "FAISS"))
    tables.append(Table(["graph optimization", "intra-op threads", "batch size (images)",
                         "images/s"], ort, "onnxruntime settings"))
    notes = [] if faiss["installed"] else ["FAISS IndexFlatL2: not installed."]
    return Section("knn", "KNN settings, hard inputs, FAISS and onnxruntime", tables, notes)


def end_to_end_section(doc: dict[str, Any]) -> Section:
    """Both models through Dask against the same work in one process, per partition size."""
    rows = []
    for i, r in enumerate(doc["end_to_end"]):
        default = r["partition_rows"] == doc["default_partition_rows"]
        rows.append(Row(f"{r['partition_rows']:,}" + (" (default)" if default else ""), [
            cell(doc, "end_to_end", i, "partitions", fmt="int"),
            cell(doc, "end_to_end", i, "images", fmt="int"),
            cell(doc, "end_to_end", i, "dask_images_per_second"),
            cell(doc, "end_to_end", i, "in_process_images_per_second"),
            cell(doc, "end_to_end", i, "dask_over_in_process"),
            mib(r["max_worker_peak_rss"]),
        ]))
    return Section("end-to-end", "End to end per partition size", [Table(
        ["partition (rows)", "partitions", "images", "Dask (images/s)", "one process (images/s)",
         "Dask / one process", "peak per worker (MiB)"], rows)])


def peers_section(doc: dict[str, Any]) -> Section:
    """Ours against dask-ml's ParallelPostFit on the same partitions."""
    peers = doc["peers"]
    rows = [Row(f"{name.upper()} vs {peers[name]['peer']}", [
        cell(doc, "peers", name, "ours_images_per_second"),
        cell(doc, "peers", name, "peer_images_per_second"),
        cell(doc, "peers", name, "ours_over_peer"),
        cell(doc, "peers", name, "predictions_agree", fmt="pct"),
    ]) for name in ("knn", "mlp")]
    return Section("peers", "Peers (dask-ml)", [Table(
        ["model vs peer", "ours (images/s)", "peer (images/s)", "ours / peer (×)",
         "predictions agree"], rows)],
        [f"{peers['images']:,} images in partitions of {peers['partition_rows']:,} rows."])


def scaling_section(doc: dict[str, Any]) -> Section:
    """The default job on 1, 2, … local workers of one thread each."""
    scaling = doc["scaling"]
    rows = [Row(f"{r['workers']}", [
        cell(doc, "scaling", "runs", i, "cores", fmt="int"),
        cell(doc, "scaling", "runs", i, "images_per_second"),
        cell(doc, "scaling", "runs", i, "images_per_second_per_core"),
        mib(r.get("max_worker_peak_rss")),
    ]) for i, r in enumerate(scaling["runs"])]
    tables = [Table(["workers", "cores", "images/s", "images/s per core",
                     "peak per worker (MiB)"], rows)] if rows else []
    return Section("scaling", "Scaling", tables,
                   [f"Scaling: {scaling['skipped']}"] if scaling["skipped"] else [])


def memory_section(doc: dict[str, Any]) -> Section:
    """Peak worker memory against images scored, and once the models are loaded."""
    memory = doc["memory_vs_images"]
    runs = [Row(f"{r['images']:,}", [mib(r["max_worker_peak_rss"])]) for r in memory["runs"]]
    loaded = doc["cluster"].get("worker_rss_models_loaded") or {}
    resident = [Row("models (resident)", [mib(doc["model_bytes"])])]
    if loaded:
        resident.append(Row("per worker once the models are loaded, before any partition",
                            [mib(max(loaded.values()))]))
    return Section("memory", "Memory", [
        Table(["images scored", "peak per worker (MiB)"], runs,
              f"Peak against images (partitions of {memory['partition_rows']:,} rows)"),
        Table(["resident", "MiB"], resident, "Models"),
    ], [f"Peak with all images / with half: {sig(memory['peak_ratio_full_over_half'])}."])


def fixed_cost_section(doc: dict[str, Any]) -> Section:
    """A one-partition score job's wall, task and fixed (wall − task) seconds, on the bench's
    warm client and as `python -m jobs.score` with a fresh LocalCluster."""
    costs = doc.get("fixed_cost")
    if not costs:
        return Section("fixed-cost", "Fixed cost", notes=["Not measured."])
    rows = []
    for label, name in ((f"warm client, md.score (median of {costs['warm']['runs']})", "warm"),
                        ("fresh LocalCluster, python -m jobs.score", "fresh")):
        if costs[name] is None:
            rows.append(Row(label, [Num("skipped (--quick)"), *[Num(HYPHEN)] * 3]))
            continue
        rows.append(Row(label, [cell(doc, "fixed_cost", name, "n_images", fmt="int")] + [
            cell(doc, "fixed_cost", name, f) for f in
            ("wall_seconds", "task_seconds", "fixed_seconds")]))
    return Section("fixed-cost", "Fixed cost", [Table(
        ["one partition", "images", "wall (s)", "task (s)", "fixed = wall − task (s)"], rows)])
