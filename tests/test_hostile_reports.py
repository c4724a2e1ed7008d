"""Hostile report.json files given to `jobs.report`, and hostile `--history` files of
`jobs.bench`: one `error:` line with the documented exit code, never a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from jobs import bench as bench_job
from jobs import report as report_job
from mnist_dist.bench import history
from mnist_dist.bench import run as bench_run
from mnist_dist.errors import EXIT_CODES, ReportError, SpecError, StoreExistsError
from tests.test_output_locations import no_bench_work  # noqa: F401 - a fixture

SAMPLE = Path(__file__).parent / "data" / "report-sample.json"
PLANTED = "__planted__"  # replaced by the raw JSON text of the hostile value
DIGITS_5000 = "9" * 5000  # beyond Python's int-to-str limit (4300 digits): json.loads refuses it
DIGITS_4000 = "9" * 4000  # parses, but no float holds it
DEEP = "[" * 100_000 + "]" * 100_000
RSS_WORKER = "tcp://127.0.0.1:35763"


def sample() -> dict[str, Any]:
    """A fresh copy of the sample report (a valid labelled run)."""
    return json.loads(SAMPLE.read_text())


def plant(path: tuple[Any, ...], raw: str) -> str:
    """The sample report's JSON text with the value at `path` replaced by the JSON text `raw`."""
    report = sample()
    parent = report
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = PLANTED
    return json.dumps(report).replace(json.dumps(PLANTED), raw)


def artifact_bytes_path() -> tuple[Any, ...]:
    """The path of the first KNN artifact's size."""
    first = next(iter(sample()["models"]["knn"]["artifacts"]))
    return ("models", "knn", "artifacts", first, "bytes")


def render_run(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Write `text` as RUN/report.json, run `jobs.report RUN`; its exit code and stderr."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(text)
    code = report_job.main([str(run)])
    return code, capsys.readouterr().err


# (where, the raw JSON planted there, what the error line must name)
REFUSED = [
    (("dataset", "n_images"), DIGITS_5000, r"report \S*report\.json must be readable JSON"),
    (("models", "knn", "accuracy"), DIGITS_5000, r"report \S*report\.json must be readable JSON"),
    (("versions",), DEEP, r"report \S*report\.json must be readable JSON"),
    (("models", "knn", "confusion", 0, 0), str(2**64), r"report field models\.knn\.confusion\.0\.0"),
    (("models", "mlp", "confusion", 3, 5), DIGITS_4000, r"report field models\.mlp\.confusion\.3\.5"),
    (("dataset", "n_images"), DIGITS_4000, r"report field dataset\.n_images"),
    (("models", "knn", "accuracy"), "1e308", r"report field models\.knn\.accuracy"),
    (("models", "knn", "accuracy"), DIGITS_4000, r"report field models\.knn\.accuracy"),
    (("models", "mlp", "per_class_accuracy", 3), "1e308",
     r"report field models\.mlp\.per_class_accuracy\.3"),
    (("timing", "wall_seconds"), DIGITS_4000, r"report field timing\.wall_seconds"),
    (("timing", "wall_seconds"), "Infinity", r"report field timing\.wall_seconds"),
    (("timing", "wall_seconds"), "NaN", r"report field timing\.wall_seconds"),
    (("timing", "images_per_second"), "Infinity", r"report field timing\.images_per_second"),
    (("throughput", 1, "images_per_second"), "Infinity",
     r"report field throughput\.1\.images_per_second"),
    (("throughput", 1, "batch_size"), DIGITS_4000, r"report field throughput\.1\.batch_size"),
    (("models", "knn", "images_per_second"), "Infinity",
     r"report field models\.knn\.images_per_second"),
    (("cluster", "worker_rss_bytes", RSS_WORKER), DIGITS_4000,
     r"report field cluster\.worker_rss_bytes\.tcp://127\.0\.0\.1:35763"),
    (artifact_bytes_path(), DIGITS_4000, r"report field models\.knn\.artifacts\.\S+\.bytes"),
]


@pytest.mark.parametrize(("path", "raw", "named"), REFUSED,
                         ids=[f"{'.'.join(map(str, p))}={r[:12]}" for p, r, _ in REFUSED])
def test_a_hostile_value_is_one_report_error_line(
    path: tuple[Any, ...], raw: str, named: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = render_run(plant(path, raw), tmp_path, capsys)
    assert code == EXIT_CODES[ReportError] == 11, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(named, lines[0]), lines[0]
    assert "Traceback" not in err and "unexpected" not in err
    assert not (tmp_path / "run" / "report.html").exists()


LEGAL = [
    (("timing", "wall_seconds"), "1e308"),
    (("timing", "images_per_second"), "1e308"),
    (("models", "knn", "task_seconds"), "1e300"),
    (("throughput", 1, "images_per_second"), "1e308"),
    (("throughput", 1, "ms_per_image"), "1e308"),
    (("dataset", "n_images"), str(2**53)),
]


@pytest.mark.filterwarnings("error")  # a RuntimeWarning of a plot is no clean render
@pytest.mark.parametrize(("path", "raw"), LEGAL,
                         ids=[f"{'.'.join(map(str, p))}={r}" for p, r in LEGAL])
def test_a_legal_extreme_value_renders_without_a_word(
    path: tuple[Any, ...], raw: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    code, err = render_run(plant(path, raw), tmp_path, capsys)
    assert code == 0 and err == ""
    assert (tmp_path / "run" / "report.html").is_file()


def test_the_written_and_the_read_document_agree_on_the_bounds(tmp_path: Path) -> None:
    """What `jobs.report` refuses, writing refuses too: one rule, in report.schema.json."""
    from mnist_dist.report import document

    report = sample()
    report["models"]["knn"]["confusion"][0][0] = 2**64
    with pytest.raises(ReportError, match=r"^report field models\.knn\.confusion\.0\.0 "):
        document.write_report(report, tmp_path)
    report = sample()
    report["throughput"][1]["images_per_second"] = float("inf")
    with pytest.raises(ReportError, match=r"^report field throughput\.1\.images_per_second "):
        document.write_report(report, tmp_path)
    assert not list(tmp_path.iterdir())


# --- jobs.bench --history --------------------------------------------------------------------

NOT_OBJECTS = ["[1, 2]", "42", '"x"', "null", "true"]
GOOD = json.dumps({"schema": bench_run.SCHEMA, "created": "2026-01-01T00:00:00+00:00",
                   "machine": {"cpu": "a", "cores": 2, "memory_bytes": 1}, "figures": {}})


def history_file(tmp_path: Path, line: str) -> Path:
    """A history whose first line is a good record and whose second is `line`."""
    path = tmp_path / "history.jsonl"
    path.write_text(GOOD + "\n" + line + "\n")
    return path


@pytest.mark.parametrize("line", [*NOT_OBJECTS, DEEP, DIGITS_5000])
def test_reading_a_history_line_that_is_no_object_names_file_and_line(
    line: str, tmp_path: Path
) -> None:
    path = history_file(tmp_path, line)
    with pytest.raises(SpecError, match=rf"^{re.escape(str(path))}:2: not a JSON (object|record)"):
        history.read_history(path)


HOSTILE_LINES = [
    *NOT_OBJECTS, DEEP, DIGITS_5000, "{oops",
    json.dumps({"schema": bench_run.SCHEMA, "machine": [1, 2]}),
    json.dumps({"schema": bench_run.SCHEMA, "created": 20260101}),
    json.dumps({"schema": bench_run.SCHEMA, "figures": "fast"}),
]


@pytest.mark.usefixtures("no_bench_work")
@pytest.mark.parametrize("line", HOSTILE_LINES, ids=[line[:16] for line in HOSTILE_LINES])
def test_a_hostile_history_line_stops_the_bench_before_its_work(
    line: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = history_file(tmp_path, line)
    args = ["--quick", "--store", str(tmp_path / "no-store"), "--models",
            str(tmp_path / "no-models"), "--out", str(tmp_path / "out"), "--history", str(path)]
    code = bench_job.main(args)  # ReachedWork, a BaseException, would fail the test here
    err = capsys.readouterr().err
    assert code == EXIT_CODES[StoreExistsError] == 5, err  # as for any corrupt history line
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --history {path}:2 "), err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
    assert path.read_text() == GOOD + "\n" + line + "\n"


def test_regressions_ignore_figures_no_float_holds(tmp_path: Path) -> None:
    """A history figure beyond the float range is no number to compare, not an OverflowError."""
    record = json.loads(GOOD)
    past = [{**record, "figures": {"knn_images_per_second": 10**400}} for _ in range(3)]
    assert history.find_regressions({**record, "figures": {"knn_images_per_second": 1.0}},
                                    past) == []
