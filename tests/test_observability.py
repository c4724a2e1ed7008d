"""The job's own Prometheus metrics on the Dask scheduler's `/metrics`, and the Grafana dashboard
of deploy/monitoring: a real score job on real `dask scheduler` and `dask worker` processes
(deploy/local), its progress read over HTTP while it runs."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from distributed import Client, LocalCluster
from prometheus_client.parser import text_string_to_metric_families

from mnist_dist.observability.metrics import (
    MAX_RUNS,
    PLUGIN_NAME,
    TOPIC,
    JobMetrics,
    RunsCollector,
    job_started,
    partition_done,
    partition_failed,
    register_collector,
)
from tests.test_cluster_processes import FAST, process_cluster, start_job

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "monitoring" / "grafana" / "dashboards" / "mnist-dist.json"
JOB_METRICS = ("mnist_dist_images_scored_total", "mnist_dist_model_seconds_total",
               "mnist_dist_partitions", "mnist_dist_run_images")
ROWS = 10  # rows per partition: 60 partitions of the small store's 600 test digits
MODELS = ("knn", "mlp")


# ---------------------------------------------------------------- reading /metrics

def scrape(url: str) -> str:
    """The Prometheus text exposition served at `url`."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read().decode()


def series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Values of the samples called `name` in an exposition, by label set."""
    return {frozenset(sample.labels.items()): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name}


def by_label(text: str, name: str, label: str, **where: str) -> dict[str, float]:
    """`name`'s values by the value of `label`, among the samples whose labels match `where`."""
    return {dict(labels)[label]: value for labels, value in series(text, name).items()
            if where.items() <= dict(labels).items()}


def images(text: str) -> dict[str, float]:
    """Images scored so far, by model."""
    return by_label(text, "mnist_dist_images_scored_total", "model")


def partitions(text: str) -> dict[str, float]:
    """Partitions by state."""
    return by_label(text, "mnist_dist_partitions", "state")


def poll(url: str, until: Callable[[str], bool], deadline: float = 120,
         alive: Callable[[], None] = lambda: None) -> str:
    """Scrape `url` until `until(text)` holds; `alive` raises when waiting is pointless."""
    end = time.monotonic() + deadline
    while True:
        text = scrape(url)
        if until(text):
            return text
        alive()
        assert time.monotonic() < end, f"not seen within {deadline}s; last scrape:\n{text}"
        time.sleep(0.01)


def metrics_urls(address: str) -> tuple[str, str]:
    """The `/metrics` URLs of the scheduler at `address` and of one of its workers."""
    with Client(address, timeout=30) as client:
        info = client.scheduler_info()
    workers = [w["services"]["dashboard"] for w in info["workers"].values()]
    worker = f"http://127.0.0.1:{workers[0]}/metrics" if workers else ""
    return f"http://127.0.0.1:{info['services']['dashboard']}/metrics", worker


# ---------------------------------------------------------------- a watched run

@dataclass(frozen=True)
class WatchedRun:
    """What the scheduler's `/metrics` showed during and after one real score job."""

    run_id: str
    first: dict[str, float]  # images by model at the first scrape that showed any
    first_partitions: dict[str, float]
    later: dict[str, float]  # images by model at a later scrape that showed more
    final: str  # the scheduler's exposition once the job had finished
    worker: str  # a worker's exposition, after the job


@pytest.fixture(scope="module")
def watched(small_store: Path, small_models: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[WatchedRun]:
    """`python -m jobs.score --scheduler` against one real scheduler and worker process, in
    60 partitions, with the scheduler's `/metrics` scraped while it runs and at the end."""
    root = tmp_path_factory.mktemp("watched")
    with process_cluster(root / "cluster", n_workers=1) as address:
        scheduler, worker = metrics_urls(address)
        job = start_job("--scheduler", address, "--store", str(small_store), "--models",
                        str(small_models), "--partition-rows", str(ROWS), "--out",
                        str(root / "run"), *FAST)

        def alive() -> None:
            assert job.poll() is None, job.communicate()[1][-3000:]

        try:
            first_text = poll(scheduler, lambda t: sum(images(t).values()) > 0, alive=alive)
            first = images(first_text)
            later = images(poll(scheduler, lambda t: sum(images(t).values()) > sum(
                first.values()), alive=alive))
        finally:
            _, stderr = job.communicate(timeout=300)
        assert job.returncode == 0, stderr[-3000:]
        n_partitions = math.ceil(600 / ROWS)
        final = poll(scheduler, lambda t: partitions(t).get("done") == n_partitions)
        worker_text = scrape(worker)
    run_id = json.loads((root / "run" / "run.json").read_text())["run_id"]
    yield WatchedRun(run_id, first, partitions(first_text), later, final, worker_text)


@pytest.mark.cluster
def test_the_scheduler_metrics_follow_a_running_job_to_its_totals(watched: WatchedRun) -> None:
    total, n_partitions = 600, math.ceil(600 / ROWS)
    # While it ran: some images, not all, then more.
    assert set(watched.first) == set(MODELS)
    assert all(0 < watched.first[m] < total for m in MODELS), watched.first
    assert watched.first_partitions["remaining"] > 0
    assert all(watched.later[m] > watched.first[m] for m in MODELS), (watched.first,
                                                                      watched.later)
    # At the end: every image by every model, every partition done, under the run's id.
    final = watched.final
    assert by_label(final, "mnist_dist_images_scored_total", "model",
                    run=watched.run_id) == {m: total for m in MODELS}
    assert by_label(final, "mnist_dist_partitions", "state", run=watched.run_id) == {
        "done": n_partitions, "failed": 0, "remaining": 0}
    assert by_label(final, "mnist_dist_run_images", "run") == {watched.run_id: total}
    seconds = by_label(final, "mnist_dist_model_seconds_total", "model", run=watched.run_id)
    assert set(seconds) == set(MODELS) and all(s > 0 for s in seconds.values()), seconds


# ---------------------------------------------------------------- the Grafana dashboard

def exprs(node: Any) -> Iterator[str]:
    """Every PromQL expression (`expr`) anywhere in a dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)


NOT_METRICS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are neither functions (followed
    by a parenthesis), grouping labels, label matchers, ranges nor numbers."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)  # label matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"(?<![\w:])[0-9][0-9.eE+-]*", "", expr)
    return {match.group(1) for match in re.finditer(r"([A-Za-z_:][\w:]*)\s*(\()?", expr)
            if not match.group(2) and match.group(1) not in NOT_METRICS}


def matched_labels(expr: str) -> set[tuple[str, str]]:
    """(metric, label) of every label matcher attached to a metric name."""
    return {(name, label) for name, matchers in re.findall(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", expr)
            for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)}


def exported(*texts: str) -> dict[str, set[str]]:
    """Sample name → its label names, over the expositions `texts`."""
    names: dict[str, set[str]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = ('sum by (model) (rate(mnist_dist_images_scored_total{run=~"$run"}[$__rate_interval]))'
            ' / on (run) group_left sum(dask_scheduler_workers{state!="paused"}) > 0.5e3')
    assert metric_names(expr) == {"mnist_dist_images_scored_total", "dask_scheduler_workers"}
    assert matched_labels(expr) == {("mnist_dist_images_scored_total", "run"),
                                    ("dask_scheduler_workers", "state")}


@pytest.mark.cluster
def test_the_dashboard_reads_only_metrics_a_real_scheduler_and_worker_serve(
    watched: WatchedRun,
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = exported(watched.final, watched.worker)
    expressions = list(exprs(dashboard["panels"]))
    assert expressions, "the dashboard has no query"
    used = set().union(*map(metric_names, expressions))
    assert not used - set(served), f"not served by the scheduler or a worker: {used - set(served)}"
    assert set(JOB_METRICS) <= used, f"the job's metrics not shown: {set(JOB_METRICS) - used}"
    assert {name for name in used if name.startswith("dask_worker_")}, "no worker panel"
    for expr in expressions:
        for name, label in matched_labels(expr):
            assert label in served[name], f"{name} has no label {label}: {expr}"
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            text = query["query"] if isinstance(query, dict) else query
            name, label = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", text).groups()
            assert label in served[name], f"variable {variable['name']}: {text}"


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "run"} <= names


# ---------------------------------------------------------------- the plugin's bookkeeping

def exposition(plugin: JobMetrics) -> str:
    """What `plugin`'s runs look like on a `/metrics` page (a registry of their own)."""
    registry = prometheus_client.CollectorRegistry()
    registry.register(RunsCollector(lambda: plugin.runs))
    return prometheus_client.generate_latest(registry).decode()


def event(**msg: Any) -> dict[str, Any]:
    return msg


def test_a_partition_counts_once_and_a_retried_failure_no_longer_counts() -> None:
    plugin = JobMetrics()
    plugin.log_event(TOPIC, event(event="started", run="r", partitions=3, images=25))
    done = event(event="done", run="r", index=0, rows=10, seconds={"knn": 0.5, "mlp": 0.25})
    plugin.log_event(TOPIC, done)
    plugin.log_event(TOPIC, done)  # reported twice (a resent event)
    plugin.log_event(TOPIC, event(event="failed", run="r", index=1))
    text = exposition(plugin)
    assert by_label(text, "mnist_dist_images_scored_total", "model") == {"knn": 10, "mlp": 10}
    assert by_label(text, "mnist_dist_model_seconds_total", "model") == {"knn": 0.5, "mlp": 0.25}
    assert partitions(text) == {"done": 1, "failed": 1, "remaining": 1}
    plugin.log_event(TOPIC, event(event="done", run="r", index=1, rows=10, seconds={"knn": 1}))
    plugin.log_event(TOPIC, event(event="failed", run="r", index=0))  # done stays done
    assert partitions(exposition(plugin)) == {"done": 2, "failed": 0, "remaining": 1}


def test_a_restarted_run_counts_again_and_only_the_latest_runs_are_kept() -> None:
    plugin = JobMetrics()
    for n in range(MAX_RUNS + 2):
        plugin.log_event(TOPIC, event(event="started", run=f"r{n}", partitions=2, images=4))
        plugin.log_event(TOPIC, event(event="done", run=f"r{n}", index=0, rows=2,
                                      seconds={"knn": 0.1}))
    plugin.log_event(TOPIC, event(event="started", run="r5", partitions=1, images=2))  # resumed
    text = exposition(plugin)
    runs = by_label(text, "mnist_dist_run_images", "run")
    assert len(runs) == MAX_RUNS and "r0" not in runs and "r1" not in runs
    assert runs["r5"] == 2 and runs[f"r{MAX_RUNS + 1}"] == 4
    assert by_label(text, "mnist_dist_partitions", "state", run="r5") == {
        "done": 0, "failed": 0, "remaining": 1}


def test_other_topics_and_malformed_events_are_ignored() -> None:
    plugin = JobMetrics()
    plugin.log_event("all", {"action": "add-worker", "run": "r", "event": "started"})
    for bad in (None, "text", {"event": "started", "run": "r"},
                {"event": "done", "run": "r", "index": "x", "rows": 1, "seconds": {}},
                {"event": "done", "run": "r", "index": 0, "rows": 1, "seconds": [1]},
                {"event": "exploded", "run": "r"}):
        plugin.log_event(TOPIC, bad)
    assert set(plugin.runs) <= {"r"} and not any(run.done for run in plugin.runs.values())


def test_the_collector_is_registered_once_per_process() -> None:
    register_collector()
    register_collector()  # a second scheduler in this process: no duplicate-name error
    text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    for name in ("mnist_dist_images_scored_total", "mnist_dist_partitions"):
        assert text.count(f"# TYPE {name} ") == 1, name


# ---------------------------------------------------------------- the client's side

@pytest.fixture
def bare_scheduler(tmp_path: Path) -> Iterator[tuple[str, str, int]]:
    """A real `dask scheduler` process without workers: (address, /metrics URL, its pid)."""
    state = tmp_path / "cluster"
    with process_cluster(state, n_workers=0) as address:
        url, _ = metrics_urls(address)
        yield address, url, int((state / "scheduler.pid").read_text())


@pytest.mark.cluster
def test_jobs_on_one_scheduler_share_one_plugin_and_keep_their_runs(
    bare_scheduler: tuple[str, str, int],
) -> None:
    address, url, _ = bare_scheduler
    marker = {"index": 0, "start": 0, "stop": 7, "seconds": {"knn": 0.1}}
    with Client(address, timeout=30) as first:
        job_started(first, "run-a", 2, 14)
        partition_done(first, "run-a", marker)
    with Client(address, timeout=30) as second:  # a later job registers the plugin again
        job_started(second, "run-b", 1, 5)
        partition_done(second, "run-b", {**marker, "stop": 5})
    text = poll(url, lambda t: len(by_label(t, "mnist_dist_partitions", "run", state="done"))
                == 2, deadline=30)
    assert by_label(text, "mnist_dist_run_images", "run") == {"run-a": 14, "run-b": 5}
    assert by_label(text, "mnist_dist_partitions", "state", run="run-a") == {
        "done": 1, "failed": 0, "remaining": 1}


@pytest.mark.cluster
def test_reporting_a_partition_never_waits_for_the_scheduler(
    bare_scheduler: tuple[str, str, int],
) -> None:
    address, url, pid = bare_scheduler
    with Client(address, timeout=30) as client:
        job_started(client, "run-c", 100, 100)

        def report() -> None:
            for index in range(99):
                partition_done(client, "run-c", {"index": index, "start": index,
                                                 "stop": index + 1, "seconds": {"mlp": 0.01}})
            partition_failed(client, "run-c", 99)

        reporter = threading.Thread(target=report, daemon=True)
        os.killpg(pid, signal.SIGSTOP)  # the scheduler answers nothing now
        try:
            reporter.start()
            reporter.join(timeout=5)
            blocked = reporter.is_alive()
        finally:
            os.killpg(pid, signal.SIGCONT)
        reporter.join(timeout=60)
        assert not blocked, "reporting partitions waited for a stopped scheduler"
        text = poll(url, lambda t: partitions(t).get("done") == 99)
    assert partitions(text) == {"done": 99, "failed": 1, "remaining": 0}


def test_reporting_never_fails_the_job() -> None:
    """A scheduler without the plugin ignores the events; a closed client drops them."""
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        client = Client(cluster)
        try:
            partition_done(client, "run-d", {"index": 0, "start": 0, "stop": 1,
                                             "seconds": {"knn": 0.1}})
            partition_done(client, "run-d", {"index": 1})  # a marker without rows or seconds
            partition_failed(client, "run-d", 2)
            deadline = time.monotonic() + 30
            while len(client.get_events(TOPIC)) < 2:
                assert time.monotonic() < deadline, "the events never reached the scheduler"
                time.sleep(0.05)
            assert PLUGIN_NAME not in cluster.scheduler.plugins
        finally:
            client.close()
        job_started(client, "run-d", 1, 1)
        partition_done(client, "run-d", {"index": 0, "start": 0, "stop": 1, "seconds": {}})
        partition_failed(client, "run-d", 0)
