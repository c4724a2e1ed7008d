"""Render an image-scoring report (schema `mnist-dist-images-report/1`) as text, Markdown, HTML.

Pure functions of the report document. The HTML is one self-contained file: styles inline,
contact-sheet PNGs embedded as base64 `data:` URIs, nothing fetched from the network.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_bytes_atomic

HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
ROW_LIMIT = 1000  # rows shown in report.md / report.html; report.json holds all of them
MODELS = ("knn", "mlp")
DASH = "-"

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td.file, th.file { text-align: left; font-family: monospace; }
td.error { text-align: left; color: #a00; }
td.wrong { background: #fdd; }
.sheet { display: flex; flex-wrap: wrap; gap: 10px; }
.card { border: 1px solid #ccc; padding: 6px; width: 220px; font-size: 12px; }
.card.wrong { border-color: #c00; background: #fff4f4; }
.card .pair { display: flex; gap: 6px; align-items: center; height: 96px; }
.card img.original { max-width: 96px; max-height: 96px; background: #eee; }
.card img.digit { width: 84px; height: 84px; image-rendering: pixelated; }
.card .name { font-family: monospace; overflow-wrap: anywhere; }
"""


def cell(value: Any, digits: int = 3) -> str:
    """A table cell's text: `-` for None, fixed decimals for floats."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_line(report: dict[str, Any]) -> str:
    """One line: files scored and failed, time, where the models came from."""
    inputs, timing = report["inputs"], report["timing"]
    return (
        f"scored {inputs['n_scored']:,} of {inputs['n_files']:,} image files "
        f"({inputs['n_failed']:,} failed) in {timing['wall_seconds']:.1f} s "
        f"on {report['cluster']['workers']} workers; models {report['models']['directory']}"
    )


def accuracy_lines(report: dict[str, Any]) -> list[str]:
    """Per-digit and overall accuracy of both models on the labelled files (text)."""
    sections = report.get("accuracy")
    if not sections:
        return []
    lines = ["digit      " + " ".join(f"{d:>5}" for d in range(10)) + "   overall"]
    for name in MODELS:
        model = sections[name]
        cells = " ".join(
            "    -" if a is None else f"{100 * a:5.1f}" for a in model["per_class_accuracy"]
        )
        lines.append(f"{name.upper():<10} {cells}   {100 * model['accuracy']:.2f}% "
                     f"of {model['n_images']:,}")
    return lines


def row_cells(row: dict[str, Any]) -> list[str]:
    """file, label, KNN, MLP, p(MLP), runner-up, p(runner-up), status."""
    return [
        row["file"], cell(row["label"]), cell(row["knn"]), cell(row["mlp"]),
        cell(row["mlp_probability"]), cell(row["runner_up"]),
        cell(row["runner_up_probability"]), "error: " + row["error"] if row["error"] else "ok",
    ]


HEADERS = ["file", "label", "KNN", "MLP", "p(MLP)", "runner-up", "p(runner-up)", "status"]


def text_table(report: dict[str, Any]) -> str:
    """The terminal table: one line per file, then the summary and accuracy lines."""
    rows = [HEADERS] + [row_cells(row) for row in report["files"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS) - 1)]
    lines = [
        "  ".join(
            [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, len(widths))]
            + [r[-1]]
        )
        for r in rows
    ]
    return "\n".join(lines + ["", summary_line(report), *accuracy_lines(report)])


def markdown_row(cells: list[str]) -> str:
    """One Markdown table row, with `|` escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def confusion_markdown(confusion: list[list[int]]) -> list[str]:
    """A 10x10 confusion matrix as a Markdown table (rows: true digit)."""
    lines = [markdown_row(["true \\ predicted"] + [str(d) for d in range(10)]),
             markdown_row(["---"] * 11)]
    lines += [markdown_row([str(d)] + [str(n) for n in confusion[d]]) for d in range(10)]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """`report.md`: summary, accuracy and confusion (when labelled), the files table, steps."""
    lines = ["# Image scoring report", "", summary_line(report), ""]
    sections = report.get("accuracy")
    if sections:
        lines += ["## Accuracy on the labelled files", "",
                  markdown_row(["model", "accuracy", "files"] + [str(d) for d in range(10)]),
                  markdown_row(["---"] * 13)]
        for name in MODELS:
            model = sections[name]
            lines.append(markdown_row(
                [name.upper(), f"{100 * model['accuracy']:.2f}%", str(model["n_images"])]
                + [DASH if a is None else f"{100 * a:.1f}" for a in model["per_class_accuracy"]]
            ))
        for name in MODELS:
            lines += ["", f"### {name.upper()} confusion", ""]
            lines += confusion_markdown(sections[name]["confusion"])
        lines.append("")
    files = report["files"]
    lines += ["## Files", "", markdown_row(HEADERS), markdown_row(["---"] * len(HEADERS))]
    lines += [markdown_row(row_cells(row)) for row in files[:ROW_LIMIT]]
    if len(files) > ROW_LIMIT:
        lines += ["", f"First {ROW_LIMIT:,} of {len(files):,} files; report.json has all."]
    lines += ["", "## Preprocessing", "",
              " → ".join(f"`{step}`" for step in report["preprocessing"]["steps"]), ""]
    return "\n".join(lines)


def esc(value: Any) -> str:
    """HTML-escaped text of a cell value."""
    return html.escape(cell(value))


def html_table(
    headers: list[str], rows: list[list[str]], classes: list[list[str]] | None = None
) -> str:
    """An HTML table of already-escaped cells, with optional per-cell classes."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        tds = []
        for c, value in enumerate(row):
            cls = classes[r][c] if classes else ""
            tds.append(f'<td class="{cls}">{value}</td>' if cls else f"<td>{value}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def accuracy_html(sections: dict[str, Any]) -> str:
    """Per-class accuracy of both models and their confusion matrices."""
    rows = [
        [name.upper(), f"{100 * sections[name]['accuracy']:.2f}%", str(sections[name]["n_images"])]
        + [DASH if a is None else f"{100 * a:.1f}" for a in sections[name]["per_class_accuracy"]]
        for name in MODELS
    ]
    parts = ["<h2>Accuracy on the labelled files</h2>",
             html_table(["model", "accuracy", "files"] + [str(d) for d in range(10)], rows)]
    for name in MODELS:
        confusion = sections[name]["confusion"]
        cells = [[str(d)] + [str(n) for n in confusion[d]] for d in range(10)]
        classes = [["" if c == 0 or c - 1 == d or confusion[d][c - 1] == 0 else "wrong"
                    for c in range(11)] for d in range(10)]
        parts += [f"<h3>{name.upper()} confusion (rows: true digit)</h3>",
                  html_table(["true \\ predicted"] + [str(d) for d in range(10)], cells, classes)]
    return "\n".join(parts)


def sheet_html(report: dict[str, Any]) -> str:
    """The contact sheet: original | 28x28 | answers, one card per sampled file."""
    if not report["sheet"]:
        return ""
    files = report["files"]
    cards = []
    for entry in report["sheet"]:
        row = files[entry["index"]]
        label = row["label"]
        wrong = label is not None and (row["knn"] != label or row["mlp"] != label)
        truth = "" if label is None else f" · label {label}"
        cards.append(
            f'<div class="card{" wrong" if wrong else ""}"><div class="pair">'
            f'<img class="original" alt="original" '
            f'src="data:image/png;base64,{entry["original_png_b64"]}">'
            f'<img class="digit" alt="28x28" '
            f'src="data:image/png;base64,{entry["preprocessed_png_b64"]}"></div>'
            f'<div class="name">{html.escape(row["file"])}</div>'
            f"<div>KNN {esc(row['knn'])} · MLP {esc(row['mlp'])} "
            f"({esc(row['mlp_probability'])}; {esc(row['runner_up'])}: "
            f"{esc(row['runner_up_probability'])}){html.escape(truth)}</div></div>"
        )
    shown = len(report["sheet"])
    note = (f"{shown} of {report['inputs']['n_scored']:,} scored files; "
            "mistakes and disagreements first.")
    return (f"<h2>Contact sheet</h2><p>original | 28x28 as the models see it | answers. "
            f"{html.escape(note)}</p><div class=\"sheet\">{''.join(cards)}</div>")


def files_html(report: dict[str, Any]) -> str:
    """The per-file table (first `ROW_LIMIT` rows), errors and mistakes highlighted."""
    files = report["files"]
    rows, classes = [], []
    for row in files[:ROW_LIMIT]:
        cells = [html.escape(c) for c in row_cells(row)]
        label = row["label"]
        marks = ["file", "", "", "", "", "", "", "error" if row["error"] else ""]
        if label is not None and row["error"] is None:
            marks[2] = "wrong" if row["knn"] != label else ""
            marks[3] = "wrong" if row["mlp"] != label else ""
        rows.append(cells)
        classes.append(marks)
    note = (f"<p>First {ROW_LIMIT:,} of {len(files):,} files; report.json has all.</p>"
            if len(files) > ROW_LIMIT else "")
    return "<h2>Files</h2>" + html_table(HEADERS, rows, classes) + note


def render_html(report: dict[str, Any]) -> str:
    """`report.html`: summary, accuracy, contact sheet and the files table, self-contained."""
    sections = report.get("accuracy")
    steps = " → ".join(f"<code>{html.escape(s)}</code>" for s in report["preprocessing"]["steps"])
    body = [
        "<h1>Image scoring report</h1>",
        f"<p>{html.escape(summary_line(report))}</p>",
        accuracy_html(sections) if sections else "",
        sheet_html(report),
        files_html(report),
        f"<h2>Preprocessing</h2><p>{steps}</p>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>mnist-dist image scoring</title>"
        f"<style>{CSS}</style></head><body>\n" + "\n".join(b for b in body if b)
        + "\n</body></html>\n"
    )


def write_renderings(report: dict[str, Any], out: Path) -> list[Path]:
    """Write `report.md` and `report.html` into `out` atomically; returns their paths."""
    written = []
    for name, text in ((MARKDOWN_NAME, render_markdown(report)), (HTML_NAME, render_html(report))):
        write_bytes_atomic(out / name, text.encode("utf-8"))
        written.append(out / name)
    return written
