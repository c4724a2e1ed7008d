"""Dask spans and fine performance metrics of the jobs: which span each graph's tasks belong
to, the labels that split a score task's time, and "where the time went" read back from the
scheduler once a graph has finished.

Spans are annotations given when a graph is built (`distributed.span`); the labels are
`context_meter` calls inside the tasks. Both show in the dashboard's Fine Performance Metrics;
`--performance-report` gets the score span's seconds per phase added. Reading them back never fails a job: a scheduler without the
spans extension (or that cannot run our code) gives None.

The dask config key `SWITCH` (default on) turns spans, labels and the job's metrics reporting
off; only the bench turns it off, to measure what they cost.
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dask.config
from distributed import Client, span
from distributed.metrics import context_meter

from mnist_dist.atomic import write_bytes_atomic

log = logging.getLogger(__name__)

SWITCH = "mnist-dist.observability"
SCORE_SPAN = "mnist-dist-score"  # the score job's graph; its phases are READ and SCORE
INGEST_SPAN = "mnist-dist-ingest"
EXPAND_SPAN = "mnist-dist-expand"  # its tasks generate and write each partition: one phase
SWEEP_SPAN = "sweep"  # the throughput sweep, apart from the scoring graph
READ, SCORE = "read", "score"
WRITE, OTHER, OVERHEAD = "write", "other", "overhead"
# The activities Dask meters around a task's function: its time outside our own labels.
IN_TASK = ("thread-cpu", "thread-noncpu")
SOURCE = "dask fine performance metrics"


def observed() -> bool:
    """True unless the dask config key `SWITCH` turns spans and metrics off."""
    return bool(dask.config.get(SWITCH, True))


@contextlib.contextmanager
def job_span(*tags: str, on: bool | None = None) -> Iterator[str | None]:
    """`distributed.span(*tags)` (yields its id) when observed, else nothing (yields None)."""
    if not (observed() if on is None else on):
        yield None
        return
    with span(*tags) as span_id:
        yield span_id


def meter(label: str, on: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Inside a task: the time of the block counted under `label` (`context_meter.meter`)."""
    return context_meter.meter(label) if on else contextlib.nullcontext()


async def send_heartbeat(dask_worker: Any) -> None:
    """Run on a worker: send its heartbeat now, carrying the metrics of its finished tasks."""
    await dask_worker.heartbeat()


def span_metrics(dask_scheduler: Any, span_id: str) -> dict[str, dict[tuple, float]] | None:
    """Run on the scheduler: the execute seconds of each child span of `span_id`, by (task
    prefix, activity), keyed by the child's last tag; None without the spans extension."""
    spans = getattr(dask_scheduler, "extensions", {}).get("spans")
    found = spans.spans.get(span_id) if spans is not None else None
    if found is None:
        return None
    return {child.name[-1]: execute_seconds(child.cumulative_worker_metrics)
            for child in found.children}


def execute_seconds(metrics: Mapping[tuple[Hashable, ...], float]) -> dict[tuple, float]:
    """The seconds tasks spent executing, by (task prefix, activity); the span's idle time
    (prefix "N/A") is left out."""
    out: dict[tuple, float] = {}
    for key, value in metrics.items():
        if len(key) == 4 and key[0] == "execute" and key[-1] == "seconds" and key[1] != "N/A":
            out[(key[1], key[2])] = out.get((key[1], key[2]), 0.0) + float(value)
    return out


def phase_table(children: Mapping[str, Mapping[tuple, float]], labels: tuple[str, ...]
                ) -> dict[str, float]:
    """Seconds per phase: READ (the read tasks), each of `labels` and OTHER (the rest of the
    score tasks: summaries, loading), all inside the task functions; then OVERHEAD, Dask's own
    cost of running them on the workers (thread pool handoff, deserialising, bookkeeping)."""
    phases = {READ: 0.0, **{label: 0.0 for label in labels}, OTHER: 0.0, OVERHEAD: 0.0}
    for span_name, metrics in children.items():
        for (_prefix, activity), seconds in metrics.items():
            if activity not in (*IN_TASK, *labels):
                phases[OVERHEAD] += seconds
            elif span_name == READ:
                phases[READ] += seconds
            elif span_name == SCORE:
                phases[activity if activity in labels else OTHER] += seconds
    return phases


def phase_seconds(client: Client, span_id: str | None, labels: tuple[str, ...]
                  ) -> dict[str, float] | None:
    """Seconds per phase of the finished graph of span `span_id` (see `phase_table`), asked
    of the scheduler once every worker has reported; None when it cannot say."""
    if span_id is None:
        return None
    try:
        client.run(send_heartbeat, on_error="return")
        children = client.run_on_scheduler(span_metrics, span_id=span_id)
    except Exception as exc:  # noqa: BLE001 - a report section never fails the job
        log.debug("no fine performance metrics from the scheduler: %r", exc)
        return None
    if not children or SCORE not in children:
        return None
    return phase_table(children, labels)


def add_phases_to_performance_report(path: Path, phases: Mapping[str, float]) -> None:
    """Dask's performance report at `path` with the score span's seconds per phase added at its
    end (Dask's report has no fine performance metrics of its own); rewritten atomically."""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{seconds:.3f}</td></tr>"
                   for name, seconds in phases.items())
    section = (f'<section id="mnist-dist-spans" style="font-family: sans-serif; margin: 1em">'
               f"<h2>Where the time went: span {SCORE_SPAN} (seconds per phase)</h2><table>"
               f"<tr><th>phase</th><th>seconds</th></tr>{rows}</table></section>")
    text = path.read_text(encoding="utf-8")
    at = text.rfind("</body>")
    text = text[:at] + section + text[at:] if at >= 0 else text + section
    write_bytes_atomic(path, text.encode("utf-8"))

