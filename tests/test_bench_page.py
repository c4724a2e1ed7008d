"""bench.html from a bench document: the targets first (for --quick, the sentence saying why
they are not checked), every measurement a table, no text dump, every text escaped; in headless
Chromium at 1366 px nothing overflows and the targets are on the first screen.

tests/data/bench-sample.json is the bench.json of a real quick run, the one `quick_run` makes
(regenerate: `pytest tests/test_bench.py::test_quick_bench_writes_every_section
--basetemp=/tmp/b`, then copy /tmp/b/bench0/run/bench.json); a test compares its keys with a
fresh run's (in tests/test_bench.py, beside the run) so that it cannot go stale.
"""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from mnist_dist.bench.page import page_html
from mnist_dist.bench.render import MODEL_LABELS, QUICK_TARGETS, table_text, write_html
from mnist_dist.report.formats import FORMATS
from tests.test_report_browser import (
    DevTools,
    assert_not_blank,
    chromium,
    console_errors,
    open_report,
    page_socket,
    screenshot,
)

SAMPLE = Path(__file__).parent / "data" / "bench-sample.json"
HEADINGS = (
    "Targets", "Regressions", "Roofline", "Throughput per predictor and batch size",
    "Paired rounds", "KNN settings, hard inputs, FAISS and onnxruntime",
    "End to end per partition size", "Peers (dask-ml)", "Scaling", "Memory", "Fixed cost",
    "Plots",
)
# Maps whose keys follow the environment or settings.yaml, not the bench: compared as leaves.
OPEN_MAPS = (".effective_settings", ".machine.versions")
CELL = re.compile(r'<td data-key="([^"]*)" data-fmt="([^"]*)"[^>]*>([^<]*)</td>')


def sample() -> dict[str, Any]:
    """The bench document of a real quick run."""
    return json.loads(SAMPLE.read_text())


def full_document() -> dict[str, Any]:
    """The sample as a run without --quick: its targets checked, the fresh fixed cost measured,
    one regression against the history."""
    doc = sample()
    doc["quick"] = False
    warm = doc["fixed_cost"]["warm"]
    doc["fixed_cost"]["fresh"] = {
        "n_images": warm["n_images"], "partitions": 1, "wall_seconds": 9.25,
        "task_seconds": 0.5, "fixed_seconds": 8.75, "command": "python -m jobs.score ...",
    }
    knn = doc["figures"]["knn_images_per_second"]
    doc["regressions"] = [{"figure": "figures.knn_images_per_second", "value": knn,
                           "median": 2 * knn, "allowed": 0.2 * knn, "change": -0.5}]
    return doc


def page_of(doc: dict[str, Any]) -> str:
    """bench.html of `doc`, without plots."""
    return page_html(doc, [])


def section_of(page: str, anchor: str) -> str:
    """The markup of the section `anchor`."""
    found = re.search(rf'<section id="{anchor}">(.*?)</section>', page)
    assert found, f"no section {anchor}"
    return found.group(1)


def at(doc: Any, path: list[Any]) -> Any:
    """The value at `path` (keys and indexes) in `doc`."""
    for part in path:
        doc = doc[part]
    return doc


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every dict key of `value` as a dotted path: list items as `[]`, worker addresses as `*`,
    nothing below `OPEN_MAPS`."""
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            path = f"{prefix}.{'*' if '://' in key else key}"
            paths |= {path} | (set() if path in OPEN_MAPS else key_paths(item, path))
        return paths
    if isinstance(value, list):
        return set().union(*(key_paths(item, prefix + "[]") for item in value))
    return set()


def test_targets_come_first_with_each_figure_and_state() -> None:
    doc = full_document()
    page = page_of(doc)
    assert re.findall(r'<section id="([^"]+)">', page)[0] == "targets"
    targets = section_of(page, "targets")
    states = {True: "met", False: "NOT MET", None: "not measured"}
    for target in doc["targets"]:
        row = re.search(rf"<tr><td><code>{target['figure']}</code></td>(.*?)</tr>", targets)
        assert row, target["figure"]
        assert f">{states[target['met']]}</td>" in row.group(1)
        assert html.escape(target["meaning"]) in row.group(1)
        assert f">{target['target']:,g}</td>" in row.group(1)
    assert targets.count(">NOT MET<") == sum(t["met"] is False for t in doc["targets"])
    assert {t["met"] for t in doc["targets"]} == {True, False, None}  # every state shown
    assert QUICK_TARGETS not in page


def test_quick_document_says_why_targets_are_not_checked() -> None:
    page = page_of(sample())
    targets = section_of(page, "targets")
    assert html.escape(QUICK_TARGETS) in targets
    assert "NOT MET" not in page and "<table" not in targets
    assert ">not checked</div>" in page  # the header's card


def test_every_section_in_order_as_tables_without_a_text_dump() -> None:
    for doc in (sample(), full_document()):
        page = page_of(doc)
        assert "<pre" not in page
        positions = [page.index(f"<h2>{html.escape(title)}</h2>") for title in HEADINGS]
        assert positions == sorted(positions)
        for anchor in re.findall(r'<section id="([^"]+)">', page):
            assert f'<a href="#{anchor}">' in page
            if anchor not in ("targets", "regressions", "plots"):
                assert "<table" in section_of(page, anchor), anchor
    header = page_of(sample()).split("</header>")[0]
    doc = sample()
    for fact in (doc["created"], doc["commit"], doc["machine"]["cpu"],
                 f"({doc['machine']['cores']} cores)", ">quick</b>"):
        assert fact in header


def test_tables_show_the_documents_numbers_with_units() -> None:
    doc = full_document()
    page = page_of(doc)
    cells = CELL.findall(page)
    assert len(cells) > 100
    for key, fmt, text in cells:
        assert html.unescape(text) == FORMATS[fmt](at(doc, json.loads(html.unescape(key))))
    for head in ("images/s", "p50 latency (ms)", "median (GFLOP/s)", "peak per worker (MiB)",
                 "wall (s)", "ours / peer (×)", "fixed = wall − task (s)"):
        assert f"<th>{head}</th>" in page
    regressions = section_of(page, "regressions")
    assert "<code>figures.knn_images_per_second</code>" in regressions and ">-50.0<" in regressions
    assert "skipped (--quick)" in section_of(page_of(sample()), "fixed-cost")
    assert "skipped (--quick)" not in section_of(page, "fixed-cost")


def test_every_text_is_escaped() -> None:
    doc = full_document()
    doc["targets"][0]["meaning"] = "<script>alert(1)</script> & more"
    doc["machine"]["cpu"] = "<b>cpu</b>"
    doc["peers"]["knn"]["peer"] = "<img src=x>"
    page = page_of(doc)
    assert "<script>alert" not in page and "<b>cpu" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;cpu&lt;/b&gt;" in page


def test_users_read_knn_ours_not_the_class_name() -> None:
    assert MODEL_LABELS["knn"] == "KNN (ours)"
    doc = sample()
    assert "KNN (ours)" in table_text(doc) and "GemmKnn" not in table_text(doc)
    assert "GemmKnn" not in page_of(doc)


def test_plots_are_figures_with_captions(tmp_path: Path) -> None:
    doc = full_document()
    page = write_html(doc, [sample(), doc], tmp_path).read_text()
    plots = section_of(page, "plots")
    assert plots.count("<figure>") == plots.count("<figcaption>") == 3
    assert plots.count('<img class="chart" src="data:image/png;base64,') == 3


@pytest.mark.browser
def test_bench_page_renders_in_chromium(tmp_path: Path) -> None:
    doc = full_document()
    out = tmp_path / "out"
    out.mkdir()
    page_path = write_html(doc, [sample(), copy.deepcopy(doc)], out)
    with chromium(tmp_path / "profile") as base:
        page = DevTools(page_socket(base))
        try:
            open_report(page, page_path)
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            widths = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth, window.innerHeight]")
            targets_top = page.evaluate(
                "document.querySelector('#targets').getBoundingClientRect().top")
            shot = screenshot(page)
        finally:
            page.close()
    assert console_errors(page.events) == []
    assert len(images) == 3
    assert [alt for done, width, alt in images if not (done and width > 0)] == []
    page_width, window_width, window_height = widths
    assert window_width == 1366 and page_width <= window_width
    assert targets_top < window_height
    assert_not_blank(shot)
