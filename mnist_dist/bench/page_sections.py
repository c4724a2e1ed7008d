"""bench.html's sections on the KNN against FAISS and the machine's matmul peak, and on fresh
workers (`mnist_dist.bench.page` lays them out with the others)."""

from __future__ import annotations

from typing import Any

from mnist_dist.bench.page import Section, Table, cell
from mnist_dist.report.formats import HYPHEN, sig
from mnist_dist.report.pages import Num, Row


def speed_section(doc: dict[str, Any]) -> Section:
    """Ours against FAISS per input set, each kernel's sgemm peak against the search's GEMM,
    the search's seconds per phase, and the kernel chosen at load per row count."""
    hard, faiss, gemm = doc["knn_inputs"], doc["knn_inputs"]["faiss"], doc["knn_gemm"]
    tables, notes = [], []
    if faiss["installed"]:
        tables.append(Table(["input set", "ours (images/s)", "ours / FAISS (×)",
                             "predictions agree"], [Row(r["input"], [
            cell(doc, "knn_inputs", "rows", i, "images_per_second"),
            cell(doc, "knn_inputs", "rows", i, "over_faiss"),
            cell(doc, "knn_inputs", "rows", i, "faiss_agrees", fmt="pct"),
        ]) for i, r in enumerate(hard["rows"])], f"Ours against FAISS {faiss['index']}"))
        notes.append(f"FAISS: {sig(faiss['images_per_second'])} images/s on the test split, "
                     "timed once per paired round (its flat scan's speed barely depends on the "
                     "input).")
    else:
        notes.append("FAISS: not installed.")
    if gemm["skipped"]:
        return Section("knn-speed", "KNN against FAISS and the matmul peak", tables,
                       [*notes, f"KNN GEMM: {gemm['skipped']}"])
    rates = [Row(f"sgemm {name}, {gemm['sgemm_size']}² (peak)",
                 [cell(doc, "knn_gemm", "sgemm_gflops", name)]) for name in gemm["sgemm_gflops"]]
    rates += [Row("the search's GEMM, during a search", [cell(doc, "knn_gemm", "gemm_gflops")]),
              Row("GEMM / best sgemm", [cell(doc, "knn_gemm", "gemm_over_best_sgemm")])]
    wall = gemm["wall_seconds"]
    phases = [Row(name, [cell(doc, "knn_gemm", "phases", name),
                         Num(sig(100 * seconds / wall) if wall else HYPHEN)])
              for name, seconds in gemm["phases"].items()]
    phases.append(Row("wall", [cell(doc, "knn_gemm", "wall_seconds"), Num("100")]))
    choices = [Row(f"≥ {c['rows']:,}", [Num(c["backend"])] + [
        cell(doc, "knn_gemm", "choices", i, "gflops", name) for name in c["gflops"]])
        for i, c in enumerate(gemm["choices"])]
    names = list(gemm["choices"][0]["gflops"]) if gemm["choices"] else []
    tables += [
        Table(["float32 product, 1 thread", "GFLOP/s"], rates, "GEMM against the sgemm peaks "
              f"(median of {len(gemm['rounds'])} paired rounds)"),
        Table(["phase", "seconds", "share of wall (%)"], phases,
              f"Bound search of {gemm['images']:,} test images, per phase"),
        Table(["rows per product", "kernel chosen", *(f"{n} (GFLOP/s)" for n in names)],
              choices, "Kernel chosen when the worker loaded the model"),
    ]
    load = gemm["load_seconds"]
    notes.append(f"Calibration at load (both products): {sig(gemm['calibration_seconds'])}"
                 f" s; the worker's whole model load: {sig(load) if load else HYPHEN} s.")
    return Section("knn-speed", "KNN against FAISS and the matmul peak", tables, notes)


def fresh_section(doc: dict[str, Any]) -> Section:
    """The main job on fresh workers against one fresh process, both loading the models inside
    their timing, and a worker joining until its models are usable."""
    fresh = doc["fresh_workers"]
    if fresh["skipped"]:
        return Section("fresh-workers", "Fresh workers", notes=[
            f"Fresh workers: {fresh['skipped']}"])
    rows = [Row(str(i + 1), [
        cell(doc, "fresh_workers", "runs", i, "dask_seconds"),
        cell(doc, "fresh_workers", "runs", i, "in_process_seconds"),
        cell(doc, "fresh_workers", "runs", i, "load_seconds"),
        cell(doc, "fresh_workers", "runs", i, "waited_after_join_seconds"),
    ]) for i in range(len(fresh["runs"]))]
    summary = [Row(label, [cell(doc, "fresh_workers", key)]) for label, key in (
        ("Dask on fresh workers (images/s)", "dask_images_per_second"),
        ("one fresh process (images/s)", "in_process_images_per_second"),
        ("Dask / one process", "score_over_in_process_with_load"),
        ("a joining worker's models ready (s, median)", "worker_ready_seconds"))]
    return Section("fresh-workers", "Fresh workers", [
        Table(["figure", "value"], summary, "Models loaded inside the timing"),
        Table(["round", "Dask (s)", "one fresh process (s)", "joining worker's load (s)",
               "waited after it joined (s)"], rows,
              f"Rounds ({fresh['workers']} workers, partitions of {fresh['partition_rows']:,} "
              "rows)"),
    ])
