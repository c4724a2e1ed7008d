"""Render a run's report.json as a self-contained `report.html` and a `report.md` summary.

Pure functions of the report document: no cluster, no models, no clock, no network. The same
report.json always gives byte-identical files, and the work does not grow with the number of
images scored (only the 10x10 counts get larger numbers).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_bytes_atomic
from mnist_dist.report.html import render_html
from mnist_dist.report.markdown import render_markdown
from mnist_dist.report.schema import (
    HTML_NAME,
    MARKDOWN_NAME,
    REPORT_NAME,
    check_report,
    read_report,
)

log = logging.getLogger(__name__)


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


def render_run(run: Path | str) -> list[Path]:
    """Re-render the HTML and Markdown of a run folder (or report.json path) beside its JSON;
    returns both paths.

    >>> md.render_report("runs/nb")                 # doctest: +SKIP
    [PosixPath('runs/nb/report.html'), PosixPath('runs/nb/report.md')]
    """
    run = Path(run)
    path = run if run.is_file() or run.suffix == ".json" else run / REPORT_NAME
    return render_report(read_report(path), path.parent)
