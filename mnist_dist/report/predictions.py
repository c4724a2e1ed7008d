"""The report's `predictions` section (labels not needed): predicted-digit counts, KNN/MLP
agreement, the MLP's confidence and the galleries, as HTML values and as Markdown.

Everything comes from counts and bounded samples in report.json: nothing grows with the
number of images scored.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mnist_dist.report import heat, plots
from mnist_dist.report.analysis import LABELS
from mnist_dist.report.formats import (
    FORMATS,
    count,
    data_uri,
    markdown_table,
    numeric_align,
    pct,
    sample_label,
    sample_title,
)
from mnist_dist.report.pages import Num, Row
from mnist_dist.report.schema import GALLERY_LIMIT, decode_pixels

GALLERIES = (("least_confident", "Least confident MLP predictions"),
             ("disagreements", "KNN and MLP disagree"))
KEY = ("predictions",)


def num(value: Any, fmt: str, key: tuple[Any, ...] | None = None, cls: str = "",
        style: str = "") -> Num:
    """`value` formatted as `fmt`, keyed by its path under `predictions` in report.json."""
    return Num(FORMATS[fmt](value), json.dumps([*KEY, *key]) if key else None,
               fmt if key else "", cls, style=style)


def predictions_view(report: dict[str, Any]) -> dict[str, Any]:
    """The section's values for `templates/predictions.html`."""
    section = report["predictions"]
    counts = section["counts"]
    view: dict[str, Any] = {
        "count_rows": [
            Row(m, [num(c, "int", ("counts", m, d)) for d, c in enumerate(counts[m])]
                + [Num(count(sum(counts[m])))], kind="tag")
            for m in counts
        ],
        "agreement": None, "confidence": None,
        "galleries": [(title, gallery(section, name)) for name, title in GALLERIES],
    }
    if section.get("agreement"):
        view["agreement"] = agreement_view(section["agreement"])
    if section.get("confidence"):
        view["confidence"] = confidence_view(section["confidence"])
    return view


def agreement_view(agreement: dict[str, Any]) -> dict[str, Any]:
    """The agreement rate and the 10x10 matrix as a heatmap table (log shade)."""
    matrix = np.asarray(agreement["matrix"], dtype=np.int64)
    styles = heat.cell_styles(heat.log_shade(matrix), "Blues")
    rows = [
        Row(str(k), [num(int(matrix[k, m]), "int", ("agreement", "matrix", k, m),
                         "diag" if k == m else "", styles[k, m]) for m in range(10)], kind="th")
        for k in range(10)
    ]
    return {"rate": num(agreement["rate"], "pct", ("agreement", "rate")), "rows": rows}


def confidence_view(confidence: dict[str, Any]) -> dict[str, Any]:
    """The histogram of the MLP's top probability (bars on a log scale) and the counts under
    each threshold."""
    thresholds = confidence["thresholds"]
    rows = [Row(f"below {t['below']}", [num(t["count"], "int", ("confidence", "thresholds", i,
                                                                 "count")),
                                        num(t["share"], "pct", ("confidence", "thresholds", i,
                                                                "share"))])
            for i, t in enumerate(thresholds)]
    counts = np.asarray(confidence["histogram"], dtype=np.int64)
    width = 1 / max(1, len(counts))
    bins = [{"height": height, "title": f"{i * width:.2f}–{(i + 1) * width:.2f}: "
                                        f"{count(int(c))} images"}
            for i, (c, height) in enumerate(zip(counts, heat.histogram_heights(counts),
                                                strict=True))]
    return {"rows": rows, "bins": bins}


def caption(item: dict[str, Any]) -> str:
    """What the models said of one sampled digit, e.g. `KNN 4 · MLP 9 (0.41)` (with labels
    first `true 4 · `)."""
    parts = [f"true {item['true']}"] if "true" in item else []
    parts += [f"{LABELS[m]} {item[m]}" for m in ("knn", "mlp") if m in item]
    probability = item.get("probability")
    return " · ".join(parts) + ("" if probability is None else f" ({probability:.2f})")


def gallery(section: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Up to GALLERY_LIMIT sampled digits, each with its nearest training digits."""
    return [
        {"uri": data_uri(plots.digit_png(decode_pixels(item))), "alt": f"digit #{item['index']}",
         "caption": caption(item), "index": sample_label(item), "title": sample_title(item),
         "neighbours": [
             {"uri": data_uri(plots.digit_png(decode_pixels(n))),
              "alt": f"training digit {n['row']}",
              "title": f"training row {n['row']:,}, distance {FORMATS['sig'](n['distance'])}"}
             for n in item.get("neighbours") or []
         ]}
        for item in (section.get(name) or [])[:GALLERY_LIMIT]
    ]


def predictions_markdown(report: dict[str, Any]) -> str:
    """The section in Markdown: counts, agreement, confidence and the sampled digits."""
    section = report["predictions"]
    counts = section["counts"]
    head = ["model", *map(str, range(10)), "total"]
    rows = [[LABELS.get(m, m), *(f"{c:,}" for c in counts[m]), f"{sum(counts[m]):,}"]
            for m in counts]
    text = "## Predictions\n\n### Predicted digits\n\n" + markdown_table(
        head, rows, numeric_align(len(head)))
    agreement = section.get("agreement")
    if agreement:
        matrix = [[str(k), *(f"{c:,}" for c in agreement["matrix"][k])] for k in range(10)]
        text += (f"\n\n### KNN and MLP agreement\n\nThey agree on {pct(agreement['rate'])} of "
                 "the images (rows: the KNN's digit, columns: the MLP's).\n\n"
                 + markdown_table(["KNN \\ MLP", *map(str, range(10))], matrix, numeric_align(11)))
    confidence = section.get("confidence")
    if confidence:
        rows = [[f"below {t['below']}", f"{t['count']:,}", pct(t["share"])]
                for t in confidence["thresholds"]]
        text += "\n\n### MLP confidence (top probability)\n\n" + markdown_table(
            ["top probability", "images", "share"], rows, numeric_align(3))
    for name, title in GALLERIES:
        items = (section.get(name) or [])[:GALLERY_LIMIT]
        rows = [[sample_label(item), caption(item),
                 ", ".join(f"{n['row']:,}" for n in item.get("neighbours") or [])]
                for item in items]
        text += f"\n\n### {title}\n\n" + (markdown_table(
            ["image", "predictions", "nearest training rows"], rows, ["---"] * 3)
            if rows else "None sampled.")
    return text
