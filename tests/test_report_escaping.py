"""A hostile report.json cannot inject markup into report.html: every field is escaped."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_dist.report import render

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"
SCRIPT = "<script>alert(1)</script>"
IMAGE = "<img src=x onerror=alert(2)>"


def test_gallery_captions_and_sweep_model_names_are_escaped(tmp_path: Path) -> None:
    report = json.loads(SAMPLE.read_text())
    report["models"]["knn"]["misclassified"][0]["true"] = SCRIPT
    report["throughput"][0]["model"] = IMAGE
    html_path, _ = render.render_report(report, tmp_path)
    html = html_path.read_text()
    assert SCRIPT not in html and IMAGE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


HOSTILE = "a|b\n<img src=x onerror=alert(3)>"


def markdown_rows(markdown: str) -> list[str]:
    """Every line of a Markdown table."""
    return [line for line in markdown.splitlines() if line.startswith("|")]


def test_markdown_cells_cannot_break_a_table_or_open_html(tmp_path: Path) -> None:
    report = json.loads(SAMPLE.read_text())
    report["throughput"][0]["model"] = HOSTILE
    report["cluster"]["worker_rss_bytes"] = {HOSTILE: 1000}
    report["dataset"][HOSTILE] = HOSTILE
    report["created"] = HOSTILE
    _, md_path = render.render_report(report, tmp_path)
    markdown = md_path.read_text()
    # No line starts with the hostile text's second half: no line break got through.
    assert all(not line.startswith(("<img", "b")) for line in markdown.splitlines())
    for line in markdown_rows(markdown):
        assert "<img" not in line
    sweep = [line for line in markdown_rows(markdown) if "a\\|b" in line]
    assert len(sweep) == 2  # the sweep row and the worker-memory row, one line each
    assert sweep[0].replace("\\|", "").count("|") == 5  # model, batch, images/s, ms/image
    assert "&lt;img src=x onerror=alert(3)&gt;" in sweep[0]
    # Elsewhere the text is inside a code span, where Markdown shows it as typed.
    assert "- a\\|b &lt;img src=x onerror=alert(3)&gt;: `a|b <img src=x onerror=alert(3)>`" \
        in markdown
