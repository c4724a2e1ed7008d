"""Spans and fine performance metrics of the score job, and the report's "where the time went":
real score jobs on the session's LocalCluster, run the way users run them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.config
import pytest
from distributed import Client, LocalCluster, get_task_stream
from distributed.scheduler import DEFAULT_EXTENSIONS

import mnist_dist as md
from jobs import score as score_job
from mnist_dist.errors import ReportError
from mnist_dist.observability.spans import READ, SCORE, SCORE_SPAN, SWITCH
from mnist_dist.report.schema import check_document, check_report, read_report

ROWS = 100  # rows per partition: 6 partitions of the small store's 600 test digits
PHASES = ("read", "knn", "mlp", "write", "other", "overhead")


def span_names(dask_scheduler: Any) -> list[tuple[str, ...]]:
    """Run on the scheduler: the name of every span it knows."""
    return [span.name for span in dask_scheduler.extensions["spans"].spans.values()]


def task_seconds(stream: list[dict[str, Any]]) -> float:
    """Seconds the job's read and score tasks spent computing, by the scheduler's task stream
    (each task's start and stop on its worker)."""
    return sum(part["stop"] - part["start"] for task in stream
               if str(task["key"]).startswith(("read_rows-", "score-partition-"))
               for part in task["startstops"] if part["action"] == "compute")


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory: pytest.TempPathFactory, small_store: Path,
                 small_models: Path, local_client: Client
                 ) -> tuple[Path, float, list[tuple[str, ...]]]:
    """A score job with a performance report on the session's cluster: its run folder, the
    seconds its tasks computed (task stream) and the spans the scheduler knows afterwards."""
    out = tmp_path_factory.mktemp("spans") / "run"
    with get_task_stream(local_client) as stream:
        code = score_job.main([
            "--scheduler", local_client.scheduler.address, "--store", str(small_store),
            "--models", str(small_models), "--out", str(out), "--partition-rows", str(ROWS),
            "--no-sweep", "--no-progress", "--performance-report"])
    assert code == 0
    return out, task_seconds(stream.data), local_client.run_on_scheduler(span_names)


@pytest.mark.cluster
def test_the_job_and_phase_spans_reach_the_scheduler(
    measured_run: tuple[Path, float, list[tuple[str, ...]]],
) -> None:
    # What the dashboard's Fine Performance Metrics page lists (this distributed's performance
    # report has no such tab: the job adds the score span's phases to it, tested below).
    _, _, names = measured_run
    assert (SCORE_SPAN,) in names
    assert (SCORE_SPAN, READ) in names and (SCORE_SPAN, SCORE) in names


@pytest.mark.cluster
def test_the_performance_report_holds_the_score_span_and_its_phase_seconds(
    measured_run: tuple[Path, float, list[tuple[str, ...]]],
) -> None:
    out, computed, _ = measured_run
    page = (out / "dask-performance.html").read_text()
    assert "Task Stream" in page  # still Dask's own report, with our section added
    section = page.split('<section id="mnist-dist-spans"', 1)[1].split("</section>", 1)[0]
    assert SCORE_SPAN in section
    shown = dict(re.findall(r"<tr><td>(\w+)</td><td>([0-9.]+)</td></tr>", section))
    assert tuple(shown) == PHASES
    in_tasks = sum(float(value) for value in shown.values()) - float(shown["overhead"])
    assert in_tasks == pytest.approx(computed, rel=0.10)  # the task stream's compute time


@pytest.mark.cluster
def test_phase_seconds_add_up_to_the_partition_tasks_compute_time(
    measured_run: tuple[Path, float, list[tuple[str, ...]]],
) -> None:
    out, computed, _ = measured_run
    report = json.loads((out / "report.json").read_text())
    phases = report["time"]["phases"]
    assert tuple(phases) == PHASES
    assert all(phases[name] > 0 for name in ("read", "knn", "mlp", "write"))
    assert phases["other"] >= 0 and phases["overhead"] >= 0
    # The overhead is Dask's, around the task functions: outside the task stream's times.
    in_tasks = sum(phases.values()) - phases["overhead"]
    assert in_tasks == pytest.approx(computed, rel=0.10)
    for model in ("knn", "mlp"):  # each model's label against the markers' own timing
        assert phases[model] == pytest.approx(report["models"][model]["task_seconds"], rel=0.10)


@pytest.mark.cluster
def test_report_html_and_markdown_show_where_the_time_went(
    measured_run: tuple[Path, float, list[tuple[str, ...]]],
) -> None:
    out, _, _ = measured_run
    report = read_report(out / "report.json")  # the renderer's checks and the JSON Schema
    check_document(report)
    page = (out / "report.html").read_text()
    assert "Where the time went" in page
    for phase, seconds in report["time"]["phases"].items():
        cell = re.search(rf'data-key="\[&quot;time&quot;, &quot;phases&quot;, &quot;{phase}'
                         rf'&quot;\]"[^>]*>([^<]*)<', page)
        assert cell is not None, phase
        assert float(cell.group(1).replace(",", "")) == pytest.approx(seconds, rel=0.01,
                                                                       abs=0.001)
    text = (out / "report.md").read_text()
    table = text.split("### Where the time went\n\n", 1)[1].split("\n\n", 1)[0]
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == list(PHASES)


@pytest.mark.cluster
def test_a_resumed_run_has_no_time_table(
    tmp_path: Path, small_store: Path, small_models: Path, local_client: Client,
) -> None:
    out = tmp_path / "run"
    command = ["--scheduler", local_client.scheduler.address, "--store", str(small_store),
               "--models", str(small_models), "--out", str(out), "--partition-rows", str(ROWS),
               "--no-sweep", "--no-progress"]
    assert score_job.main(command) == 0
    assert "time" in read_report(out / "report.json")
    for name in ("report.json", "report.html", "report.md"):  # as if it stopped before them
        (out / name).unlink()
    max((out / "partitions").glob("*.json")).unlink()  # one partition left to score
    assert score_job.main([*command, "--resume"]) == 0
    report = read_report(out / "report.json")
    assert report["dataset"]["partitions_computed"] == 1
    assert "time" not in report  # it would cover the last partition alone
    assert "Where the time went" not in (out / "report.html").read_text()


@pytest.mark.cluster
def test_a_cluster_without_spans_or_with_them_switched_off_gives_no_table(
    tmp_path: Path, small_store: Path, small_models: Path, local_client: Client,
) -> None:
    extensions = {name: ext for name, ext in DEFAULT_EXTENSIONS.items() if name != "spans"}
    spec = md.ScoreSpec(store=str(small_store), models=str(small_models), out=tmp_path / "bare",
                        partition_rows=300, throughput=False, show_progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0", scheduler_kwargs={"extensions": extensions},
                      extensions={}) as cluster, Client(cluster) as client:
        bare = md.score(spec, client=client)
    assert "time" not in bare.report and bare.n_images == 600
    before = local_client.run_on_scheduler(span_names).count((SCORE_SPAN,))
    with dask.config.set({SWITCH: False}):
        off = md.score(replace(spec, out=tmp_path / "off"), client=local_client)
    assert "time" not in off.report and off.n_images == 600
    assert local_client.run_on_scheduler(span_names).count((SCORE_SPAN,)) == before


@pytest.mark.cluster
@pytest.mark.parametrize(("section", "field"), [
    ({"phases": {"knn": "1 s"}, "source": "x"}, "time.phases.knn"),
    ({"phases": [1.0], "source": "x"}, "time.phases"),
    ("fast", "time"),
])
def test_a_malformed_time_section_is_a_report_error_naming_its_field(
    measured_run: tuple[Path, float, list[tuple[str, ...]]], section: Any, field: str,
) -> None:
    report = json.loads((measured_run[0] / "report.json").read_text())
    report["time"] = section
    with pytest.raises(ReportError, match=rf"report field {re.escape(field)} must be"):
        check_report(report)
