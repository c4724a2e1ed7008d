"""The score report's `report.md`: the same numbers as the HTML page, built from the values
(no images; every table cell escaped, so a hostile name cannot break a table)."""

from __future__ import annotations

from typing import Any

from mnist_dist.report import analysis as an
from mnist_dist.report.formats import (
    EN_DASH,
    FORMATS,
    markdown_code,
    markdown_table,
    markdown_text,
    numeric_align,
    pct,
    points,
    resumed_part,
    sig,
    size,
)
from mnist_dist.report.predictions import predictions_markdown
from mnist_dist.report.schema import HTML_NAME, is_labelled, meta
from mnist_dist.report.verdict import verdict


def table(head: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of numbers: the first column left, the rest right-aligned."""
    return markdown_table(head, rows, numeric_align(len(head)))


def render_markdown(report: dict[str, Any]) -> str:
    """A plain Markdown summary with the same numbers as the HTML (no images); the accuracy
    sections only when the run had labels, the predictions section when the report has one."""
    labelled = is_labelled(report)
    parts = [
        header(report), verdict_markdown(report),
        *((accuracy(report), pairs(report), confusion(report)) if labelled else ()),
        *((predictions_markdown(report),) if "predictions" in report else ()),
        speed(report), deployment(report),
        *((study(report),) if labelled and "images" not in report else ()),
        facts(report),
    ]
    return "\n\n".join(parts) + "\n"


def verdict_markdown(report: dict[str, Any]) -> str:
    """The verdict: its headline, then one bullet per finding."""
    lines = [markdown_text(line) for line in verdict(report)]
    return "## Verdict\n\n" + lines[0] + "\n\n" + "\n".join(f"- {line}" for line in lines[1:])


def header(report: dict[str, Any]) -> str:
    """Title and one paragraph of what ran where."""
    data, cluster, timing = report["dataset"], report["cluster"], report["timing"]
    return (
        "# MNIST digit scoring: KNN vs MLP\n\n"
        f"Run of {markdown_text(str(report.get('created', '?')))}: {data['n_images']:,} images of "
        f"{markdown_code(data['store'])} (split {markdown_code(data['split'])}) on "
        f"{cluster['workers']} workers / "
        f"{cluster['threads']} threads in {sig(timing['wall_seconds'])} s "
        f"({sig(timing['images_per_second'])} images/s"
        f"{markdown_text(resumed_part(timing, data['n_images']))}). "
        f"Charts, confusion heatmaps and the gallery are in `{HTML_NAME}`."
    )


def accuracy(report: dict[str, Any]) -> str:
    """Overall and per-digit accuracy of both models and MLP − KNN."""
    models = report["models"]
    per_class = {m: models[m]["per_class_accuracy"] for m in an.MODELS}
    diff = an.differences(per_class["knn"], per_class["mlp"])
    rows = [[str(d), *(pct(per_class[m][d]) for m in an.MODELS), points(diff[d])]
            for d in range(10)]
    overall = models["mlp"]["accuracy"] - models["knn"]["accuracy"]
    rows.append(["overall", *(pct(models[m]["accuracy"]) for m in an.MODELS), points(overall)])
    head = ["digit", *(an.LABELS[m] for m in an.MODELS), "MLP − KNN (points)"]
    return "## Accuracy\n\n" + table(head, rows)


def pairs(report: dict[str, Any]) -> str:
    """The top confused pairs of each model."""
    blocks = []
    for name in an.MODELS:
        found = an.confused_pairs(an.as_confusion(report, name), an.TOP_PAIRS)
        rows = [[f"{p.true} → {p.predicted}", f"{p.count:,}", pct(p.share)] for p in found]
        blocks.append(f"### {an.LABELS[name]}\n\n"
                      + table(["true → predicted", "count", "% of true digit"], rows))
    return "## Most-confused pairs\n\n" + "\n\n".join(blocks)


def confusion(report: dict[str, Any]) -> str:
    """Both confusion matrices as count tables (rows true, columns predicted)."""
    blocks = []
    for name in an.MODELS:
        counts = an.as_confusion(report, name)
        rows = [[str(t), *(f"{int(c):,}" for c in counts[t])] for t in range(10)]
        blocks.append(f"### {an.LABELS[name]}\n\n"
                      + table(["true \\ predicted", *map(str, range(10))], rows))
    return "## Confusion matrices (counts)\n\n" + "\n\n".join(blocks)


def speed(report: dict[str, Any]) -> str:
    """Run speed per model, the sweep, and the crossover sentence."""
    models = report["models"]
    run_rows = [[an.LABELS[m], sig(models[m].get("task_seconds")), sig(models[m].get("seconds")),
                 sig(models[m].get("images_per_second"))] for m in an.MODELS]
    text = "## Speed\n\n" + table(
        ["model", "task time (s)", "cluster time (s)", "images / s"], run_rows)
    text += startup_line(report) + time_table(report)
    sweep = sorted(report.get("throughput", []), key=lambda r: (r["model"], r["batch_size"]))
    if not sweep:
        return text + "\n\nNo throughput sweep in this run."
    rows = [[an.LABELS.get(r["model"], r["model"]), f"{r['batch_size']:,}",
             sig(r["images_per_second"]), sig(r["ms_per_image"])] for r in sweep]
    series = {m: an.throughput_series(sweep, m) for m in an.MODELS}
    cross = an.crossover(series["knn"], series["mlp"])
    return (text + "\n\n### Against batch size (one worker)\n\n"
            + table(["model", "batch size", "images / s", "ms / image"], rows)
            + f"\n\n**Crossover.** {cross.summary}")


def startup_line(report: dict[str, Any]) -> str:
    """The slowest worker's start-up (models loaded) next to the scoring time, or ''."""
    section = report.get("startup")
    if not section:
        return ""
    line = (f"\n\nWorker start-up (models loaded): max {sig(section['max_seconds'])} s over "
            f"{section['workers']:,} {an.plural(section['workers'], 'worker')}; scoring "
            f"{sig(report['timing']['wall_seconds'])} s.")
    kernels = an.kernels_summary(section)
    return line + (f" {kernels}" if kernels else "")


def time_table(report: dict[str, Any]) -> str:
    """Where the time went: seconds and share of each phase (report.json's `time`), or ''."""
    section = report.get("time") or {}
    phases = section.get("phases")
    if not phases:
        return ""
    total = sum(phases.values())
    rows = [[markdown_text(phase), sig(seconds), pct(seconds / total if total > 0 else None)]
            for phase, seconds in phases.items()]
    return ("\n\n### Where the time went\n\n" + table(["phase", "task seconds", "share"], rows)
            + f"\n\nSeconds the scoring graph's tasks spent in each phase, from "
            f"{markdown_text(str(section.get('source', '')))} (all workers together).")


def deployment(report: dict[str, Any]) -> str:
    """Training time, size on disk, and worker memory."""
    models = report["models"]
    rows = [
        [an.LABELS[m], sig(models[m].get("train_seconds")), size(an.model_bytes(models[m]))]
        for m in an.MODELS
    ]
    rss = [[markdown_code(w), size(b)] for w, b in an.worker_rss(report["cluster"])]
    return (
        "## Deployment trade-off\n\n"
        + table(["model", "training time (s)", "size on disk"], rows)
        + "\n\n" + (table(["worker", "resident memory"], rss) if rss else "Worker memory: -")
        + "\n\nKNN keeps its whole training set in memory on every worker; the MLP has a "
        "fixed, small footprint."
    )


def study(report: dict[str, Any]) -> str:
    """Ours next to the study's published figures (from a different machine)."""
    rows = [[r.label, FORMATS[r.fmt](r.ours), r.theirs, r.note]
            for r in an.study_comparison(report)]
    ours = report["models"]["knn"]["per_class_accuracy"]
    digits = [[str(d), pct(ours[d]), pct(an.STUDY.knn_per_class[d]),
               points(an.differences([an.STUDY.knn_per_class[d]], [ours[d]])[0])]
              for d in range(10)]
    return (
        "## Compared with the study's published figures\n\n"
        "The study's figures were measured on a different machine.\n\n"
        + table(["figure", "this run", "study", "this run vs. study"], rows)
        + "\n\n" + table(["KNN digit", "this run", "study", "difference (points)"], digits)
    )


def facts(report: dict[str, Any]) -> str:
    """Data, cluster, timing, versions and checksums as bullet lists."""
    groups = {
        "Data": report["dataset"], "Cluster": report["cluster"], "Timing": report["timing"],
        "Outputs": report.get("outputs", {}), "Versions": report.get("versions", {}),
        "Report": meta(report),
    }
    text = "## Run facts\n"
    for title, values in groups.items():
        text += f"\n**{title}**\n\n" + "\n".join(
            f"- {markdown_text(k)}: {markdown_code(v)}" for k, v in an.fact_rows(values)
        ) + "\n"
    images = an.image_files_facts(report)
    if images:
        text += "\n**Image files**\n\n" + "\n".join(
            f"- {markdown_text(k)}: {markdown_code(v)}" for k, v in images) + "\n"
    sums = [f"- {an.LABELS[m]} {markdown_code(f)}: {markdown_code(a.get('sha256', EN_DASH))}"
            for m in an.MODELS
            for f, a in report["models"][m].get("artifacts", {}).items()]
    return text + "\n**Model checksums (SHA-256)**\n\n" + "\n".join(sums)
