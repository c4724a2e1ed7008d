"""The report of a run of image files (`jobs.score --images`) is about files: no comparison
with the study's test split, no "test images"."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_dist.report import render
from tests.test_report_predictions import unlabelled_report

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


def test_sampled_digits_are_named_by_their_files_when_the_split_has_ids(tmp_path: Path) -> None:
    report = unlabelled_report(labelled=True)
    misclassified = report["models"]["knn"]["misclassified"][0]
    least = report["predictions"]["least_confident"][0]
    misclassified["id"] = "/scans/batch 2/7_<b>x.png"
    least["id"] = "C:\\scans\\4_0031.jpg"
    html, md = (p.read_text() for p in render.render_report(report, tmp_path))
    assert ">7_&lt;b&gt;x.png</span>" in html  # the file's name, escaped
    assert 'title="/scans/batch 2/7_&lt;b&gt;x.png (row ' in html  # its path on hover
    assert ">4_0031.jpg</span>" in html and "| 4_0031.jpg |" in md
    assert f'title="C:\\scans\\4_0031.jpg (row {least["index"]:,} of the scored split)">4_0031' in html
    plain = unlabelled_report(labelled=True)  # a split without ids: rows, as before
    item = plain["predictions"]["least_confident"][0]
    assert f">#{item['index']:,}</span>" in render.render_report(plain, tmp_path / "p")[0].read_text()
