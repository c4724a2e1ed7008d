"""The reports' shared toolkit: number formats, Markdown tables, PNG data URIs and the
per-digit accuracy text block (score, images and bench reports all use these).

Each report keeps its own sign for a missing value (`dash`): the score report's pages use an
en dash, the images and bench reports (and terminal text) a hyphen.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

EN_DASH = "–"
HYPHEN = "-"
# Markdown table cells: characters that would end the cell or the row, or open HTML.
MARKDOWN_ESCAPES = {"|": "\\|", "<": "&lt;", ">": "&gt;", "\r\n": " ", "\n": " ", "\r": " ",
                    "[": "\\[", "]": "\\]"}  # no brackets: no link, no remote image


def pct(value: float | None, decimals: int = 2, dash: str = EN_DASH, unit: str = "%") -> str:
    """A 0-1 fraction as a percentage, e.g. `94.65%` (`unit=""`: `94.65`)."""
    return dash if value is None else f"{100 * value:.{decimals}f}{unit}"


def points(value: float | None, dash: str = EN_DASH) -> str:
    """A 0-1 difference in percentage points with its sign, e.g. `+2.52`."""
    return dash if value is None else f"{100 * value:+.2f}"


def sig(value: float | None, digits: int = 3, dash: str = EN_DASH) -> str:
    """`digits` significant digits, thousands separated, never in exponent notation."""
    if value is None:
        return dash
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)  # nan, inf: shown as they are
    magnitude = int(np.floor(np.log10(abs(value))))
    return f"{value:,.{max(0, digits - 1 - magnitude)}f}"


def size(value: float | None, dash: str = EN_DASH) -> str:
    """Bytes in decimal units to 3 significant digits, e.g. `9.23 MB`, `134 B`."""
    if value is None:
        return dash
    for factor, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= factor:
            return f"{sig(value / factor)} {unit}"
    return f"{value:,.0f} B"


def count(value: int | None, dash: str = EN_DASH) -> str:
    """An integer with thousands separators, e.g. `14,000`."""
    return dash if value is None else f"{value:,}"


def fixed(value: float | None, decimals: int = 0, dash: str = HYPHEN) -> str:
    """A number with fixed decimals and thousands separators, e.g. `1,234.5`."""
    return dash if value is None else f"{value:,.{decimals}f}"


# By the name the HTML carries in `data-fmt` (tests parse the text back).
FORMATS: dict[str, Callable[[Any], str]] = {"pct": pct, "points": points, "sig": sig, "int": count, "size": size}


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


def data_uri(png: bytes | str) -> str:
    """A `data:image/png;base64,…` URI of a PNG: its bytes, or their base64 text as a
    report.json holds it."""
    text = base64.b64encode(png).decode("ascii") if isinstance(png, bytes) else png
    return "data:image/png;base64," + text


def markdown_text(text: str) -> str:
    """`text` safe as inline Markdown, e.g. a table cell: no `|` or line break ends the cell or
    the line, no HTML opens, no link or image forms."""
    text = re.sub(r"\\(?=[!-/:-@\[-`{-~])", r"\\\\", text)  # a backslash that would escape
    for raw, escaped in MARKDOWN_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def markdown_code(text: str) -> str:
    """`text` as one inline Markdown code span: line breaks become spaces (a blank line would
    end the span), and the fence is longer than any run of backticks inside."""
    text = " ".join(text.splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if fence != "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(
    head: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A GitHub-flavoured Markdown table, every cell escaped; `align` is the rule row
    (default `---` under every column)."""
    rule = list(align) if align is not None else ["---"] * len(head)
    lines = [[markdown_text(c) for c in head], rule, *([markdown_text(c) for c in r] for r in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def numeric_align(columns: int) -> list[str]:
    """The rule row of a table of numbers: the first column left, the rest right-aligned."""
    return ["---"] + ["---:"] * (columns - 1)


def digit_lines(models: Mapping[str, Mapping[str, Any]], counts: bool = False) -> list[str]:
    """The per-digit accuracy block of terminal text: a header line, then per model its ten
    per-digit accuracies (%) and overall accuracy (`counts`: and how many images)."""
    lines = ["digit      " + " ".join(f"{d:>5}" for d in range(10)) + "   overall"]
    for name, model in models.items():
        cells = " ".join(
            f"{HYPHEN:>5}" if a is None else f"{100 * a:5.1f}" for a in model["per_class_accuracy"]
        )
        line = f"{name.upper():<10} {cells}   {100 * model['accuracy']:.2f}%"
        lines.append(line + (f" of {model['n_images']:,}" if counts else ""))
    return lines


def resumed_part(timing: dict[str, Any], n_images: int) -> str:
    """`; 200 of them in this session` when a resumed run scored only some images itself."""
    computed = timing.get("images_computed")
    if not isinstance(computed, int) or computed == n_images:
        return ""
    return f"; {computed:,} of them in this session"


def sample_label(item: Mapping[str, Any]) -> str:
    """How a sampled digit is named under its image: its file's name (the last part of its
    `id`) when the split has ids, else `#row`."""
    if item.get("id") is not None:
        return str(item["id"]).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or str(item["id"])
    return f"#{item['index']:,}"


def sample_title(item: Mapping[str, Any]) -> str:
    """The full name of a sampled digit, for a tooltip: its id and row, or its row."""
    row = f"row {item['index']:,} of the scored split"
    return row if item.get("id") is None else f"{item['id']} ({row})"

