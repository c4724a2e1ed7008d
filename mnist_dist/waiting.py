"""Waiting for a job's tasks on a cluster that can lose or pause every worker: the tasks as they
finish, and one ClusterError, instead of a wait without end, once no worker has been able to run
them for the `cluster.stall-timeout` setting's seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from distributed import Client, Future, as_completed

from mnist_dist.cluster import workers_info
from mnist_dist.errors import ClusterError
from mnist_dist.settings import setting

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # between looks for finished tasks
CHECK_SECONDS = 1.0  # between looks at the workers while none finishes


def as_they_finish(client: Client, futures: list[Future]) -> Iterator[Future]:
    """`futures` in the order they finish; ClusterError once no worker could run them (none
    left, or every one paused at its memory limit) for `cluster.stall-timeout` seconds."""
    limit = float(setting("cluster.stall-timeout"))
    pending = as_completed(futures)
    stalled_since: float | None = None
    checked = time.monotonic()
    while not pending.is_empty():
        finished = pending.next_batch(block=False)
        if finished:
            stalled_since = None
            yield from finished
            continue
        now = time.monotonic()
        if now - checked >= CHECK_SECONDS:
            checked = now
            stalled_since = stall_started(stall_cause(workers_info(client)), stalled_since,
                                          now, limit)
        time.sleep(POLL_SECONDS)


def stall_started(cause: str | None, since: float | None, now: float, limit: float
                  ) -> float | None:
    """When the present stall began (None: no stall); ClusterError once it lasted `limit`."""
    if cause is None:
        return None
    if since is None:
        log.warning("%s: waiting up to %g s for one that can run the job's tasks", cause, limit)
        return now
    if now - since >= limit:
        raise ClusterError(
            f"{cause} for {limit:g} s (setting mnist-dist.cluster.stall-timeout); rerun with "
            "--resume once the cluster has workers with enough memory for the job"
        )
    return since


def stall_cause(workers: dict[str, dict[str, Any]]) -> str | None:
    """Why no worker can run a task, from the scheduler's worker records; None when one can."""
    if not workers:
        return "no worker is left"
    if all(info.get("status") == "paused" for info in workers.values()):
        return (f"every worker ({len(workers)}) is paused, at its memory limit (Dask pauses "
                "a worker above 80% of it)")
    return None
