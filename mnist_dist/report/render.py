"""Render a run's report.json as a self-contained `report.html` and a `report.md` summary.

Pure functions of the report document: no cluster, no models, no clock, no network. The same
report.json always gives byte-identical files, and the work does not grow with the number of
images scored (only the 10x10 counts get larger numbers).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.errors import ReportError
from mnist_dist.report import analysis as an
from mnist_dist.report import plots

log = logging.getLogger(__name__)

# The same values as in `document.py` (a test checks); here so that re-rendering needs neither
# Dask nor the models.
SCHEMA = "mnist-dist-report/1"
REPORT_NAME = "report.json"
HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
GALLERY_LIMIT = 12
TOP_PAIRS = 5
DASH = "–"
REQUIRED = (
    ("dataset", "store"), ("dataset", "split"), ("dataset", "n_images"),
    ("cluster", "workers"), ("cluster", "threads"),
    ("timing", "wall_seconds"), ("timing", "images_per_second"),
) + tuple(
    ("models", m, f) for m in an.MODELS for f in ("accuracy", "per_class_accuracy", "confusion")
)


# ---- entry points ------------------------------------------------------------------------

def render_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write `out/report.html` and `out/report.md` from a report document; returns both paths."""
    check_report(report)
    files = {HTML_NAME: render_html(report), MARKDOWN_NAME: render_markdown(report)}
    paths = []
    for name, text in files.items():
        write_bytes_atomic(out / name, text.encode("utf-8"))
        paths.append(out / name)
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


def render_run(run: Path) -> list[Path]:
    """Re-render the HTML and Markdown of a run folder (or report.json path) beside its JSON."""
    path = run if run.is_file() or run.suffix == ".json" else run / REPORT_NAME
    return render_report(read_report(path), path.parent)


def read_report(path: Path) -> dict[str, Any]:
    """Load and check a report.json; ReportError says what is missing or wrong."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        message = f"report {path} does not exist; run `python -m jobs.score` first"
        raise ReportError(message) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"report {path} must be readable JSON; got {exc} instead") from exc
    if not isinstance(report, dict):
        raise ReportError(f"report {path} must be a JSON object; got {type(report).__name__}")
    check_report(report)
    return report


def check_report(report: dict[str, Any]) -> None:
    """Raise ReportError unless `report` has the schema and the fields the renderer needs."""
    if report.get("schema") != SCHEMA:
        raise ReportError(
            f"report schema must be {SCHEMA!r}; got {report.get('schema')!r} instead"
        )
    for path in REQUIRED:
        if lookup(report, path) is None:
            raise ReportError(f"report field {'.'.join(path)} is missing")
    for name in an.MODELS:
        check_model(name, report["models"][name])


def check_model(name: str, model: dict[str, Any]) -> None:
    """Raise ReportError unless the model's arrays have their shapes and gallery pixels decode."""
    for field, shape in (("confusion", (10, 10)), ("per_class_accuracy", (10,))):
        try:
            got = np.shape(model[field])
        except ValueError:  # ragged nested lists
            got = "ragged"
        if got != shape:
            raise ReportError(f"models.{name}.{field} must have shape {shape}; got {got} instead")
    for item in model.get("misclassified", [])[:GALLERY_LIMIT]:
        decode_pixels(item)


def lookup(document: Any, path: tuple[Any, ...]) -> Any:
    """The value at `path` (keys and list indices) in `document`, None if absent."""
    for key in path:
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return None
    return document


# ---- number formats (shared by HTML and Markdown; tests parse them back) -------------------

def pct(value: float | None, decimals: int = 2) -> str:
    """A 0-1 fraction as a percentage, e.g. `94.65%`."""
    return DASH if value is None else f"{100 * value:.{decimals}f}%"


def points(value: float | None) -> str:
    """A 0-1 difference in percentage points with its sign, e.g. `+2.52`."""
    return DASH if value is None else f"{100 * value:+.2f}"


def sig(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits, thousands separated, never in exponent notation."""
    if value is None:
        return DASH
    if value == 0:
        return "0"
    magnitude = int(np.floor(np.log10(abs(value))))
    return f"{value:,.{max(0, digits - 1 - magnitude)}f}"


def size(value: float | None) -> str:
    """Bytes in decimal units to 3 significant digits, e.g. `9.23 MB`, `134 B`."""
    if value is None:
        return DASH
    for factor, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= factor:
            return f"{sig(value / factor)} {unit}"
    return f"{value:,.0f} B"


def compact(value: Any) -> str:
    """A fact as one short line: dicts as `k=v, …`, lists comma-separated, numbers grouped."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(compact(v) for v in value)
    if isinstance(value, float):
        return sig(value, 4)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def count(value: int | None) -> str:
    """An integer with thousands separators, e.g. `14,000`."""
    return DASH if value is None else f"{value:,}"


FORMATS = {"pct": pct, "points": points, "sig": sig, "int": count, "size": size}


# ---- HTML building blocks ------------------------------------------------------------------

def esc(text: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(text), quote=True)


def td(
    value: Any, fmt: str, key: tuple[Any, ...] | None = None, cls: str = "", title: str = ""
) -> str:
    """A table cell of a formatted number; `key` (its path in report.json) lets tests check it."""
    attrs = key_attrs(key, fmt)
    attrs += f' class="{cls}"' if cls else ""
    attrs += f' title="{esc(title)}"' if title else ""
    return f"<td{attrs}>{esc(FORMATS[fmt](value))}</td>"


def sign_class(value: float | None) -> str:
    """CSS class of a difference: green when positive, red when negative."""
    return "" if not value else ("pos" if value > 0 else "neg")


def table(head: list[str], rows: list[str], cls: str = "") -> str:
    """A table from header labels and already-rendered `<tr>` rows."""
    header = "".join(f"<th>{h}</th>" for h in head)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def image(png: bytes, alt: str, cls: str = "chart") -> str:
    """An `<img>` with the PNG embedded as a data URI."""
    return f'<img class="{cls}" src="{plots.data_uri(png)}" alt="{esc(alt)}">'


def section(anchor: str, title: str, body: str) -> str:
    """A titled page section reachable at `#anchor`."""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def model_tag(name: str) -> str:
    """The model's label, coloured like its charts."""
    return f'<span class="tag {esc(name)}">{esc(an.LABELS.get(name, name))}</span>'


def facts(rows: list[tuple[str, str]]) -> str:
    """A two-column table of already-escaped `(label, value)` rows."""
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts"><tbody>{body}</tbody></table>'


# ---- HTML page -----------------------------------------------------------------------------

def render_html(report: dict[str, Any]) -> str:
    """The whole self-contained HTML page (CSS inline, images as data URIs)."""
    sections = (
        accuracy_section(report), confusion_section(report), errors_section(report),
        speed_section(report), deployment_section(report), study_section(report),
        facts_section(report),
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>MNIST scoring report — {esc(report.get('created', ''))}</title>"
        f"<style>{CSS}</style></head><body>{header(report)}"
        f'<main class="wrap">{"".join(sections)}</main>'
        f'<footer class="wrap">{esc(SCHEMA)} · mnist-dist {esc(report.get("code_version", "?"))}'
        f" · re-render with <code>python -m jobs.report RUN</code></footer>"
        "</body></html>\n"
    )


def header(report: dict[str, Any]) -> str:
    """Title, what was scored, and the headline numbers as cards."""
    data, cluster, timing = report["dataset"], report["cluster"], report["timing"]
    cards = [
        (pct(report["models"][m]["accuracy"]), f"{an.LABELS[m]} accuracy",
         ("models", m, "accuracy"), "pct") for m in an.MODELS
    ] + [
        (f"{data['n_images']:,}", "images scored", ("dataset", "n_images"), "int"),
        (sig(timing["wall_seconds"]) + " s", "wall time", ("timing", "wall_seconds"), "sig"),
        (sig(timing["images_per_second"]), "images / s", ("timing", "images_per_second"), "sig"),
        (f"{cluster['workers']} / {cluster['threads']}", "workers / threads", None, ""),
    ]
    card_html = "".join(
        f'<div class="card"><div class="v"{key_attrs(key, fmt)}>{esc(v)}</div>'
        f'<div class="k">{esc(k)}</div></div>'
        for v, k, key, fmt in cards
    )
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in NAV)
    return (
        '<header><div class="wrap"><h1>MNIST digit scoring: KNN vs MLP</h1>'
        f'<p class="sub">{data["n_images"]:,} images of <code>{esc(data["store"])}</code> '
        f'(split <b>{esc(data["split"])}</b>) · run of {esc(report.get("created", "?"))}</p>'
        f'<div class="cards">{card_html}</div><nav>{nav}</nav></div></header>'
    )


def key_attrs(key: tuple[Any, ...] | None, fmt: str) -> str:
    """`data-key`/`data-fmt` attributes for a number outside a table."""
    return f' data-key="{esc(json.dumps(list(key)))}" data-fmt="{fmt}"' if key else ""


NAV = (
    ("accuracy", "Accuracy"), ("confusion", "Confusion"), ("errors", "Errors"),
    ("speed", "Speed"), ("deployment", "Deployment"), ("study", "vs. the study"),
    ("facts", "Run facts"),
)


def accuracy_section(report: dict[str, Any]) -> str:
    """Overall and per-digit accuracy table with MLP − KNN, and the grouped bar chart."""
    models = report["models"]
    per_class = {m: models[m]["per_class_accuracy"] for m in an.MODELS}
    diff = an.differences(per_class["knn"], per_class["mlp"])
    rows = [
        f"<tr><td>{d}</td>"
        + "".join(td(per_class[m][d], "pct", ("models", m, "per_class_accuracy", d))
                  for m in an.MODELS)
        + td(diff[d], "points", cls=sign_class(diff[d])) + "</tr>"
        for d in range(10)
    ]
    overall = models["mlp"]["accuracy"] - models["knn"]["accuracy"]
    rows.append(
        '<tr class="total"><td>overall</td>'
        + "".join(td(models[m]["accuracy"], "pct", ("models", m, "accuracy")) for m in an.MODELS)
        + td(overall, "points", cls=sign_class(overall)) + "</tr>"
    )
    head = ["digit", *(model_tag(m) for m in an.MODELS), "MLP − KNN (points)"]
    chart = image(plots.accuracy_chart(per_class, diff), "per-digit accuracy of both models")
    return section("accuracy", "Accuracy", (
        f'<div class="side"><div>{table(head, rows, "num")}</div><div>{chart}</div></div>'
        '<p class="note">Per-digit accuracy is the recall of each true digit: the share of '
        "its test images predicted correctly.</p>"
    ))


def confusion_section(report: dict[str, Any]) -> str:
    """Heatmaps (counts and row percentages) of each model, with the counts as tables."""
    parts = []
    for name in an.MODELS:
        confusion = an.as_confusion(report, name)
        percent = an.row_percentages(confusion)
        png = plots.confusion_chart(confusion, percent, f"{an.LABELS[name]} confusion matrix")
        parts.append(
            image(png, f"{an.LABELS[name]} confusion matrix heatmaps")
            + f"<details><summary>{an.LABELS[name]} counts as a table</summary>"
            + confusion_table(name, confusion, percent) + "</details>"
        )
    return section("confusion", "Confusion matrices", "".join(parts) + (
        '<p class="note">Rows are the true digit, columns the predicted one; the right-hand '
        "map shows each row as a percentage of that digit's test images.</p>"
    ))


def confusion_table(name: str, confusion: np.ndarray, percent: np.ndarray) -> str:
    """Counts with the row percentage as a tooltip; the diagonal is highlighted."""
    rows = [
        f"<tr><th>{t}</th>" + "".join(
            td(int(confusion[t, p]), "int", ("models", name, "confusion", t, p),
               "diag" if t == p else "", f"{percent[t, p]:.1f}% of digit {t}")
            for p in range(10)
        ) + "</tr>"
        for t in range(10)
    ]
    return table(["true \\ predicted", *map(str, range(10))], rows, "num confusion")


def errors_section(report: dict[str, Any]) -> str:
    """The most-confused pairs of each model side by side, and each model's gallery."""
    pairs = "".join(
        f"<div><h3>{model_tag(m)}</h3>{pairs_table(report, m)}</div>" for m in an.MODELS
    )
    galleries = "".join(
        f"<div><h3>{model_tag(m)} misclassified</h3>{gallery(report, m)}</div>"
        for m in an.MODELS
    )
    return section("errors", "Most-confused digits", (
        f'<div class="split">{pairs}</div><div class="split">{galleries}</div>'
        '<p class="note">Gallery: a sample of misclassified test digits, true → predicted, '
        "with the image's row in the scored split.</p>"
    ))


def pairs_table(report: dict[str, Any], name: str) -> str:
    """Top confused (true → predicted) pairs of one model with counts and row shares."""
    rows = [
        f"<tr><td>{p.true} → {p.predicted}</td>"
        + td(p.count, "int", ("models", name, "confusion", p.true, p.predicted))
        + td(p.share, "pct") + "</tr>"
        for p in an.confused_pairs(an.as_confusion(report, name), TOP_PAIRS)
    ]
    return table(["true → predicted", "count", "% of true digit"], rows, "num")


def gallery(report: dict[str, Any], name: str) -> str:
    """Up to GALLERY_LIMIT misclassified digits as small embedded images with captions."""
    items = report["models"][name].get("misclassified", [])[:GALLERY_LIMIT]
    if not items:
        return '<p class="note">No misclassified digits were sampled.</p>'
    figures = "".join(
        f'<figure class="digit">{image(plots.digit_png(decode_pixels(item)), alt(item), "px")}'
        f'<figcaption><b>{esc(item["true"])} → {esc(item["predicted"])}</b>'
        f'<br>#{item["index"]:,}</figcaption></figure>'
        for item in items
    )
    return f'<div class="gallery">{figures}</div>'


def alt(item: dict[str, Any]) -> str:
    """Alternative text of a gallery digit."""
    return f"digit {item['true']} predicted as {item['predicted']}"


def decode_pixels(item: dict[str, Any]) -> np.ndarray:
    """The (784,) uint8 pixels of a gallery entry; ReportError if they are not 784 bytes."""
    try:
        raw = base64.b64decode(item["pixels_b64"], validate=True)
    except (KeyError, binascii.Error) as exc:
        raise ReportError(f"gallery entry {item.get('index')} has no valid pixels_b64") from exc
    if len(raw) != 784:
        raise ReportError(
            f"gallery entry {item.get('index')} must hold 784 pixels; got {len(raw)} instead"
        )
    return np.frombuffer(raw, dtype=np.uint8)


def speed_section(report: dict[str, Any]) -> str:
    """Scoring speed in this run, and the throughput sweep as a log-log chart and a table."""
    series = {m: an.throughput_series(report.get("throughput", []), m) for m in an.MODELS}
    cross = an.crossover(series["knn"], series["mlp"])
    body = run_speed_table(report)
    if any(s.batch_sizes for s in series.values()):
        chart = plots.throughput_chart(series, cross)
        body += image(chart, "throughput against batch size") + throughput_table(report)
        body += f'<p class="crossover"><b>Crossover.</b> {esc(cross.summary)}</p>'
    else:
        body += '<p class="note">No throughput sweep in this run.</p>'
    return section("speed", "Speed", body)


def run_speed_table(report: dict[str, Any]) -> str:
    """Each model's share of the scoring run: summed task time, cluster time, images/s."""
    rows = [
        f"<tr><td>{model_tag(m)}</td>"
        + td(report["models"][m].get("task_seconds"), "sig", ("models", m, "task_seconds"))
        + td(report["models"][m].get("seconds"), "sig", ("models", m, "seconds"))
        + td(report["models"][m].get("images_per_second"), "sig",
             ("models", m, "images_per_second"))
        + "</tr>"
        for m in an.MODELS
    ]
    head = ["model", "task time (s)", "cluster time (s)", "images / s"]
    return "<h3>In this run</h3>" + table(head, rows, "num") + (
        '<p class="note">Cluster time is the summed task time spread over all threads.</p>'
        "<h3>Against batch size (one worker)</h3>"
    )


def throughput_table(report: dict[str, Any]) -> str:
    """One row per (model, batch size) of the sweep."""
    indexed = sorted(
        enumerate(report.get("throughput", [])), key=lambda r: (r[1]["model"], r[1]["batch_size"])
    )
    rows = [
        f"<tr><td>{model_tag(r['model'])}</td>"
        + td(r["batch_size"], "int", ("throughput", i, "batch_size"))
        + td(r["images_per_second"], "sig", ("throughput", i, "images_per_second"))
        + td(r["ms_per_image"], "sig", ("throughput", i, "ms_per_image"))
        + td(r.get("repeats"), "int", ("throughput", i, "repeats")) + "</tr>"
        for i, r in indexed
    ]
    head = ["model", "batch size", "images / s", "ms / image", "repeats"]
    return f"<details><summary>Sweep as a table</summary>{table(head, rows, 'num')}</details>"


def deployment_section(report: dict[str, Any]) -> str:
    """Training time, size on disk and worker memory: what each model costs to deploy."""
    models = report["models"]
    train = {m: float(models[m].get("train_seconds") or 0.0) for m in an.MODELS}
    disk = {m: an.model_bytes(models[m]) for m in an.MODELS}
    rows = [
        f"<tr><td>{model_tag(m)}</td>"
        + td(models[m].get("train_seconds"), "sig", ("models", m, "train_seconds"))
        + td(disk[m], "size")
        + f"<td>{artifact_list(m, models[m])}</td></tr>"
        for m in an.MODELS
    ]
    head = ["model", "training time (s)", "size on disk", "artifacts"]
    return section("deployment", "Deployment trade-off", (
        table(head, rows, "num") + image(plots.footprint_chart(train, disk), "training and size")
        + "<h3>Resident memory per worker</h3>" + rss_table(report)
        + '<p class="note">KNN keeps its whole training set in memory on every worker and '
        "compares each image against all of it, so memory and time per image grow with the "
        "training data; the MLP has a fixed, small footprint (its weights) whatever it was "
        "trained on. Each worker holds both models, so its memory is their sum plus the "
        "runtime.</p>"
    ))


def artifact_list(name: str, model: dict[str, Any]) -> str:
    """Each artifact file with its size, e.g. `knn.npz 9.23 MB`."""
    return "<br>".join(
        f"<code>{esc(f)}</code> "
        f'<span{key_attrs(("models", name, "artifacts", f, "bytes"), "size")}>'
        f"{size(a['bytes'])}</span>"
        for f, a in model.get("artifacts", {}).items()
    )


def rss_table(report: dict[str, Any]) -> str:
    """Resident set size of each worker at the end of the run."""
    workers = an.worker_rss(report["cluster"])
    if not workers:
        return '<p class="note">Not recorded.</p>'
    rows = [
        f"<tr><td><code>{esc(w)}</code></td>"
        + td(rss, "size", ("cluster", "worker_rss_bytes", w)) + "</tr>"
        for w, rss in workers
    ]
    return table(["worker", "resident memory"], rows, "num")


def study_section(report: dict[str, Any]) -> str:
    """Our figures next to the study's published ones (which come from another machine)."""
    rows = "".join(
        f"<tr><td>{label}</td>{ours}<td>{esc(theirs)}</td><td>{esc(note)}</td></tr>"
        for label, ours, theirs, note in study_rows(report)
    )
    head = "<th>figure</th><th>this run</th><th>study</th><th>this run vs. study</th>"
    return section("study", "Compared with the study's published figures", (
        f'<table class="num"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        + per_digit_study_table(report)
        + '<p class="note">The study\'s figures were measured on a different machine; '
        "accuracies should agree closely, timings only in order of magnitude.</p>"
    ))


def study_rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, our cell, study's value, comparison) rows of the headline comparison."""
    models, study = report["models"], an.STUDY
    knn, mlp = models["knn"]["accuracy"], models["mlp"]["accuracy"]
    low, high = study.mlp_accuracy_range
    rows = [
        ("KNN accuracy", td(knn, "pct", ("models", "knn", "accuracy")),
         pct(study.knn_accuracy), f"{points(knn - study.knn_accuracy)} points"),
        ("MLP accuracy", td(mlp, "pct", ("models", "mlp", "accuracy")),
         f"{100 * low:.1f}–{100 * high:.1f}%", range_note(mlp, low, high)),
    ]
    for name, theirs in study.ms_per_image:
        ours = an.at_batch(an.throughput_series(report.get("throughput", []), name),
                           study.batch_size)
        note = DASH if ours is None else f"{ours / theirs:.2g}× the study's time"
        rows.append((f"{an.LABELS[name]} ms/image at batch {study.batch_size:,}",
                     td(ours, "sig"), f"{theirs}", note))
    return rows


def range_note(value: float, low: float, high: float) -> str:
    """Where `value` falls relative to the range [low, high]."""
    if value < low:
        return f"{points(value - low)} points below the range"
    if value > high:
        return f"{points(value - high)} points above the range"
    return "within the range"


def per_digit_study_table(report: dict[str, Any]) -> str:
    """KNN per-digit accuracy: ours, the study's, and the difference in points."""
    ours = report["models"]["knn"]["per_class_accuracy"]
    theirs = an.STUDY.knn_per_class
    diff = an.differences(list(theirs), ours)
    head = ["KNN per digit", *map(str, range(10))]
    rows = [
        "<tr><td>this run</td>" + "".join(
            td(ours[d], "pct", ("models", "knn", "per_class_accuracy", d)) for d in range(10)
        ) + "</tr>",
        "<tr><td>study</td>" + "".join(td(t, "pct") for t in theirs) + "</tr>",
        "<tr><td>difference (points)</td>"
        + "".join(td(x, "points", cls=sign_class(x)) for x in diff) + "</tr>",
    ]
    return table(head, rows, "num wide")


def facts_section(report: dict[str, Any]) -> str:
    """Data, cluster, timing, outputs, versions and model checksums of the run."""
    return section("facts", "Run facts", (
        '<div class="split">'
        f"<div><h3>Data</h3>{facts(dict_rows(report['dataset']))}"
        f"<h3>Timing</h3>{facts(dict_rows(report['timing']))}"
        f"<h3>Outputs</h3>{facts(dict_rows(report.get('outputs', {})))}</div>"
        f"<div><h3>Cluster</h3>{facts(dict_rows(report['cluster']))}"
        f"<h3>Versions</h3>{facts(dict_rows(report.get('versions', {})))}</div></div>"
        f"<h3>Model checksums (SHA-256)</h3>{facts(checksum_rows(report))}"
        f"<h3>Report</h3>{facts(dict_rows(meta(report)))}"
    ))


def meta(report: dict[str, Any]) -> dict[str, Any]:
    """The document-level fields: schema, creation time, code version."""
    return {k: report.get(k) for k in ("schema", "created", "code_version")}


def dict_rows(values: dict[str, Any]) -> list[tuple[str, str]]:
    """Escaped (key, value) rows of a flat dict of facts."""
    return [(esc(k), f"<code>{esc(compact(v))}</code>") for k, v in values.items()]


def checksum_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """One row per model artifact: its name and SHA-256."""
    return [
        (esc(f"{an.LABELS[m]} · {f}"), f"<code>{esc(a.get('sha256', DASH))}</code>")
        for m in an.MODELS
        for f, a in report["models"][m].get("artifacts", {}).items()
    ]


CSS = """
:root{--knn:#3b6fb6;--mlp:#e07b39;--ink:#1f2933;--muted:#66727f;--line:#e3e6ea;--bg:#f4f6f8}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:var(--ink);background:var(--bg)}
.wrap{max-width:1140px;margin:0 auto;padding:0 24px}
header{background:linear-gradient(135deg,#1c2b40,#2f5279);color:#fff;padding:26px 0 14px}
header h1{margin:0;font-size:26px;font-weight:650}
header .sub{margin:4px 0 0;opacity:.85}
header code{color:#fff;background:rgba(255,255,255,.12)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin:18px 0}
.card{background:rgba(255,255,255,.1);border-radius:10px;padding:10px 14px}
.card .v{font-size:23px;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{font-size:11.5px;opacity:.8;text-transform:uppercase;letter-spacing:.05em}
nav{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:14px}
nav a{color:#cfe0f5;text-decoration:none}nav a:hover{color:#fff}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 24px;
margin:20px 0;box-shadow:0 1px 2px rgba(0,0,0,.03)}
h2{margin:0 0 12px;font-size:20px}h3{margin:16px 0 6px;font-size:15.5px}
table{border-collapse:collapse;font-size:13.5px;margin:6px 0 10px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{font-weight:600;color:var(--muted);border-bottom:2px solid var(--line)}
table.num td,table.num thead th{text-align:right;font-variant-numeric:tabular-nums}
table.num td:first-child,table.num thead th:first-child{text-align:left}
table.num tbody tr:nth-child(even){background:#fafbfc}
tr.total td{font-weight:650;border-top:2px solid var(--line)}
table.confusion td.diag{background:#eaf1fa;font-weight:600}
table.wide{width:100%}
table.facts th{color:var(--muted);font-weight:500;white-space:nowrap;padding-right:18px}
.pos{color:#23824f}.neg{color:#c0392b}
.tag{font-weight:650}.tag.knn{color:var(--knn)}.tag.mlp{color:var(--mlp)}
img.chart{display:block;max-width:100%;height:auto;margin:8px 0}
.split{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:8px 28px;
align-items:start}
.side{display:grid;grid-template-columns:auto 1fr;gap:8px 28px;align-items:center}
@media (max-width:900px){.side{grid-template-columns:1fr}}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure.digit{margin:0;text-align:center;font-size:12px;color:var(--muted)}
figure.digit b{color:var(--ink)}
img.px{width:56px;height:56px;image-rendering:pixelated;border:1px solid var(--line);
border-radius:4px;display:block}
details{margin:4px 0 10px}summary{cursor:pointer;color:var(--muted);font-size:14px}
.note{color:var(--muted);font-size:13.5px;margin:6px 0}
.crossover{background:#f3f7fc;border-left:3px solid var(--knn);padding:8px 12px;border-radius:4px}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px;
word-break:break-all;background:#f3f4f6;padding:1px 4px;border-radius:3px}
footer{color:var(--muted);font-size:12.5px;padding:4px 24px 28px}
"""


# ---- Markdown summary ----------------------------------------------------------------------

def render_markdown(report: dict[str, Any]) -> str:
    """A plain Markdown summary with the same numbers as the HTML (no images)."""
    parts = [
        md_header(report), md_accuracy(report), md_pairs(report), md_confusion(report),
        md_speed(report), md_deployment(report), md_study(report), md_facts(report),
    ]
    return "\n\n".join(parts) + "\n"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, numbers right-aligned after the first column."""
    align = ["---"] + ["---:"] * (len(head) - 1)
    lines = [head, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def md_header(report: dict[str, Any]) -> str:
    """Title and one paragraph of what ran where."""
    data, cluster, timing = report["dataset"], report["cluster"], report["timing"]
    return (
        "# MNIST digit scoring: KNN vs MLP\n\n"
        f"Run of {report.get('created', '?')}: {data['n_images']:,} images of "
        f"`{data['store']}` (split `{data['split']}`) on {cluster['workers']} workers / "
        f"{cluster['threads']} threads in {sig(timing['wall_seconds'])} s "
        f"({sig(timing['images_per_second'])} images/s). "
        f"Charts, confusion heatmaps and the gallery are in `{HTML_NAME}`."
    )


def md_accuracy(report: dict[str, Any]) -> str:
    """Overall and per-digit accuracy of both models and MLP − KNN."""
    models = report["models"]
    per_class = {m: models[m]["per_class_accuracy"] for m in an.MODELS}
    diff = an.differences(per_class["knn"], per_class["mlp"])
    rows = [[str(d), *(pct(per_class[m][d]) for m in an.MODELS), points(diff[d])]
            for d in range(10)]
    overall = models["mlp"]["accuracy"] - models["knn"]["accuracy"]
    rows.append(["overall", *(pct(models[m]["accuracy"]) for m in an.MODELS), points(overall)])
    head = ["digit", *(an.LABELS[m] for m in an.MODELS), "MLP − KNN (points)"]
    return "## Accuracy\n\n" + md_table(head, rows)


def md_pairs(report: dict[str, Any]) -> str:
    """The top confused pairs of each model."""
    blocks = []
    for name in an.MODELS:
        pairs = an.confused_pairs(an.as_confusion(report, name), TOP_PAIRS)
        rows = [[f"{p.true} → {p.predicted}", f"{p.count:,}", pct(p.share)] for p in pairs]
        blocks.append(f"### {an.LABELS[name]}\n\n"
                      + md_table(["true → predicted", "count", "% of true digit"], rows))
    return "## Most-confused pairs\n\n" + "\n\n".join(blocks)


def md_confusion(report: dict[str, Any]) -> str:
    """Both confusion matrices as count tables (rows true, columns predicted)."""
    blocks = []
    for name in an.MODELS:
        confusion = an.as_confusion(report, name)
        rows = [[str(t), *(f"{int(c):,}" for c in confusion[t])] for t in range(10)]
        blocks.append(f"### {an.LABELS[name]}\n\n"
                      + md_table(["true \\ predicted", *map(str, range(10))], rows))
    return "## Confusion matrices (counts)\n\n" + "\n\n".join(blocks)


def md_speed(report: dict[str, Any]) -> str:
    """Run speed per model, the sweep, and the crossover sentence."""
    models = report["models"]
    run_rows = [[an.LABELS[m], sig(models[m].get("task_seconds")), sig(models[m].get("seconds")),
                 sig(models[m].get("images_per_second"))] for m in an.MODELS]
    text = "## Speed\n\n" + md_table(
        ["model", "task time (s)", "cluster time (s)", "images / s"], run_rows)
    sweep = sorted(report.get("throughput", []), key=lambda r: (r["model"], r["batch_size"]))
    if not sweep:
        return text + "\n\nNo throughput sweep in this run."
    rows = [[an.LABELS.get(r["model"], r["model"]), f"{r['batch_size']:,}",
             sig(r["images_per_second"]), sig(r["ms_per_image"])] for r in sweep]
    series = {m: an.throughput_series(sweep, m) for m in an.MODELS}
    cross = an.crossover(series["knn"], series["mlp"])
    return (text + "\n\n### Against batch size (one worker)\n\n"
            + md_table(["model", "batch size", "images / s", "ms / image"], rows)
            + f"\n\n**Crossover.** {cross.summary}")


def md_deployment(report: dict[str, Any]) -> str:
    """Training time, size on disk, and worker memory."""
    models = report["models"]
    rows = [
        [an.LABELS[m], sig(models[m].get("train_seconds")), size(an.model_bytes(models[m]))]
        for m in an.MODELS
    ]
    rss = [[f"`{w}`", size(b)] for w, b in an.worker_rss(report["cluster"])]
    return (
        "## Deployment trade-off\n\n"
        + md_table(["model", "training time (s)", "size on disk"], rows)
        + "\n\n" + (md_table(["worker", "resident memory"], rss) if rss else "Worker memory: -")
        + "\n\nKNN keeps its whole training set in memory on every worker; the MLP has a "
        "fixed, small footprint."
    )


def md_study(report: dict[str, Any]) -> str:
    """Ours next to the study's published figures (from a different machine)."""
    rows = [[label, strip_tags(ours), theirs, note] for label, ours, theirs, note
            in study_rows(report)]
    ours = report["models"]["knn"]["per_class_accuracy"]
    digits = [[str(d), pct(ours[d]), pct(an.STUDY.knn_per_class[d]),
               points(an.differences([an.STUDY.knn_per_class[d]], [ours[d]])[0])]
              for d in range(10)]
    return (
        "## Compared with the study's published figures\n\n"
        "The study's figures were measured on a different machine.\n\n"
        + md_table(["figure", "this run", "study", "this run vs. study"], rows)
        + "\n\n" + md_table(["KNN digit", "this run", "study", "difference (points)"], digits)
    )


def strip_tags(cell: str) -> str:
    """The text of one rendered `<td>` cell (already escaped) for Markdown."""
    return html.unescape(cell[cell.index(">") + 1:cell.rindex("</td>")])


def md_facts(report: dict[str, Any]) -> str:
    """Data, cluster, timing, versions and checksums as bullet lists."""
    groups = {
        "Data": report["dataset"], "Cluster": report["cluster"], "Timing": report["timing"],
        "Outputs": report.get("outputs", {}), "Versions": report.get("versions", {}),
        "Report": meta(report),
    }
    text = "## Run facts\n"
    for title, values in groups.items():
        text += f"\n**{title}**\n\n" + "\n".join(
            f"- {k}: `{compact(v)}`" for k, v in values.items()
        ) + "\n"
    sums = [f"- {an.LABELS[m]} `{f}`: `{a.get('sha256', DASH)}`" for m in an.MODELS
            for f, a in report["models"][m].get("artifacts", {}).items()]
    return text + "\n**Model checksums (SHA-256)**\n\n" + "\n".join(sums)
