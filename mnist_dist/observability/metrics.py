"""The job's own Prometheus metrics on the Dask scheduler's `/metrics`: images scored and task
seconds per model, and partitions done, failed and remaining, for each run.

The scoring client reports its progress as scheduler events on `TOPIC`. `JobMetrics`, a scheduler
plugin the first job installs (once per scheduler), keeps each run's totals, and one collector in
prometheus_client's default registry (the registry Dask's `/metrics` route serves) reports them.
Reporting never fails the job: a scheduler without the plugin, or a lost event, is logged at
debug level and ignored, and the per-partition events are sent without waiting for an answer.

Exported (label `run` is the run's id, `run.json`'s `run_id`)::

    mnist_dist_images_scored_total{run, model}   counter  images the model scored
    mnist_dist_model_seconds_total{run, model}   counter  task seconds spent in the model
    mnist_dist_partitions{run, state}            gauge    state: done, failed, remaining
    mnist_dist_run_images{run}                   gauge    images the run scores
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from distributed import Client, SchedulerPlugin
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

TOPIC = "mnist-dist-metrics"  # the scheduler event topic the client reports on
PLUGIN_NAME = "mnist-dist-metrics"
MAX_RUNS = 20  # runs one scheduler reports; the one announced longest ago goes first
STATES = ("done", "failed", "remaining")


@dataclass
class RunTotals:
    """One run's progress: the partitions and images it scores, and what has finished."""

    partitions: int = 0
    images: int = 0
    done: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    images_scored: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def partition_done(self, index: int, rows: int, seconds: Mapping[str, float]) -> None:
        """Count partition `index` (`rows` images, `seconds` per model) once, however often
        it is reported; a partition that failed before no longer counts as failed."""
        if index in self.done:
            return
        self.done.add(index)
        self.failed.discard(index)
        for model, spent in seconds.items():
            self.images_scored[model] = self.images_scored.get(model, 0) + rows
            self.seconds[model] = self.seconds.get(model, 0.0) + spent

    def partition_failed(self, index: int) -> None:
        """Count partition `index` as failed unless it has finished."""
        if index not in self.done:
            self.failed.add(index)

    def states(self) -> dict[str, int]:
        """Partitions done, failed and remaining (never below 0)."""
        done, failed = len(self.done), len(self.failed)
        return {"done": done, "failed": failed,
                "remaining": max(self.partitions - done - failed, 0)}


class JobMetrics(SchedulerPlugin):
    """Scheduler plugin: each run's totals, updated from the events the scoring client sends."""

    name = PLUGIN_NAME
    idempotent = True  # a later job's registration keeps this plugin and its runs

    def __init__(self) -> None:
        self.runs: dict[str, RunTotals] = {}

    def start(self, scheduler: Any) -> None:
        """Serve this plugin's runs on the scheduler's `/metrics`."""
        _LIVE.add(self)
        register_collector()

    async def close(self) -> None:
        """Stop serving this plugin's runs: its scheduler is closing."""
        _LIVE.discard(self)

    def log_event(self, topic: str, msg: Any) -> None:
        """Record an event of `TOPIC`; a malformed one is logged at debug level and ignored."""
        if topic != TOPIC:
            return
        try:
            self.record(msg)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            log.debug("ignored a job metrics event %r: %s", msg, exc)

    def record(self, msg: Mapping[str, Any]) -> None:
        """Apply one event: `started` (re)sets its run, `done` and `failed` count a partition."""
        run_id, event = str(msg["run"]), msg["event"]
        if event == "started":
            self.runs.pop(run_id, None)  # a resumed run starts its counts again
            self.add_run(run_id, RunTotals(int(msg["partitions"]), int(msg["images"])))
        elif event == "done":
            seconds = {str(model): float(spent) for model, spent in msg["seconds"].items()}
            self.run(run_id).partition_done(int(msg["index"]), int(msg["rows"]), seconds)
        elif event == "failed":
            self.run(run_id).partition_failed(int(msg["index"]))
        else:
            raise ValueError(f"unknown event {event!r}")

    def run(self, run_id: str) -> RunTotals:
        """The totals of `run_id`, made empty when its start was not seen."""
        return self.runs.get(run_id) or self.add_run(run_id, RunTotals())

    def add_run(self, run_id: str, totals: RunTotals) -> RunTotals:
        """Keep `totals` as `run_id`'s, dropping the oldest runs beyond `MAX_RUNS`."""
        self.runs[run_id] = totals
        while len(self.runs) > MAX_RUNS:
            del self.runs[next(iter(self.runs))]
        return totals


# The plugins started in this process (one per scheduler), read by the collector.
_LIVE: weakref.WeakSet[JobMetrics] = weakref.WeakSet()
_REGISTERED: list[RunsCollector] = []
_REGISTER_LOCK = threading.Lock()


def live_runs() -> dict[str, RunTotals]:
    """The runs of every plugin started in this process, by run id."""
    runs: dict[str, RunTotals] = {}
    for plugin in list(_LIVE):
        runs.update(plugin.runs)
    return runs


def families(runs: Mapping[str, RunTotals]) -> list[Metric]:
    """The job's metric families for `runs` (run id → totals)."""
    images = CounterMetricFamily("mnist_dist_images_scored", "Images scored, per run and model",
                                 labels=["run", "model"])
    seconds = CounterMetricFamily(
        "mnist_dist_model_seconds", "Seconds the partition tasks spent in each model, per run",
        labels=["run", "model"])
    partitions = GaugeMetricFamily(
        "mnist_dist_partitions", "Partitions of each run (this attempt), by state",
        labels=["run", "state"])
    total = GaugeMetricFamily("mnist_dist_run_images", "Images each run scores (this attempt)",
                              labels=["run"])
    for run_id, run in runs.items():
        for model in sorted(run.images_scored):
            images.add_metric([run_id, model], run.images_scored[model])
            seconds.add_metric([run_id, model], run.seconds[model])
        for state, count in run.states().items():
            partitions.add_metric([run_id, state], count)
        total.add_metric([run_id], run.images)
    return [images, seconds, partitions, total]


class RunsCollector:
    """A prometheus_client collector of the runs `source()` returns."""

    def __init__(self, source: Callable[[], Mapping[str, RunTotals]]) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        """The families' names and types, without samples (what the registry checks)."""
        return families({})

    def collect(self) -> Iterator[Metric]:
        """The families with a sample per run, model and state, read at each scrape."""
        yield from families(self.source())


def register_collector() -> None:
    """Add the job's collector to prometheus_client's default registry, once per process (a
    second registration of the same names would raise)."""
    with _REGISTER_LOCK:
        if not _REGISTERED:
            collector = RunsCollector(live_runs)
            prometheus_client.REGISTRY.register(collector)
            _REGISTERED.append(collector)


# ---------------------------------------------------------------- the client's side

def job_started(client: Client, run_id: str, n_partitions: int, n_images: int) -> None:
    """Install the plugin on `client`'s scheduler (once) and announce run `run_id`, which
    scores `n_partitions` partitions of `n_images` images; waits for the scheduler, so that
    the partitions' events find the plugin there."""
    msg = {"event": "started", "run": run_id, "partitions": int(n_partitions),
           "images": int(n_images)}
    try:
        client.register_plugin(JobMetrics(), name=PLUGIN_NAME)
        client.log_event(TOPIC, msg)
    except Exception as exc:  # noqa: BLE001 - metrics never fail the job
        log.debug("job metrics unavailable on the scheduler: %r", exc)


def partition_done(client: Client, run_id: str, marker: Mapping[str, Any]) -> None:
    """Report the partition of `marker` (its `index`, rows `start`-`stop`, `seconds` per model)
    finished, without waiting."""
    try:
        msg = {"event": "done", "run": run_id, "index": int(marker["index"]),
               "rows": int(marker["stop"]) - int(marker["start"]),
               "seconds": {str(name): float(s) for name, s in marker["seconds"].items()}}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        log.debug("no job metrics for a partition marker without %s", exc)
        return
    send(client, msg)


def partition_failed(client: Client, run_id: str, index: int) -> None:
    """Report partition `index` of run `run_id` failed, without waiting."""
    send(client, {"event": "failed", "run": run_id, "index": int(index)})


def send(client: Client, msg: dict[str, Any]) -> None:
    """Publish `msg` on `TOPIC` from the client's event loop, without waiting for it (unlike
    `Client.log_event`, a round trip); a failure is logged at debug level."""

    async def deliver() -> None:
        try:
            await client.scheduler.log_event(topic=TOPIC, msg=msg)
        except Exception as exc:  # noqa: BLE001 - metrics never fail the job
            log.debug("job metrics event lost: %r", exc)

    try:
        client.loop.add_callback(deliver)
    except Exception as exc:  # noqa: BLE001 - a closed client or loop
        log.debug("job metrics event not sent: %r", exc)
