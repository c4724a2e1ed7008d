"""Tests of the report renderings: numbers match report.json, deterministic, bounded work, CLI."""

from __future__ import annotations

import copy
import itertools
import json
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mnist_dist as md
from jobs import report as report_job
from mnist_dist.errors import ReportError
from mnist_dist.report import analysis, plots, render, schema

REPO = Path(__file__).resolve().parents[1]
SAMPLE = Path(__file__).parent / "data" / "report-sample.json"
UNITS = {"%": 0.01, "s": 1.0, "B": 1.0, "kB": 1e3, "MB": 1e6, "GB": 1e9}


@pytest.fixture
def sample() -> dict[str, Any]:
    """A fresh copy of the full-size sample report (14,000 test digits)."""
    return json.loads(SAMPLE.read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The sample's report.html and report.md, rendered once for the module."""
    out = tmp_path_factory.mktemp("rendered")
    paths = render.render_report(json.loads(SAMPLE.read_text()), out)
    assert [p.name for p in paths] == ["report.html", "report.md"]
    return {p.suffix: p.read_text() for p in paths}


class KeyedCells(HTMLParser):
    """Collects (json path, format, text) of every element with a `data-key` attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[list[Any], str, str]] = []
        self.open: list[tuple[str, list[Any], str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if "data-key" in named:
            self.open.append((tag, json.loads(named["data-key"] or ""), named["data-fmt"] or "",
                              []))

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1][3].append(data)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1][0] == tag:
            _, key, fmt, text = self.open.pop()
            self.cells.append((key, fmt, "".join(text)))


def parse_shown(text: str) -> tuple[float, float]:
    """A displayed number (`94.65%`, `1,100`, `9.23 MB`, `+0.22`) and half its last digit."""
    match = re.fullmatch(r"([+-]?[\d,]*\.?(\d*))\s*(%|s|B|kB|MB|GB)?", text.strip())
    assert match, f"not a displayed number: {text!r}"
    scale = UNITS.get(match.group(3) or "", 1.0)
    value = float(match.group(1).replace(",", ""))
    return value * scale, 0.5 * 10 ** -len(match.group(2)) * scale


def assert_shown(text: str, expected: float) -> None:
    """`text` is `expected` rounded as displayed."""
    value, half_step = parse_shown(text)
    assert abs(value - expected) <= half_step * (1 + 1e-9) + 1e-12, (text, expected)


def resolve(document: Any, key: list[Any]) -> Any:
    """The value at a JSON path of keys and indices."""
    for part in key:
        document = document[part]
    return document


def test_html_numbers_are_the_report_numbers(rendered: dict[str, str], sample: dict) -> None:
    parser = KeyedCells()
    parser.feed(rendered[".html"])
    keys = {json.dumps(key) for key, _, _ in parser.cells}
    for key, fmt, text in parser.cells:
        value = resolve(sample, key)
        assert_shown(text, value)
        if fmt == "int":
            assert text == f"{value:,}"
    for model in ("knn", "mlp"):
        for d in range(10):
            assert json.dumps(["models", model, "per_class_accuracy", d]) in keys
            for p in range(10):
                assert json.dumps(["models", model, "confusion", d, p]) in keys
        for field in ("accuracy", "train_seconds", "images_per_second"):
            assert json.dumps(["models", model, field]) in keys
    assert all(json.dumps(["throughput", i, "ms_per_image"]) in keys
               for i in range(len(sample["throughput"])))
    assert all(json.dumps(["cluster", "worker_rss_bytes", w]) in keys
               for w in sample["cluster"]["worker_rss_bytes"])


def test_html_differences_are_mlp_minus_knn(rendered: dict[str, str], sample: dict) -> None:
    section = rendered[".html"].split('id="accuracy"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(\d)</td>(.*?)</tr>", section)
    assert len(rows) == 10
    for digit, cells in rows:
        texts = re.findall(r"<td[^>]*>([^<]*)</td>", cells)
        knn, mlp = (sample["models"][m]["per_class_accuracy"][int(digit)] for m in ("knn", "mlp"))
        assert_shown(texts[2], 100 * (mlp - knn))


def markdown_table(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` (header and rule rows dropped)."""
    block = markdown.split(heading, 1)[1].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]


def test_markdown_numbers_are_the_report_numbers(rendered: dict[str, str], sample: dict) -> None:
    markdown, models = rendered[".md"], sample["models"]
    accuracy = markdown_table(markdown, "## Accuracy")
    for row in accuracy[:10]:
        d = int(row[0])
        knn, mlp = (models[m]["per_class_accuracy"][d] for m in ("knn", "mlp"))
        assert_shown(row[1], knn)
        assert_shown(row[2], mlp)
        assert_shown(row[3], 100 * (mlp - knn))
    assert accuracy[10][0] == "overall"
    assert_shown(accuracy[10][1], models["knn"]["accuracy"])
    assert_shown(accuracy[10][2], models["mlp"]["accuracy"])
    for model, label in (("knn", "KNN"), ("mlp", "MLP")):
        counts = markdown_table(markdown.split("## Confusion")[1], f"### {label}")
        assert [[int(c.replace(",", "")) for c in row[1:]] for row in counts] == \
            models[model]["confusion"]
    sweep = markdown_table(markdown, "### Against batch size")
    expected = sorted(sample["throughput"], key=lambda r: (r["model"], r["batch_size"]))
    for row, want in zip(sweep, expected, strict=True):
        assert int(row[1].replace(",", "")) == want["batch_size"]
        assert_shown(row[2], want["images_per_second"])
        assert_shown(row[3], want["ms_per_image"])
    assert f"{sample['dataset']['n_images']:,} images" in markdown


def test_markdown_confused_pairs_are_the_largest_off_diagonal_counts(
    rendered: dict[str, str], sample: dict
) -> None:
    pairs = markdown_table(rendered[".md"].split("## Most-confused")[1], "### KNN")
    confusion = np.array(sample["models"]["knn"]["confusion"])
    off = confusion - np.diag(np.diag(confusion))
    assert [int(row[1]) for row in pairs] == sorted(off.ravel(), reverse=True)[:5]
    true, predicted = map(int, pairs[0][0].split(" → "))
    assert confusion[true, predicted] == off.max()


def test_html_is_self_contained(rendered: dict[str, str]) -> None:
    page = rendered[".html"]
    assert page.startswith("<!DOCTYPE html>")
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links and all(link.startswith(("data:", "#")) for link in links)
    assert "<script" not in page and "url(" not in page
    # Both galleries, the per-digit chart and throughput; the confusion matrices are heatmap
    # tables (counts and row percentages per model), training time and size data bars.
    assert page.count('<img class="px"') == 24
    assert page.count('<img class="chart"') == 2
    assert page.count('<table class="num confusion heat">') == 4


class HeatCells(HTMLParser):
    """(text, background, text colour) of every cell of the heatmap tables, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []
        self.inside = False
        self.style: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "table":
            self.inside = "heat" in (named.get("class") or "").split()
        elif tag == "td" and self.inside:
            self.style = dict(part.split(":") for part in (named["style"] or "").split(";"))

    def handle_data(self, data: str) -> None:
        if self.style is not None:
            self.cells.append((data, self.style["background"], self.style["color"]))
            self.style = None


def luminance(colour: str) -> float:
    """Relative brightness of `#rrggbb`, 0 (black) to 1 (white)."""
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_deployment_bars_are_each_models_share_of_the_largest(
    rendered: dict[str, str], sample: dict
) -> None:
    table = rendered[".html"].split('id="deployment"')[1].split("</table>")[0]
    shares = [float(x) for x in re.findall(r"linear-gradient\(90deg,#[0-9a-f]{6} ([0-9.]+)%", table)]
    models = sample["models"]
    train = [models[m]["train_seconds"] for m in ("knn", "mlp")]
    size = [sum(a["bytes"] for a in models[m]["artifacts"].values()) for m in ("knn", "mlp")]
    expected = [100 * train[0] / max(train), 100 * size[0] / max(size),
                100 * train[1] / max(train), 100 * size[1] / max(size)]
    assert shares == pytest.approx(expected, abs=0.05)


def test_confusion_heatmaps_shade_each_cell_by_its_count(
    rendered: dict[str, str], sample: dict
) -> None:
    parser = HeatCells()
    parser.feed(rendered[".html"].split('id="confusion"')[1].split("</section>")[0])
    assert len(parser.cells) == 4 * 100  # counts and percentages of both models
    for index, model in enumerate(("knn", "mlp")):
        confusion = np.array(sample["models"][model]["confusion"])
        counts = parser.cells[200 * index:200 * index + 100]
        percent = parser.cells[200 * index + 100:200 * index + 200]
        assert [int(text.replace(",", "")) for text, _, _ in counts] == confusion.ravel().tolist()
        shares = 100 * confusion / confusion.sum(axis=1, keepdims=True)
        assert [float(text) for text, _, _ in percent] == pytest.approx(
            shares.ravel(), abs=0.05)
        for cells, values in ((counts, confusion.ravel()), (percent, shares.ravel())):
            brightness = [luminance(background) for _, background, _ in cells]
            # More images, darker cell: the order of the shades is the order of the values.
            order = np.argsort(values, kind="stable")
            assert all(brightness[a] >= brightness[b] - 1e-9
                       for a, b in itertools.pairwise(order) if values[a] < values[b])
            top = int(np.argmax(values))
            assert cells[top][2] == "#fff" and cells[int(np.argmin(values))][2] == "#222"


def test_rerender_is_byte_identical(rendered: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(SAMPLE, run / "report.json")
    assert report_job.main([str(run)]) == 0
    assert (run / "report.html").read_text() == rendered[".html"]
    assert (run / "report.md").read_text() == rendered[".md"]


def test_render_report_from_python_is_the_jobs_rendering(
    rendered: dict[str, str], tmp_path: Path
) -> None:
    shutil.copy(SAMPLE, tmp_path / "report.json")
    paths = md.render_report(str(tmp_path))  # a folder given as text, as a notebook would
    assert paths == [tmp_path / "report.html", tmp_path / "report.md"]
    assert [p.read_text() for p in paths] == [rendered[".html"], rendered[".md"]]


def scaled(report: dict[str, Any], factor: int) -> dict[str, Any]:
    """The report of a run `factor` times larger: counts scaled, more gallery candidates."""
    big = copy.deepcopy(report)
    big["dataset"]["n_images"] *= factor
    big["dataset"]["partitions"] *= factor
    for model in big["models"].values():
        model["confusion"] = (np.array(model["confusion"]) * factor).tolist()
        model["n_images"] *= factor
        model["misclassified"] = model["misclassified"] * factor
    return big


def test_render_work_does_not_grow_with_images(
    sample: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def recording(name: str, draw: Any) -> Any:
        def wrapper(*args: Any) -> bytes:
            calls.append((name, tuple(np.shape(a) if not isinstance(a, dict) else len(a)
                                      for a in args)))
            return draw(*args)
        return wrapper

    for name in ("accuracy_chart", "throughput_chart", "digit_png"):
        monkeypatch.setattr(plots, name, recording(name, getattr(plots, name)))
    seconds = []
    for factor in (1, 72):  # 14,000 and 1,008,000 images
        calls.clear()
        started = time.perf_counter()
        paths = render.render_report(scaled(sample, factor), tmp_path / str(factor))
        seconds.append(time.perf_counter() - started)
        sizes = [p.stat().st_size for p in paths]
        if factor == 1:
            small_calls, small_sizes = list(calls), sizes
    assert calls == small_calls  # the same drawings of the same-sized inputs
    assert all(b < 1.25 * s for s, b in zip(small_sizes, sizes))  # only wider numbers
    assert seconds[1] < 3 * seconds[0] + 1.0
    html = (tmp_path / "72" / "report.html").read_text()
    assert "1,008,000 images" in html
    assert html.count('<img class="px"') == 2 * schema.GALLERY_LIMIT


def test_report_without_sweep_or_gallery_renders(sample: dict, tmp_path: Path) -> None:
    sample["throughput"] = []
    for model in sample["models"].values():
        model["misclassified"] = []
    del sample["cluster"]["worker_rss_bytes"]
    html_path, md_path = render.render_report(sample, tmp_path)
    html = html_path.read_text()
    assert "No throughput sweep in this run." in html
    assert "No misclassified digits were sampled." in html
    assert "No throughput sweep in this run." in md_path.read_text()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda r: r.update(schema="other/9"), "schema must be 'mnist-dist-report/1'"),
        (lambda r: r["models"]["mlp"].pop("confusion"), "models.mlp.confusion is missing"),
        (lambda r: r["models"]["knn"].update(confusion=[[1, 2]]),
         r"confusion must have shape \(10, 10\); got \(1, 2\)"),
        (lambda r: r["models"]["knn"].update(confusion=[[1, 2], [3]]), "got ragged instead"),
        (lambda r: r["models"]["knn"]["misclassified"][0].update(pixels_b64="AAAA"),
         "must hold 784 pixels; got 3 instead"),
    ],
)
def test_invalid_report_is_a_report_error(
    sample: dict, tmp_path: Path, edit: Any, match: str
) -> None:
    edit(sample)
    with pytest.raises(ReportError, match=match):
        render.render_report(sample, tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_missing_or_broken_report_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_job.main([str(tmp_path)]) == 11
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: report ") and "does not exist" in err
    assert len(err.splitlines()) == 1
    (tmp_path / "report.json").write_text("{not json")
    assert report_job.main([str(tmp_path / "report.json")]) == 11
    assert "must be readable JSON" in capsys.readouterr().err


def test_cli_as_subprocess(rendered: dict[str, str], tmp_path: Path) -> None:
    shutil.copy(SAMPLE, tmp_path / "report.json")
    done = subprocess.run(
        [sys.executable, "-m", "jobs.report", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"report: {tmp_path / 'report.html'}" in done.stdout
    # Another process draws the same bytes: nothing depends on time or process state.
    assert (tmp_path / "report.html").read_text() == rendered[".html"]
    assert (tmp_path / "report.md").read_text() == rendered[".md"]


def test_the_renderer_reads_what_the_document_builder_writes(sample: dict, tmp_path: Path) -> None:
    """A document built from a scoring result, written where a run writes it, renders as is."""
    from mnist_dist.models.outputs import MODEL_NAMES
    from mnist_dist.report import document
    from mnist_dist.scoring.result import ScoreCounts

    confusion = np.diag(np.full(10, 10)).astype(np.int64)
    confusion[4, 9] = 1
    result = ScoreCounts(
        n_images=101, partitions=2, partitions_computed=2,
        confusion={name: confusion for name in MODEL_NAMES}, wall_seconds=1.5,
        task_seconds={name: 0.5 for name in MODEL_NAMES},
        misclassified={name: np.array([[7, 4, 9]]) for name in MODEL_NAMES},
    )
    manifest = {
        "artifacts": {"model.bin": {"sha256": "0" * 64, "bytes": 1000}},
        "models": {name: {"train_seconds": 1.0, "test_accuracy": 0.9, "artifacts": ["model.bin"]}
                   for name in MODEL_NAMES},
    }
    gallery = {name: np.arange(784, dtype=np.uint8)[None] for name in MODEL_NAMES}
    built = document.build_report(result, sample["dataset"], sample["cluster"], manifest,
                                  sample["throughput"], sample["outputs"], gallery)
    written = document.write_report(built, tmp_path)
    assert report_job.main([str(written.parent)]) == 0
    assert "99.01%" in (tmp_path / "report.md").read_text()  # 100 of 101 right
    assert analysis.MODELS == MODEL_NAMES


def test_confused_pairs_order_and_shares() -> None:
    confusion = np.diag(np.full(10, 100))
    confusion[4, 9], confusion[7, 1], confusion[9, 4] = 7, 7, 3
    pairs = analysis.confused_pairs(confusion, top=5)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(4, 9, 7), (7, 1, 7), (9, 4, 3)]
    assert pairs[0].share == pytest.approx(7 / 107)


def series(pairs: dict[int, float]) -> analysis.Series:
    """A sweep with the given images/s per batch size."""
    return analysis.Series(tuple(pairs), tuple(pairs.values()),
                           tuple(1000 / v for v in pairs.values()))


def test_crossover() -> None:
    knn = series({1: 100.0, 10: 1000.0, 100: 1000.0})
    late_mlp = series({1: 10.0, 10: 100.0, 100: 10_000.0})
    cross = analysis.crossover(knn, late_mlp)
    assert cross.batch_size == 100
    assert cross.estimate == pytest.approx(10 ** 1.5)  # log gap -2.30 at 10, +2.30 at 100
    assert "between batch sizes 10 and 100" in cross.summary
    assert analysis.crossover(knn, series({1: 1e5, 10: 1e5, 100: 1e5})).batch_size is None
    never = analysis.crossover(knn, series({1: 1.0, 10: 1.0, 100: 1.0}))
    assert never.batch_size is None and "does not overtake" in never.summary


def test_crossover_in_the_sample(sample: dict) -> None:
    knn, mlp = (analysis.throughput_series(sample["throughput"], m) for m in ("knn", "mlp"))
    assert analysis.crossover(knn, mlp).summary.startswith("The MLP is faster than KNN at every")


# --- golden renderings: today's report.json re-renders to exactly the committed texts --------

DATA = Path(__file__).parent / "data"
PNG_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]*")


def masked(page: str) -> str:
    """`page` with every PNG data URI's payload replaced (PNG bytes depend on matplotlib)."""
    return PNG_URI.sub("data:image/png;base64,PNG", page)


def test_score_report_matches_the_golden_renderings(rendered: dict[str, str]) -> None:
    assert rendered[".md"] == (DATA / "report-sample.md").read_text(encoding="utf-8")
    assert masked(rendered[".html"]) == (DATA / "report-sample.masked.html").read_text(
        encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda r: r["models"]["knn"].update(accuracy="0.97"),
         "report field models.knn.accuracy must be a number; got '0.97' instead"),
        (lambda r: r["timing"].update(wall_seconds=[1.0]),
         "report field timing.wall_seconds must be a number"),
        (lambda r: r["dataset"].update(n_images=14000.5),
         "report field dataset.n_images must be an integer"),
        (lambda r: r["models"]["mlp"]["per_class_accuracy"].pop(),
         r"models.mlp.per_class_accuracy must have shape \(10,\); got \(9,\) instead"),
        (lambda r: r["models"]["mlp"]["per_class_accuracy"].__setitem__(3, "high"),
         "report field models.mlp.per_class_accuracy.3 must be a number or null"),
        (lambda r: r["models"]["knn"]["confusion"][2].__setitem__(5, 1.5),
         "report field models.knn.confusion.2.5 must be an integer"),
        (lambda r: r.update(dataset=7), "report field dataset must be an object; got 7 instead"),
        (lambda r: r["models"].update(mlp=3), "report field models.mlp must be an object"),
        (lambda r: r["throughput"][1].update(ms_per_image="fast"),
         "report field throughput.1.ms_per_image must be a positive number"),
        (lambda r: r.update(throughput={"knn": 1}), "report field throughput must be a list"),
        (lambda r: r.update(throughput=None), "report field throughput must be a list; got None"),
        (lambda r: r["models"]["knn"].update(artifacts=None),
         "report field models.knn.artifacts must be an object"),
        (lambda r: r["models"]["mlp"]["misclassified"][1].pop("true"),
         "report field models.mlp.misclassified.1.true is missing"),
        (lambda r: r["models"]["knn"]["misclassified"][0].update(pixels_b64=5),
         "gallery entry .* has no valid pixels_b64"),
        (lambda r: r["cluster"].update(worker_rss_bytes=[1, 2]),
         "report field cluster.worker_rss_bytes must be an object"),
    ],
)
def test_wrong_types_are_one_report_error_line(
    sample: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, field: str
) -> None:
    edit(sample)
    (tmp_path / "report.json").write_text(json.dumps(sample))
    assert report_job.main([str(tmp_path)]) == 11
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(field, err), err
    assert not (tmp_path / "report.html").exists()


def field_paths(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of `document` (the first two items of each list), depth first."""
    found = [path] if path else []
    if isinstance(document, dict):
        items = list(document.items())
    elif isinstance(document, list):
        items = list(enumerate(document[:2]))
    else:
        items = []
    for key, value in items:
        found += field_paths(value, (*path, key))
    return found


def test_any_corrupt_field_renders_or_is_a_report_error(
    sample: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each field replaced by a value of another type, or deleted: no other exception."""
    from mnist_dist.report import html, markdown

    for name in ("accuracy_chart", "throughput_chart", "digit_png"):
        monkeypatch.setattr(plots, name, lambda *args: b"png")  # types, not pictures
    for path in field_paths(sample):
        for value in ("x", -1, 1.5, [], {}, None, True, [1, 2], float("nan"), "delete"):
            report = copy.deepcopy(sample)
            parent = resolve(report, list(path[:-1]))
            if value == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            try:
                schema.check_report(report)
                html.render_html(report)
                markdown.render_markdown(report)
            except ReportError:
                pass
