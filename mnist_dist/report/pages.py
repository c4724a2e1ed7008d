"""The Jinja2 environment of the HTML reports: templates in `templates/`, stylesheets in
`static/` (package data), built once; every page is one self-contained file.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

PACKAGE = "mnist_dist.report"


@dataclass(frozen=True)
class Num:
    """A table cell's value as shown: its text and, for numbers, its report.json path as JSON
    (`data-key`), format name (`data-fmt`), CSS class, tooltip and inline style (a heatmap
    cell's colours; see `macros.html` `td`)."""

    text: str
    key: str | None = None
    fmt: str = ""
    cls: str = ""
    title: str = ""
    style: str = ""


@dataclass(frozen=True)
class Row:
    """A table row: its first cell (`kind`: td, th, tag (a model's label) or code), then cells;
    `artifacts` (file, size) only in the score report's deployment table."""

    first: str
    cells: list[Num]
    kind: str = "td"
    cls: str = ""
    artifacts: list[tuple[str, Num]] = field(default_factory=list)


def escape_text(value: Any) -> Any:
    """Every value a template prints, HTML-escaped as `html.escape(quote=True)` does (`&quot;`,
    `&#x27;`); markup the templates built themselves (macros) passes unchanged."""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value), quote=True))


ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader(PACKAGE, "templates"),
    autoescape=True,
    # Autoescaping stays on; `finalize` only picks the standard library's entity spelling,
    # which the pages have always used (byte-identical re-renders of old report.json files).
    finalize=escape_text,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


@cache
def stylesheet(name: str) -> Markup:
    """The CSS of `static/<name>`, to inline in a page's `<style>`."""
    return Markup(resources.files(PACKAGE).joinpath("static", name).read_text(encoding="utf-8"))


def render_page(template: str, **context: Any) -> str:
    """The page `templates/<template>` rendered with `context`."""
    return ENVIRONMENT.get_template(template).render(**context)
