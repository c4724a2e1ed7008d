"""The report's predictions section: unlabelled runs (schema 2, no accuracy sections) and
labelled ones (everything of today plus the section); numbers shown are report.json's."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs import report as report_job
from mnist_dist.errors import ReportError
from mnist_dist.models.outputs import MODEL_NAMES
from mnist_dist.report import document, plots, render, schema
from mnist_dist.scoring.result import ScoreCounts
from mnist_dist.scoring.summaries import THRESHOLDS, PredictionSummary
from tests.test_report_render import SAMPLE, KeyedCells, assert_shown, markdown_table, resolve

N_IMAGES = 1000


def summary(rng: np.random.Generator) -> PredictionSummary:
    """A label-free summary of N_IMAGES predictions, with full galleries."""
    agreement = rng.integers(0, 5, (10, 10)) + np.diag(rng.integers(60, 100, 10))
    agreement = (agreement * N_IMAGES / agreement.sum()).astype(np.int64)
    agreement[0, 0] += N_IMAGES - agreement.sum()
    confidence = np.zeros(20, np.int64)
    confidence[[5, 12, 19]] = [10, 40, N_IMAGES - 50]

    def row(i: int) -> dict[str, Any]:
        return {"index": 17 * i, "knn": i % 10, "mlp": (i + 1) % 10, "probability": 0.3 + i / 50,
                "neighbours": [i, i + 1, i + 2], "distances": [1.5, 2.0 + i, 3.25 + i]}

    return PredictionSummary(
        predicted={"knn": agreement.sum(axis=1), "mlp": agreement.sum(axis=0)},
        agreement=agreement, confidence=confidence, under=np.array([10, 50]),
        least_confident=[row(i) for i in range(12)], disagreements=[row(i) for i in range(5)],
    )


def unlabelled_report(labelled: bool = False) -> dict[str, Any]:
    """A report.json document built as the score job builds it, for a split without labels
    (or with them: the sample's confusion matrices)."""
    sample = json.loads(SAMPLE.read_text())
    rng = np.random.default_rng(3)
    predictions = summary(rng)
    pixels = {name: (rng.integers(0, 256, (len(rows), 784), dtype=np.uint8),
                     rng.integers(0, 256, (len(rows), 3, 784), dtype=np.uint8))
              for name, rows in (("least_confident", predictions.least_confident),
                                 ("disagreements", predictions.disagreements))}
    result = ScoreCounts(
        n_images=N_IMAGES, partitions=5, partitions_computed=5,
        confusion={m: np.asarray(sample["models"][m]["confusion"]) for m in MODEL_NAMES}
        if labelled else {},
        wall_seconds=2.5, task_seconds={m: 1.0 for m in MODEL_NAMES},
        misclassified={m: np.array([[7, 4, 9]]) for m in MODEL_NAMES} if labelled else {},
        labelled=labelled, predictions=predictions, samples=pixels,
    )
    manifest = {
        "artifacts": {"model.bin": {"sha256": "0" * 64, "bytes": 1000}},
        "models": {m: {"train_seconds": 1.0, "test_accuracy": 0.9, "artifacts": ["model.bin"]}
                   for m in MODEL_NAMES},
    }
    gallery = {m: rng.integers(0, 256, (1, 784), dtype=np.uint8) for m in MODEL_NAMES}
    return document.build_report(result, {**sample["dataset"], "split": "new"},
                                 sample["cluster"], manifest, sample["throughput"],
                                 sample["outputs"], gallery if labelled else {})


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, str]]:
    """The unlabelled document written and rendered where a run puts them."""
    out = tmp_path_factory.mktemp("unlabelled-report")
    report = unlabelled_report()
    document.write_report(report, out)
    paths = render.render_report(report, out)
    return report, {p.suffix: p.read_text() for p in paths}


def test_unlabelled_report_has_schema_2_and_no_accuracy_section(unlabelled: tuple) -> None:
    report, pages = unlabelled
    assert report["schema"] == schema.SCHEMA_UNLABELLED
    assert report["predictions"]["labelled"] is False
    assert all("accuracy" not in model and "confusion" not in model
               for model in report["models"].values())
    html, markdown = pages[".html"], pages[".md"]
    for anchor in ("accuracy", "confusion", "errors", "study"):
        assert f'id="{anchor}"' not in html and f'href="#{anchor}"' not in html
    for anchor in ("predictions", "speed", "deployment", "facts"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    assert "## Accuracy" not in markdown and "## Compared with the study" not in markdown
    assert "## Predictions" in markdown and "accuracy" not in html.lower().split("<main")[0]
    assert html.rstrip().endswith("</html>") and "mnist-dist-report/2 ·" in html


def test_unlabelled_html_numbers_are_the_report_numbers(unlabelled: tuple) -> None:
    report, pages = unlabelled
    parser = KeyedCells()
    parser.feed(pages[".html"])
    keys = {json.dumps(key) for key, _, _ in parser.cells}
    for key, _, text in parser.cells:
        assert_shown(text, resolve(report, key))
    for model in ("knn", "mlp"):
        assert all(json.dumps(["predictions", "counts", model, d]) in keys for d in range(10))
    assert all(json.dumps(["predictions", "agreement", "matrix", k, m]) in keys
               for k in range(10) for m in range(10))
    assert json.dumps(["predictions", "agreement", "rate"]) in keys
    # The agreement matrix is a heatmap table: every cell shaded, the largest count darkest.
    table = pages[".html"].split('<table class="num confusion heat">')[1].split("</table>")[0]
    styles = re.findall(r'style="background:(#[0-9a-f]{6});color:(#[0-9a-f]{3})"', table)
    assert len(styles) == 100
    largest = int(np.argmax(np.array(report["predictions"]["agreement"]["matrix"])))
    assert styles[largest][1] == "#fff"
    # The confidence histogram: one bar per bin, the fullest bin the tallest (log scale).
    hist = report["predictions"]["confidence"]["histogram"]
    bars = re.findall(r'<span style="height:([0-9.]+)%"', pages[".html"].split('class="hist"')[1])
    assert len(bars) == len(hist) and float(bars[int(np.argmax(hist))]) == 100.0
    assert all(float(b) == 0.0 for b, c in zip(bars, hist, strict=True) if c == 0)
    for i in range(len(THRESHOLDS)):
        assert json.dumps(["predictions", "confidence", "thresholds", i, "share"]) in keys
    section = report["predictions"]
    agreement = np.array(section["agreement"]["matrix"])
    assert section["agreement"]["rate"] == pytest.approx(np.trace(agreement) / N_IMAGES)
    assert [t["share"] for t in section["confidence"]["thresholds"]] == [0.01, 0.05]


def test_galleries_show_each_digit_with_its_three_nearest_training_digits(
    unlabelled: tuple,
) -> None:
    report, pages = unlabelled
    html = pages[".html"].split('id="predictions"')[1].split("</section>")[0]
    shown = len(report["predictions"]["least_confident"]) + len(
        report["predictions"]["disagreements"])
    assert html.count('<figure class="digit neighbours">') == shown == 17
    assert html.count('<img class="px near"') == 3 * shown
    first = report["predictions"]["least_confident"][0]
    assert f"training row {first['neighbours'][1]['row']:,}, distance 2" in html
    rows = markdown_table(pages[".md"], "### Least confident MLP predictions")
    assert [int(r[0].removeprefix("#").replace(",", "")) for r in rows] == [
        item["index"] for item in report["predictions"]["least_confident"]]
    assert rows[0][2] == "0, 1, 2"


def test_unlabelled_markdown_counts_are_the_report_counts(unlabelled: tuple) -> None:
    report, pages = unlabelled
    counts = markdown_table(pages[".md"], "### Predicted digits")
    for row, model in zip(counts, ("knn", "mlp"), strict=True):
        assert [int(c.replace(",", "")) for c in row[1:11]] == \
            report["predictions"]["counts"][model]
        assert int(row[11].replace(",", "")) == N_IMAGES
    matrix = markdown_table(pages[".md"].split("### KNN and MLP agreement")[1],
                            "columns: the MLP's).")
    assert [[int(c.replace(",", "")) for c in row[1:]] for row in matrix] == \
        report["predictions"]["agreement"]["matrix"]


def test_unlabelled_rerender_is_byte_identical(unlabelled: tuple, tmp_path: Path) -> None:
    report, pages = unlabelled
    document.write_report(report, tmp_path)
    assert report_job.main([str(tmp_path)]) == 0
    assert (tmp_path / "report.html").read_text() == pages[".html"]
    assert (tmp_path / "report.md").read_text() == pages[".md"]


def test_labelled_report_keeps_every_section_and_adds_predictions(tmp_path: Path) -> None:
    report = unlabelled_report(labelled=True)
    assert report["schema"] == schema.SCHEMA and "accuracy" in report["models"]["knn"]
    html_path, md_path = render.render_report(report, tmp_path)
    html, markdown = html_path.read_text(), md_path.read_text()
    anchors = ["accuracy", "confusion", "errors", "predictions", "speed", "deployment", "study",
               "facts"]
    assert [html.index(f'<section id="{a}"') for a in anchors] == sorted(
        html.index(f'<section id="{a}"') for a in anchors)
    for heading in ("## Accuracy", "## Predictions", "## Compared with the study"):
        assert heading in markdown


def scaled(report: dict[str, Any], factor: int) -> dict[str, Any]:
    """The same report for a run `factor` times larger."""
    big = copy.deepcopy(report)
    big["dataset"]["n_images"] *= factor
    section = big["predictions"]
    section["counts"] = {m: [c * factor for c in v] for m, v in section["counts"].items()}
    section["agreement"]["matrix"] = (np.array(section["agreement"]["matrix"]) * factor).tolist()
    section["confidence"]["histogram"] = [c * factor for c in section["confidence"]["histogram"]]
    section["least_confident"] = section["least_confident"] * factor
    return big


def test_predictions_render_work_does_not_grow_with_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("digit_png",):
        draw = getattr(plots, name)
        monkeypatch.setattr(plots, name, lambda *a, _n=name, _d=draw: calls.append(_n) or _d(*a))
    report = unlabelled_report()
    counted = []
    for factor in (1, 1000):
        calls.clear()
        render.render_report(scaled(report, factor), tmp_path / str(factor))
        counted.append(sorted(calls))
    assert counted[0] == counted[1]
    assert counted[0].count("digit_png") == 4 * (schema.GALLERY_LIMIT + 5)
    assert "1,000,000 images" in (tmp_path / "1000" / "report.html").read_text()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.pop("predictions"), "report field predictions is missing"),
        (lambda r: r["models"].pop("mlp"), "report field models.mlp is missing"),
        (lambda r: r["predictions"]["counts"].update(knn=[1, 2]),
         r"predictions.counts.knn must have shape \(10,\); got \(2,\)"),
        (lambda r: r["predictions"]["agreement"]["matrix"][3].__setitem__(4, "x"),
         "predictions.agreement.matrix.3.4 must be an integer"),
        (lambda r: r["predictions"]["confidence"]["thresholds"][1].update(share="half"),
         "predictions.confidence.thresholds.1.share must be a number or null"),
        (lambda r: r["predictions"]["least_confident"][2].update(mlp=12),
         "predictions.least_confident.2.mlp must be a digit 0-9"),
        (lambda r: r["predictions"]["disagreements"][0]["neighbours"][1].update(pixels_b64="AA=="),
         "predictions.disagreements.0.neighbours.1 must hold 784 pixels; got 1 instead"),
        (lambda r: r.update(schema="mnist-dist-report/3"),
         "schema must be 'mnist-dist-report/1' .*'mnist-dist-report/2'"),
    ],
)
def test_invalid_predictions_section_is_a_report_error(edit: Any, match: str,
                                                       tmp_path: Path) -> None:
    report = unlabelled_report()
    edit(report)
    with pytest.raises(ReportError, match=match):
        render.render_report(report, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_summary_text_of_an_unlabelled_run(unlabelled: tuple) -> None:
    report, _ = unlabelled
    text = document.summary_text(report)
    rate = report["predictions"]["agreement"]["rate"]
    assert f"KNN and MLP agree on {100 * rate:.2f}%" in text
    assert "MLP top probability below 0.9: 50 (5.00%)" in text
    assert "accuracy" not in text
