"""The score report's `report.html`: the values of each section, for `templates/score.html`.

Python decides what each cell says (formatted numbers, their report.json paths, classes);
the template decides the markup. Every number outside a plain label carries `data-key` (its
path in report.json) and `data-fmt`, which lets tests read the page back.
"""

from __future__ import annotations

import json
from typing import Any

from mnist_dist.report import analysis as an
from mnist_dist.report import heat, plots
from mnist_dist.report.formats import EN_DASH, FORMATS, count, data_uri, sample_label, sample_title
from mnist_dist.report.pages import Num, Row, render_page, stylesheet
from mnist_dist.report.predictions import predictions_view
from mnist_dist.report.schema import GALLERY_LIMIT, decode_pixels, is_labelled, meta
from mnist_dist.report.verdict import verdict

BAR_COLOURS = {"knn": "#d6e2f3", "mlp": "#f8dcc8"}  # light shades of each model's colour
NAV = (
    ("verdict", "Verdict"),
    ("accuracy", "Accuracy"), ("confusion", "Confusion"), ("errors", "Most confused"),
    ("speed", "Speed"), ("deployment", "Deployment"), ("study", "vs. the study"),
    ("facts", "Run facts"),
)


def num(
    value: Any, fmt: str, key: tuple[Any, ...] | None = None, cls: str = "", title: str = "",
    style: str = "",
) -> Num:
    """`value` formatted as `fmt`; `key` (its path in report.json) lets tests check it."""
    return Num(FORMATS[fmt](value), json.dumps(list(key)) if key else None,
               fmt if key else "", cls, title, style)


def sign_class(value: float | None) -> str:
    """CSS class of a difference: green when positive, red when negative."""
    return "" if not value else ("pos" if value > 0 else "neg")


def render_html(report: dict[str, Any]) -> str:
    """The whole self-contained HTML page (CSS inline, images as data URIs); the accuracy
    sections only when the run had labels, the predictions section when the report has one."""
    labelled, predicted = is_labelled(report), "predictions" in report
    css = stylesheet("score.css") + (stylesheet("predictions.css") if predicted else "")
    return render_page(
        "score.html", css=css, schema=report["schema"], report=report,
        labels=an.LABELS, models=an.MODELS, nav=nav(labelled, predicted, "images" in report),
        cards=cards(report) if labelled else unlabelled_cards(report),
        created=report.get("created", ""), n_images=count(report["dataset"]["n_images"]),
        verdict=verdict(report), images="images" in report,
        labelled=labelled, predictions=predictions_view(report) if predicted else None,
        **(labelled_views(report) if labelled else {}),
        speed=speed_view(report), deployment=deployment_view(report), facts=facts_view(report),
    )


def nav(labelled: bool, predicted: bool, images: bool = False) -> list[tuple[str, str]]:
    """The page's section links: those of the sections it shows (no comparison with the
    study for a run of image files)."""
    shown = [entry for entry in NAV
             if (labelled or entry[0] in ("verdict", "speed", "deployment", "facts"))
             and not (images and entry[0] == "study")]
    if predicted:
        shown.insert(4 if labelled else 1, ("predictions", "Predictions"))
    return shown


def labelled_views(report: dict[str, Any]) -> dict[str, Any]:
    """The values of the sections that need labels: accuracy, confusion, errors, study."""
    return {
        "accuracy": accuracy_view(report),
        "confusion": [confusion_view(report, m) for m in an.MODELS],
        "pairs": {m: pair_rows(report, m) for m in an.MODELS},
        "galleries": {m: gallery(report, m) for m in an.MODELS},
        "study": study_view(report),
    }


def cards(report: dict[str, Any]) -> list[tuple[Num, str]]:
    """The headline numbers of the header, each with its label."""
    return [
        (num(report["models"][m]["accuracy"], "pct", ("models", m, "accuracy")),
         f"{an.LABELS[m]} accuracy") for m in an.MODELS
    ] + run_cards(report)


def run_cards(report: dict[str, Any]) -> list[tuple[Num, str]]:
    """The header's numbers of the run itself: images, wall time, speed, cluster."""
    data, cluster, timing = report["dataset"], report["cluster"], report["timing"]
    wall = num(timing["wall_seconds"], "sig", ("timing", "wall_seconds"))
    return [
        (num(data["n_images"], "int", ("dataset", "n_images")), "images scored"),
        (Num(wall.text + " s", wall.key, wall.fmt), "wall time"),
        (num(timing["images_per_second"], "sig", ("timing", "images_per_second")), "images / s"),
        (Num(f"{cluster['workers']} / {cluster['threads']}"), "workers / threads"),
    ]


def unlabelled_cards(report: dict[str, Any]) -> list[tuple[Num, str]]:
    """The header's numbers of a run without labels: agreement and confidence first."""
    section = report["predictions"]
    shown = []
    if section.get("agreement"):
        shown.append((num(section["agreement"]["rate"], "pct",
                          ("predictions", "agreement", "rate")), "KNN/MLP agreement"))
    thresholds = (section.get("confidence") or {}).get("thresholds", [])
    if thresholds:
        last = len(thresholds) - 1
        shown.append((num(thresholds[last]["share"], "pct",
                          ("predictions", "confidence", "thresholds", last, "share")),
                      f"MLP top probability < {thresholds[last]['below']}"))
    return shown + run_cards(report)


def accuracy_view(report: dict[str, Any]) -> dict[str, Any]:
    """Per-digit and overall accuracy rows with MLP − KNN, and the grouped bar chart."""
    models = report["models"]
    per_class = {m: models[m]["per_class_accuracy"] for m in an.MODELS}
    diff = an.differences(per_class["knn"], per_class["mlp"])
    rows = [
        Row(str(d), [num(per_class[m][d], "pct", ("models", m, "per_class_accuracy", d))
                     for m in an.MODELS] + [num(diff[d], "points", cls=sign_class(diff[d]))])
        for d in range(10)
    ]
    overall = models["mlp"]["accuracy"] - models["knn"]["accuracy"]
    rows.append(Row("overall", [num(models[m]["accuracy"], "pct", ("models", m, "accuracy"))
                                for m in an.MODELS]
                    + [num(overall, "points", cls=sign_class(overall))], cls="total"))
    return {"rows": rows, "chart": data_uri(plots.accuracy_chart(per_class, diff))}


def confusion_view(report: dict[str, Any], name: str) -> dict[str, Any]:
    """One model's confusion matrix as two heatmap tables: counts (log shade) and each row as
    a percentage of its true digit."""
    confusion = an.as_confusion(report, name)
    percent = an.row_percentages(confusion)
    counts = heat.cell_styles(heat.log_shade(confusion), "Blues")
    shares = heat.cell_styles(percent, "Oranges")
    rows = [
        Row(str(t), [
            num(int(confusion[t, p]), "int", ("models", name, "confusion", t, p),
                "diag" if t == p else "", f"{percent[t, p]:.1f}% of digit {t}", counts[t, p])
            for p in range(10)
        ], kind="th")
        for t in range(10)
    ]
    percent_rows = [
        Row(str(t), [Num(f"{percent[t, p]:.1f}" if percent[t, p] else "0",
                         cls="diag" if t == p else "", style=shares[t, p]) for p in range(10)],
            kind="th")
        for t in range(10)
    ]
    return {"name": name, "rows": rows, "percent_rows": percent_rows}


def pair_rows(report: dict[str, Any], name: str) -> list[Row]:
    """Top confused (true → predicted) pairs of one model with counts and row shares."""
    return [
        Row(f"{p.true} → {p.predicted}", [
            num(p.count, "int", ("models", name, "confusion", p.true, p.predicted)),
            num(p.share, "pct"),
        ])
        for p in an.confused_pairs(an.as_confusion(report, name), an.TOP_PAIRS)
    ]


def gallery(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Up to GALLERY_LIMIT misclassified digits: image, alternative text and caption."""
    items = report["models"][name].get("misclassified", [])[:GALLERY_LIMIT]
    return [
        {"uri": data_uri(plots.digit_png(decode_pixels(item))),
         "alt": f"digit {item['true']} predicted as {item['predicted']}",
         "true": item["true"], "predicted": item["predicted"], "index": sample_label(item),
         "title": sample_title(item)}
        for item in items
    ]


def speed_view(report: dict[str, Any]) -> dict[str, Any]:
    """Each model's share of the run, and the throughput sweep (chart, table, crossover)."""
    models, sweep = report["models"], report.get("throughput", [])
    run_rows = [
        Row(m, [num(models[m].get(f), "sig", ("models", m, f))
                for f in ("task_seconds", "seconds", "images_per_second")], kind="tag")
        for m in an.MODELS
    ]
    series = {m: an.throughput_series(sweep, m) for m in an.MODELS}
    if not any(s.batch_sizes for s in series.values()):
        return {"run_rows": run_rows, "sweep_rows": None, "time_rows": time_rows(report),
                "startup": startup_view(report)}
    cross = an.crossover(series["knn"], series["mlp"])
    indexed = sorted(enumerate(sweep), key=lambda r: (r[1]["model"], r[1]["batch_size"]))
    sweep_rows = [
        Row(r["model"], [
            num(r["batch_size"], "int", ("throughput", i, "batch_size")),
            num(r["images_per_second"], "sig", ("throughput", i, "images_per_second")),
            num(r["ms_per_image"], "sig", ("throughput", i, "ms_per_image")),
            num(r.get("repeats"), "int", ("throughput", i, "repeats")),
        ], kind="tag")
        for i, r in indexed
    ]
    return {"run_rows": run_rows, "sweep_rows": sweep_rows, "crossover": cross.summary,
            "chart": data_uri(plots.throughput_chart(series, cross)),
            "time_rows": time_rows(report), "startup": startup_view(report)}


def startup_view(report: dict[str, Any]) -> dict[str, Any] | None:
    """The slowest worker's start-up (models loaded), the workers counted and the scoring
    time, or None when the report has no `startup` section."""
    section = report.get("startup")
    if not section:
        return None
    return {"max": num(section["max_seconds"], "sig", ("startup", "max_seconds")),
            "workers": num(section["workers"], "int", ("startup", "workers")),
            "noun": an.plural(section["workers"], "worker"),
            "scoring": num(report["timing"]["wall_seconds"], "sig", ("timing", "wall_seconds")),
            "kernels": an.kernels_summary(section)}


def time_rows(report: dict[str, Any]) -> list[Row] | None:
    """Where the time went: seconds and share of each phase (report.json's `time`), or None
    when the report has no such section."""
    phases = (report.get("time") or {}).get("phases")
    if not phases:
        return None
    total = sum(phases.values())
    return [Row(phase, [num(seconds, "sig", ("time", "phases", phase)),
                        num(seconds / total if total > 0 else None, "pct")])
            for phase, seconds in phases.items()]


def deployment_view(report: dict[str, Any]) -> dict[str, Any]:
    """Training time and size on disk of each model (data bars behind the numbers), its
    artifacts, and worker memory."""
    models = report["models"]
    train = {m: float(models[m].get("train_seconds") or 0.0) for m in an.MODELS}
    disk = {m: an.model_bytes(models[m]) for m in an.MODELS}
    rows = [
        Row(m, [num(models[m].get("train_seconds"), "sig", ("models", m, "train_seconds"),
                    style=heat.bar_style(train[m], max(train.values()), BAR_COLOURS[m])),
                num(disk[m], "size",
                    style=heat.bar_style(disk[m], max(disk.values()), BAR_COLOURS[m]))],
            kind="tag",
            artifacts=[(f, num(a["bytes"], "size", ("models", m, "artifacts", f, "bytes")))
                       for f, a in models[m].get("artifacts", {}).items()])
        for m in an.MODELS
    ]
    rss = [Row(w, [num(b, "size", ("cluster", "worker_rss_bytes", w))], kind="code")
           for w, b in an.worker_rss(report["cluster"])]
    return {"rows": rows, "rss_rows": rss}


def study_view(report: dict[str, Any]) -> dict[str, Any]:
    """Our figures next to the study's: the headline rows and KNN per digit."""
    rows = [Row(r.label, [num(r.ours, r.fmt, r.key), Num(r.theirs), Num(r.note)])
            for r in an.study_comparison(report)]
    ours = report["models"]["knn"]["per_class_accuracy"]
    theirs = an.STUDY.knn_per_class
    diff = an.differences(list(theirs), ours)
    digits = [
        Row("this run", [num(ours[d], "pct", ("models", "knn", "per_class_accuracy", d))
                         for d in range(10)]),
        Row("study", [num(t, "pct") for t in theirs]),
        Row("difference (points)", [num(x, "points", cls=sign_class(x)) for x in diff]),
    ]
    return {"rows": rows, "digits": digits}


def facts_view(report: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """(label, value) rows of each facts table: data, cluster, timing, outputs, versions,
    model checksums and the report's own fields."""
    groups = {
        "data": report["dataset"], "timing": report["timing"],
        "outputs": report.get("outputs", {}), "cluster": report["cluster"],
        "versions": report.get("versions", {}), "report": meta(report),
    }
    view = {name: an.fact_rows(values) for name, values in groups.items()}
    view["images"] = an.image_files_facts(report)
    view["checksums"] = [
        (f"{an.LABELS[m]} · {f}", a.get("sha256", EN_DASH)) for m in an.MODELS
        for f, a in report["models"][m].get("artifacts", {}).items()
    ]
    return view

