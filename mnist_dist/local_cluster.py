"""The LocalCluster a job starts: sized to the machine, or adaptive between MIN and MAX workers.

An adaptive cluster starts MIN workers and lets Dask's `Adaptive` add workers (up to MAX) while
tasks wait and retire idle ones; the job logs each worker that joins or leaves.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

from dask.system import cpu_count
from distributed import LocalCluster, SchedulerPlugin
from distributed.deploy import Adaptive
from distributed.deploy.cluster import Cluster

from mnist_dist.errors import ClusterError
from mnist_dist.settings import setting

if TYPE_CHECKING:
    from mnist_dist.cluster import ClusterSpec

log = logging.getLogger(__name__)


def on_loopback(address: str) -> str:
    """`:PORT` as `127.0.0.1:PORT`: a LocalCluster's dashboard binds every interface only when
    a host (e.g. 0.0.0.0) is named."""
    return f"127.0.0.1{address}" if address.startswith(":") else address


def local_cluster(spec: ClusterSpec) -> LocalCluster:
    """Start a LocalCluster on 127.0.0.1 sized so workers x threads equals the cores, or with
    `spec.adapt` (MIN, MAX): MIN workers at first, adapting between MIN and MAX."""
    n_workers = spec.n_workers or max(1, cpu_count() // spec.threads_per_worker)
    if spec.adapt:
        n_workers = spec.adapt[0]
        log.info("starting LocalCluster: %d to %d workers (adaptive) x %d threads",
                 *spec.adapt, spec.threads_per_worker)
    else:
        log.info("starting LocalCluster: %d workers x %d threads", n_workers,
                 spec.threads_per_worker)
    try:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=on_loopback(spec.dashboard_address),
            silence_logs=logging.WARNING,
        )
    except (OSError, RuntimeError) as exc:  # distributed wraps start-up failures in RuntimeError
        raise ClusterError(
            f"cannot start a LocalCluster (dashboard {spec.dashboard_address}): "
            f"{' '.join(str(exc).split())}"
        ) from exc
    if spec.adapt:
        start_adapting(cluster, *spec.adapt)
    return cluster


class WorkerCountLog(SchedulerPlugin):
    """Logs each worker that joins or leaves the scheduler, with the count it leaves."""

    name = "mnist-dist-worker-count-log"

    def add_worker(self, scheduler: Any, worker: str) -> None:
        log.info("worker joined: %d workers (%s)", len(scheduler.workers), worker)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        log.info("worker left: %d workers (%s)", len(scheduler.workers), worker)


def start_adapting(cluster: LocalCluster, minimum: int, maximum: int) -> Adaptive:
    """Adapt `cluster` between `minimum` and `maximum` workers, reacting within seconds
    (settings `cluster.adapt-*`), and log every worker that joins or leaves."""
    async def add_log() -> None:  # on the scheduler's event loop, which owns its plugins
        cluster.scheduler.add_plugin(WorkerCountLog(), name=WorkerCountLog.name)

    cluster.sync(add_log)
    return cluster.adapt(
        minimum=minimum, maximum=maximum,
        interval=float(setting("cluster.adapt-interval")),
        wait_count=int(setting("cluster.adapt-wait-count")),
        target_duration=float(setting("cluster.adapt-target-duration")),
    )


def adaptive_of(cluster: Cluster | None) -> Adaptive | None:
    """The running `Adaptive` of `cluster` (ours or one a notebook started), else None."""
    # Dask keeps a cluster's Adaptive in `_adaptive` and offers no public accessor.
    adaptive = getattr(cluster, "_adaptive", None)
    if not isinstance(adaptive, Adaptive) or adaptive.state == "stopped":
        return None
    return adaptive


def adapt_range(cluster: Cluster | None) -> tuple[int, int] | None:
    """(MIN, MAX) workers of an adaptive `cluster` (a client's `.cluster`) with a finite MAX,
    else None (a fixed cluster, a scheduler's address, an unbounded Adaptive)."""
    adaptive = adaptive_of(cluster)
    if adaptive is None or math.isinf(adaptive.maximum):
        return None
    return int(adaptive.minimum), int(adaptive.maximum)


# Seconds a LocalCluster's worker process gets to exit on a normal close. Dask's nanny allows
# 4 and then kills it with a warning; tearing down an interpreter that holds numba,
# onnxruntime and scipy can take longer on a loaded machine.
WORKER_EXIT_SECONDS = 30.0


def close_workers(cluster: LocalCluster, seconds: float = WORKER_EXIT_SECONDS) -> None:
    """Close every worker of `cluster`, each given `seconds` to exit before it is killed; an
    adaptive cluster first stops adapting (and logging its workers)."""
    async def close_all() -> None:  # on the cluster's event loop, which runs its Adaptive
        adaptive = adaptive_of(cluster)
        if adaptive is not None:
            adaptive.stop(reason="closing the cluster")
        if WorkerCountLog.name in cluster.scheduler.plugins:
            cluster.scheduler.remove_plugin(name=WorkerCountLog.name)
        await asyncio.gather(*(worker.close(timeout=seconds)
                               for worker in cluster.workers.values()))

    cluster.sync(close_all)
