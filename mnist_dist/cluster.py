"""Connecting to Dask: a LocalCluster sized to the machine, or an existing scheduler."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from distributed import Client, LocalCluster

from mnist_dist.errors import ClusterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: `scheduler` address, or a LocalCluster of `n_workers` x `threads_per_worker`.

    Local defaults: one single-threaded worker process per core, bound to 127.0.0.1.
    """

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = 1
    connect_timeout: float = 30.0
    dashboard_address: str = "127.0.0.1:0"

    def __post_init__(self) -> None:
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers must be >= 1; got {self.n_workers} instead")
        if self.threads_per_worker < 1:
            raise ValueError(
                f"threads_per_worker must be >= 1; got {self.threads_per_worker} instead"
            )


def local_cluster(spec: ClusterSpec) -> LocalCluster:
    """Start a LocalCluster on 127.0.0.1 sized so workers x threads equals the cores."""
    cores = os.cpu_count() or 1
    n_workers = spec.n_workers or max(1, cores // spec.threads_per_worker)
    log.info("starting LocalCluster: %d workers x %d threads", n_workers, spec.threads_per_worker)
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=spec.threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=spec.dashboard_address,
        silence_logs=logging.WARNING,
    )


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[Client]:
    """A client on the requested cluster; a local one is started and torn down here."""
    if spec.scheduler is None:
        with local_cluster(spec) as cluster, Client(cluster) as client:
            log.info("Dask dashboard: %s", client.dashboard_link)
            yield client
        return
    try:
        client = Client(spec.scheduler, timeout=spec.connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(
            f"cannot reach Dask scheduler {spec.scheduler} within {spec.connect_timeout:g}s ({exc})"
        ) from exc
    with client:
        if not client.scheduler_info()["workers"]:
            client.wait_for_workers(1, timeout=spec.connect_timeout)
        yield client


def ort_threads_for(client: Client) -> int:
    """onnxruntime intra-op threads per session so that Dask threads x ORT threads <= cores.

    Computed per host (all workers on a host share its cores); the smallest host value wins.
    """
    cores = client.run(os.cpu_count)
    threads_per_host: dict[str, int] = {}
    cores_per_host: dict[str, int] = {}
    for address, info in client.scheduler_info(n_workers=-1)["workers"].items():
        host = info["host"]
        threads_per_host[host] = threads_per_host.get(host, 0) + info["nthreads"]
        cores_per_host[host] = cores.get(address) or 1
    return max(1, min(cores_per_host[h] // threads_per_host[h] for h in threads_per_host))


def cluster_facts(client: Client) -> dict[str, Any]:
    """Scheduler address, worker count and threads, for the report."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {
        "scheduler": client.scheduler.address,
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers.values()),
        "threads_per_worker": sorted({w["nthreads"] for w in workers.values()}),
        "memory_limit_per_worker": sorted({w.get("memory_limit", 0) for w in workers.values()}),
    }
