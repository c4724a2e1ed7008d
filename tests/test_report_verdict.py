"""The report's verdict, computed from the run's numbers: first on the page and in report.md."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_dist.report import render
from mnist_dist.report.verdict import verdict

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"


@pytest.fixture
def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text())


def test_the_headline_names_the_winner_its_margin_and_the_digits(sample: dict) -> None:
    knn, mlp = (sample["models"][m] for m in ("knn", "mlp"))
    lines = verdict(sample)
    gap = 100 * (mlp["accuracy"] - knn["accuracy"])
    per_digit = np.array(mlp["per_class_accuracy"]) - np.array(knn["per_class_accuracy"])
    assert lines[0].startswith(
        f"The MLP is the more accurate model: {100 * mlp['accuracy']:.2f}% against the KNN's "
        f"{100 * knn['accuracy']:.2f}% ({gap:+.2f} points), ahead on "
        f"{int((per_digit > 0).sum())} of 10 digits, most on digit {int(per_digit.argmax())}")
    assert f"The KNN is ahead on digit {int(per_digit.argmin())}" in lines[0]


def test_each_models_weakest_digit_and_commonest_confusion_are_named(sample: dict) -> None:
    line = verdict(sample)[1]
    for name in ("knn", "mlp"):
        model = sample["models"][name]
        weakest = int(np.argmin(model["per_class_accuracy"]))
        confusion = np.array(model["confusion"])
        np.fill_diagonal(confusion, 0)
        true, predicted = np.unravel_index(confusion.argmax(), confusion.shape)
        assert (f"fails most on digit {weakest} ({100 * model['per_class_accuracy'][weakest]:.2f}% "
                f"right), most often reading a {true} as a {predicted} "
                f"({confusion.max():,} images)") in line


def test_time_per_image_size_and_training_come_from_the_run(sample: dict) -> None:
    speed, footprint = verdict(sample)[2:4]
    rows = {(r["model"], r["batch_size"]): r["ms_per_image"] for r in sample["throughput"]}
    assert f"KNN {rows['knn', 1]:.3g} ms at batch 1" in speed
    ratio = rows["knn", 1000] / rows["mlp", 1000]
    assert f"the MLP is {ratio:.0f}× faster" in speed
    assert f"training took {sample['models']['knn']['train_seconds']:.3g} s" in footprint


def test_a_more_accurate_but_slower_model_is_called_a_trade_off(sample: dict) -> None:
    swapped = copy.deepcopy(sample)
    swapped["models"]["knn"]["accuracy"] = 0.99
    assert verdict(swapped)[0].startswith("The KNN is the more accurate model: 99.00%")
    assert verdict(swapped)[-1].startswith("A trade-off on this data: the KNN is more accurate")
    swapped["models"]["knn"]["accuracy"] = swapped["models"]["mlp"]["accuracy"]
    assert verdict(swapped)[0].startswith("Both models are equally accurate")


def test_without_a_sweep_the_run_rates_are_quoted(sample: dict) -> None:
    sample["throughput"] = []
    assert "In this run the KNN scored" in verdict(sample)[2]


def test_the_verdict_comes_first_on_the_page_and_in_markdown(sample: dict, tmp_path: Path
                                                             ) -> None:
    html, md = (p.read_text() for p in render.render_report(sample, tmp_path))
    main = html.split('<main class="wrap">')[1]
    assert main.startswith('<section id="verdict"><h2>Verdict</h2><p class="headline">The MLP')
    assert html.split("<nav>")[1].startswith('<a href="#verdict">Verdict</a>')
    assert md.split("\n## ")[1].startswith("Verdict\n\nThe MLP is the more accurate model")


def test_without_labels_the_verdict_says_how_often_the_models_agree() -> None:
    from tests.test_report_predictions import unlabelled_report

    report = unlabelled_report()
    rate = report["predictions"]["agreement"]["rate"]
    assert verdict(report)[0].startswith("Without labels this run cannot say which model is "
                                         f"right: the two agree on {100 * rate:.2f}% of")


def test_run_facts_read_as_words_and_units(sample: dict, tmp_path: Path) -> None:
    from mnist_dist.report.formats import size

    html, md = (p.read_text() for p in render.render_report(sample, tmp_path))
    facts = html.split('id="facts"')[1]
    limit = sample["cluster"]["memory_limit_per_worker"][0]
    assert f"<th>memory limit per worker</th><td><code>{size(limit)}</code>" in facts
    assert "memory_limit_per_worker" not in facts and "store_split" not in facts
    assert f"- worker memory after the run: `{', '.join(f'{k} {size(v)}' for k, v in sample['cluster']['worker_rss_bytes'].items())}`" in md
