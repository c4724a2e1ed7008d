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
