"""Render an image-scoring report (schema `mnist-dist-images-report/1`) as text, Markdown, HTML.

Pure functions of the report document. The HTML is one self-contained file: styles inline,
contact-sheet PNGs embedded as base64 `data:` URIs, nothing fetched from the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.report.formats import (
    HYPHEN,
    data_uri,
    digit_lines,
    fixed,
    markdown_code,
    markdown_table,
    pct,
)
from mnist_dist.report.pages import Num, render_page, stylesheet
from mnist_dist.report.schema import HTML_NAME, MARKDOWN_NAME

ROW_LIMIT = 1000  # rows shown in report.md / report.html; report.json holds all of them
MODELS = ("knn", "mlp")
HEADERS = ["file", "label", "KNN", "MLP", "p(MLP)", "runner-up", "p(runner-up)", "status"]
DIGITS = [str(d) for d in range(10)]


def cell(value: Any, digits: int = 3) -> str:
    """A table cell's text: `-` for None, fixed decimals for floats."""
    if isinstance(value, float):
        return fixed(value, digits)
    return HYPHEN if value is None else str(value)


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
    return digit_lines({name: sections[name] for name in MODELS}, counts=True)


def row_cells(row: dict[str, Any]) -> list[str]:
    """file, label, KNN, MLP, p(MLP), runner-up, p(runner-up), status."""
    return [
        row["file"], cell(row["label"]), cell(row["knn"]), cell(row["mlp"]),
        cell(row["mlp_probability"]), cell(row["runner_up"]),
        cell(row["runner_up_probability"]), "error: " + row["error"] if row["error"] else "ok",
    ]


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


def accuracy_cells(model: dict[str, Any], name: str) -> list[str]:
    """A model's accuracy row: name, overall %, files, then each digit's % (one decimal)."""
    return [name.upper(), pct(model["accuracy"], 2, HYPHEN), str(model["n_images"])] + [
        pct(a, 1, HYPHEN, unit="") for a in model["per_class_accuracy"]
    ]


def confusion_cells(confusion: list[list[int]]) -> list[list[str]]:
    """The rows of a 10x10 confusion matrix: the true digit, then its ten counts."""
    return [[str(d)] + [str(n) for n in confusion[d]] for d in range(10)]


def render_markdown(report: dict[str, Any]) -> str:
    """`report.md`: summary, accuracy and confusion (when labelled), the files table, steps."""
    lines = ["# Image scoring report", "", summary_line(report), ""]
    sections = report.get("accuracy")
    if sections:
        lines += ["## Accuracy on the labelled files", "", markdown_table(
            ["model", "accuracy", "files", *DIGITS],
            [accuracy_cells(sections[name], name) for name in MODELS])]
        for name in MODELS:
            lines += ["", f"### {name.upper()} confusion", "", markdown_table(
                ["true \\ predicted", *DIGITS], confusion_cells(sections[name]["confusion"]))]
        lines.append("")
    files = report["files"]
    lines += ["## Files", "",
              markdown_table(HEADERS, [row_cells(row) for row in files[:ROW_LIMIT]])]
    if len(files) > ROW_LIMIT:
        lines += ["", f"First {ROW_LIMIT:,} of {len(files):,} files; report.json has all."]
    lines += ["", "## Preprocessing", "",
              " → ".join(markdown_code(step) for step in report["preprocessing"]["steps"]), ""]
    return "\n".join(lines)


def accuracy_view(sections: dict[str, Any]) -> dict[str, Any]:
    """Accuracy rows of both models and each model's confusion rows, mistakes marked."""
    confusion = []
    for name in MODELS:
        counts = sections[name]["confusion"]
        confusion.append((name.upper(), [
            [Num(text, cls="" if c == 0 or c - 1 == d or counts[d][c - 1] == 0 else "wrong")
             for c, text in enumerate(cells)]
            for d, cells in enumerate(confusion_cells(counts))
        ]))
    rows = [[Num(text) for text in accuracy_cells(sections[name], name)] for name in MODELS]
    return {"rows": rows, "confusion": confusion}


def sheet_view(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The contact sheet: original | 28x28 | answers, one card per sampled file."""
    files = report["files"]
    cards = []
    for entry in report["sheet"]:
        row = files[entry["index"]]
        label = row["label"]
        truth = "" if label is None else f" · label {label}"
        cards.append({
            "wrong": label is not None and (row["knn"] != label or row["mlp"] != label),
            "original": data_uri(entry["original_png_b64"]),
            "digit": data_uri(entry["preprocessed_png_b64"]),
            "file": row["file"],
            "answers": f"KNN {cell(row['knn'])} · MLP {cell(row['mlp'])} "
                       f"({cell(row['mlp_probability'])}; {cell(row['runner_up'])}: "
                       f"{cell(row['runner_up_probability'])}){truth}",
        })
    return cards


def file_rows(report: dict[str, Any]) -> list[list[Num]]:
    """The per-file table (first `ROW_LIMIT` rows), errors and mistakes highlighted."""
    rows = []
    for row in report["files"][:ROW_LIMIT]:
        label = row["label"]
        marks = ["file", "", "", "", "", "", "", "error" if row["error"] else ""]
        if label is not None and row["error"] is None:
            marks[2] = "wrong" if row["knn"] != label else ""
            marks[3] = "wrong" if row["mlp"] != label else ""
        rows.append([Num(text, cls=mark) for text, mark in zip(row_cells(row), marks)])
    return rows


def render_html(report: dict[str, Any]) -> str:
    """`report.html`: summary, accuracy, contact sheet and the files table, self-contained."""
    sections, files = report.get("accuracy"), report["files"]
    return render_page(
        "images.html", css=stylesheet("images.css"), summary=summary_line(report),
        accuracy=accuracy_view(sections) if sections else None,
        sheet=sheet_view(report),
        sheet_note=(f"{len(report['sheet'])} of {report['inputs']['n_scored']:,} scored files; "
                    "mistakes and disagreements first."),
        headers=HEADERS, files=file_rows(report),
        files_note=(f"First {ROW_LIMIT:,} of {len(files):,} files; report.json has all."
                    if len(files) > ROW_LIMIT else ""),
        steps=report["preprocessing"]["steps"],
    )


def write_renderings(report: dict[str, Any], out: Path) -> list[Path]:
    """Write `report.md` and `report.html` into `out` atomically; returns their paths."""
    written = []
    for name, text in ((MARKDOWN_NAME, render_markdown(report)), (HTML_NAME, render_html(report))):
        write_bytes_atomic(out / name, text.encode("utf-8"))
        written.append(out / name)
    return written
