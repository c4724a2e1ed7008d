"""The report of a run of image files (`jobs.score --images`) is about files: no comparison
with the study's test split, no "test images"."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_dist.report import render

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"


def test_an_image_files_report_has_no_study_section_and_no_test_images(tmp_path: Path) -> None:
    report = json.loads(SAMPLE.read_text())
    report["images"] = {"paths": ["scans"], "n_files": 14000, "n_scored": 14000, "n_failed": 0,
                        "failures": {"by_reason": {}, "examples": []}}
    html, md = (p.read_text() for p in render.render_report(report, tmp_path))
    assert 'id="study"' not in html and 'href="#study"' not in html
    assert "Compared with the study" not in md
    assert "test images" not in html and "test digits" not in html
    plain = render.render_report(json.loads(SAMPLE.read_text()), tmp_path / "plain")[0]
    assert 'id="study"' in plain.read_text()  # a run of a store's split keeps it
