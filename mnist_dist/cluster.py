"""Connecting to Dask: a LocalCluster sized to the machine or adaptive (`local_cluster`), or an
existing scheduler (tcp/tls).

Also the start-up checks a real cluster needs before any work is submitted: compatible library
versions everywhere, and every worker able to read the store and (or else be sent) the models.
Workers the scheduler cannot reach are left out of the job first (see `reachability`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dask.system import cpu_count
from distributed import Client, Future, KilledWorker
from distributed.client import FutureCancelledError
from distributed.comm import connect as connect_comm
from distributed.comm.core import CommClosedError
from distributed.security import Security
from tornado.iostream import StreamClosedError

from mnist_dist import installed_versions
from mnist_dist.data.splits import open_split, rows_of
from mnist_dist.errors import ClusterError, DataError, SpecError
from mnist_dist.local_cluster import adapt_range, close_workers, local_cluster
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelPayload, preload
from mnist_dist.reachability import answers, drop_unreachable_workers, workers_info
from mnist_dist.settings import setting_field
from mnist_dist.worker_plugins import (
    IgnoreInterrupts,
    quiet_project_errors,
    share_storage_options,
    silence_logs,
)

log = logging.getLogger(__name__)

# Packages whose versions must agree between the client and every worker.
MATCHED_PACKAGES = ("mnist-dist", "numpy", "zarr", "onnxruntime", "scikit-learn")


@dataclass(frozen=True)
class TlsFiles:
    """User-provided TLS material (PEM): the CA that signs everyone, this client's cert and key."""

    ca_file: str
    cert: str
    key: str

    def security(self) -> Security:
        """A Security requiring encryption with these files."""
        for path in (self.ca_file, self.cert, self.key):
            if not os.path.isfile(path):
                raise ClusterError(f"{path}: TLS file not found")
        return Security(
            tls_ca_file=self.ca_file, tls_client_cert=self.cert, tls_client_key=self.key,
            require_encryption=True,
        )


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: `scheduler` address, or a LocalCluster of `n_workers` x `threads_per_worker`.

    Local defaults: one single-threaded worker process per core, bound to 127.0.0.1. `adapt`
    (MIN, MAX) makes the LocalCluster adaptive instead: MIN workers, up to MAX under load (a
    cluster of your own adapts by its own means). `tls` (or Dask's `distributed.comm.tls`
    config) secures the connection to a `tls://` scheduler. `connect_timeout` bounds the wait
    for the scheduler, and then for each worker to answer it.
    """

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int = setting_field("cluster.threads-per-worker")
    connect_timeout: float = setting_field("cluster.connect-timeout")
    dashboard_address: str = setting_field("cluster.dashboard-address")
    tls: TlsFiles | None = None
    adapt: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.adapt is not None:
            object.__setattr__(self, "adapt", checked_adapt(self.adapt, self))
        if self.n_workers is not None and self.n_workers < 1:
            raise SpecError(f"n_workers must be >= 1; got {self.n_workers} instead")
        if self.threads_per_worker < 1:
            raise SpecError(
                f"threads_per_worker must be >= 1; got {self.threads_per_worker} instead"
            )
        if not math.isfinite(self.connect_timeout) or self.connect_timeout <= 0:
            raise SpecError(
                f"connect_timeout must be a finite number of seconds > 0; "
                f"got {self.connect_timeout} instead"
            )


def checked_adapt(adapt: object, spec: ClusterSpec) -> tuple[int, int]:
    """`adapt` as (MIN, MAX) with 1 <= MIN <= MAX, for a LocalCluster of no fixed size; else
    SpecError."""
    if (not isinstance(adapt, (tuple, list)) or len(adapt) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in adapt)):
        raise SpecError(f"adapt must be (MIN, MAX), two worker counts; got {adapt!r} instead")
    low, high = adapt
    if not 1 <= low <= high:
        raise SpecError(f"adapt must be (MIN, MAX) with 1 <= MIN <= MAX; got {adapt!r} instead")
    if spec.scheduler is not None:
        raise SpecError("adapt sizes a LocalCluster; a cluster at a scheduler's address adapts "
                        "by its own means (e.g. the Dask operator's DaskAutoscaler)")
    if spec.n_workers is not None:
        raise SpecError("adapt and n_workers both size the LocalCluster; give one of them")
    return int(low), int(high)


@contextlib.contextmanager
def connect(spec: ClusterSpec) -> Iterator[Client]:
    """A client on the requested cluster; a local one is started and torn down here."""
    if spec.scheduler is None:
        with logging_restored(), local_cluster(spec) as cluster:
            with Client(cluster) as client:
                log.info("Dask dashboard: %s", client.dashboard_link)
                quiet_project_errors(client)
                share_storage_options(client)
                client.register_plugin(IgnoreInterrupts(), name=IgnoreInterrupts.name)
                with silent_teardown_on_failure():
                    yield client
            close_workers(cluster)
        return
    security = spec.tls.security() if spec.tls else None
    probe_scheduler(spec.scheduler, spec.connect_timeout, security)
    try:
        client = Client(spec.scheduler, timeout=spec.connect_timeout, security=security)
    except (OSError, TimeoutError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(
            f"cannot reach Dask scheduler {spec.scheduler} within {spec.connect_timeout:g}s "
            f"({reason})"
        ) from exc
    with logging_restored(), client:
        if not workers_info(client):
            try:
                client.wait_for_workers(1, timeout=spec.connect_timeout)
            except TimeoutError as exc:
                raise ClusterError(
                    f"Dask scheduler {spec.scheduler} has no workers "
                    f"after {spec.connect_timeout:g}s"
                ) from exc
        # Before the plugins: registering one waits on every worker the scheduler knows.
        drop_unreachable_workers(client, spec.connect_timeout)
        quiet_project_errors(client)
        share_storage_options(client)
        with silent_teardown_on_failure():
            yield client


def probe_scheduler(address: str, timeout: float, security: Security | None) -> None:
    """ClusterError unless a Dask scheduler answers at `address` within `timeout` seconds in
    all: a server of another kind (an HTTP server, say) accepts the connection and never
    answers Dask's handshake, which Dask's own connect timeout does not bound."""
    args = security.get_connection_args("client") if security else {}

    async def identity() -> Any:
        comm = await connect_comm(address, timeout=timeout, **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def bounded() -> Any:
        return await asyncio.wait_for(identity(), timeout)

    # In a thread of its own: the caller's thread may run an event loop (a notebook's).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            reply = pool.submit(asyncio.run, bounded()).result()
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ClusterError(f"cannot reach Dask scheduler {address} within {timeout:g}s "
                               f"({reason})") from exc
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise ClusterError(f"{address} answered, but not as a Dask scheduler; expected the "
                           "address of one (tcp://HOST:8786 or tls://HOST:8786)")


@contextlib.contextmanager
def client_for(spec: ClusterSpec, client: Client | None = None) -> Iterator[Client]:
    """The caller's `client`, prepared as `connect` prepares its own and left open, or else a
    new client of `spec` (and its LocalCluster), closed at the end."""
    if client is None:
        with connect(spec) as own:
            yield own
        return
    drop_unreachable_workers(client, spec.connect_timeout)
    quiet_project_errors(client)
    share_storage_options(client)
    yield client


# Dask's exceptions when the scheduler connection is lost under a running job.
LOST_SCHEDULER = (CommClosedError, FutureCancelledError, StreamClosedError)


@contextlib.contextmanager
def silent_teardown_on_failure() -> Iterator[None]:
    """Inside a client's lifetime: after a failure (Ctrl-C, a lost scheduler, an error the job
    reports as its one line), the client's (and a local cluster's) teardown logs nothing; its
    warnings (workers still busy, killed) and tracebacks are expected then."""
    try:
        yield
    except (Exception, KeyboardInterrupt):
        silence_logs()
        raise


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Outside a client's lifetime: logging as it was before, once the teardown is over."""
    level = logging.root.manager.disable
    try:
        yield
    finally:
        logging.disable(level)


@contextlib.contextmanager
def cluster_faults() -> Iterator[None]:
    """The cluster failing under a running job (scheduler gone, a task killing its workers)
    as one ClusterError instead of Dask's exceptions."""
    try:
        yield
    except KilledWorker as exc:
        raise ClusterError(f"a task killed every worker that ran it ({exc}); the workers "
                           "may lack memory for it") from exc
    except LOST_SCHEDULER as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ClusterError(f"lost the connection to the Dask scheduler ({reason}); "
                           "rerun with --resume once the cluster is back") from exc


def package_versions() -> dict[str, str | None]:
    """Installed versions of MATCHED_PACKAGES in this process (None when missing)."""
    return installed_versions(MATCHED_PACKAGES)


def check_versions(client: Client) -> None:
    """Fail early unless Dask's own and our key packages match on client and every worker."""
    try:
        client.get_versions(check=True)
    except ValueError as exc:
        summary = " ".join(str(exc).split())
        raise ClusterError(f"library versions differ across the cluster: {summary}") from exc
    problems = version_mismatches(package_versions(), answers(client, package_versions))
    if problems:
        raise ClusterError(f"library versions differ across the cluster: {problems[0]}")


def version_mismatches(
    ours: dict[str, str | None], workers: dict[str, dict[str, str | None]]
) -> list[str]:
    """One line per worker whose MATCHED_PACKAGES versions differ from the client's."""
    problems = []
    for worker, theirs in sorted(workers.items()):
        wrong = [f"{p} {theirs.get(p)} (client {ours[p]})" for p in ours if theirs.get(p) != ours[p]]
        if wrong:
            problems.append(f"worker {worker} has {', '.join(wrong)}")
    return problems


def probe_store(store: str, split: str) -> str | None:
    """On a worker: None if it can read the split's images and labels (when it has them),
    else the reason. A chunk that cannot be decoded is the data's fault, not the worker's: the
    partition that reads it names it (or, with --keep-going, fails alone)."""
    try:
        opened = open_split(store, split)
        for name, array in (("images", opened.images), ("labels", opened.labels)):
            if array is not None:
                rows_of(array, f"{opened.where}/{name}", 0, 1)
    except DataError:
        return None
    except Exception as exc:  # noqa: BLE001 - any failure is reported back as text
        return f"{type(exc).__name__}: {exc}"
    return None


def check_store_readable(client: Client, store: str, split: str) -> None:
    """Fail early, naming the worker, when any worker cannot read the store."""
    for worker, problem in answers(client, probe_store, store, split).items():
        if problem:
            raise ClusterError(
                f"worker {worker} cannot read store {store} (split {split!r}): {problem}"
            )


def workers_without_models(client: Client, ref: ModelRef, ort_threads: int = 1
                           ) -> dict[str, str]:
    """Workers that cannot read the models at `ref.directory`, with the reason; the others
    have loaded them (`cache.preload`), before any task arrives."""
    return {w: p for w, p in answers(client, preload, ref, ort_threads).items() if p}


def ort_threads_for(client: Client) -> int:
    """onnxruntime intra-op threads per session so that Dask threads x ORT threads <= cores.

    Computed per host (all workers on a host share its cores); the smallest host value wins.
    An adaptive LocalCluster counts the MAX workers it may grow to, not those present now.
    """
    # cpu_count honours CPU affinity and container (cgroup) quotas, unlike os.cpu_count.
    cores = answers(client, cpu_count)
    threads_per_host: dict[str, int] = {}
    cores_per_host: dict[str, int] = {}
    workers = workers_info(client)
    for address, info in workers.items():
        host = info["host"]
        threads_per_host[host] = threads_per_host.get(host, 0) + info["nthreads"]
        cores_per_host[host] = cores.get(address) or 1
    growth = adapt_range(client.cluster)
    if growth:  # a LocalCluster: every worker to come shares this host, with as many threads
        most = max(info["nthreads"] for info in workers.values())
        threads_per_host = {h: max(n, growth[1] * most) for h, n in threads_per_host.items()}
    return max(1, min(cores_per_host[h] // threads_per_host[h] for h in threads_per_host))


def cluster_facts(client: Client) -> dict[str, Any]:
    """Scheduler address, worker count and threads (and an adaptive cluster's range of
    workers), for the report."""
    workers = workers_info(client)
    facts: dict[str, Any] = {
        "scheduler": client.scheduler.address,
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers.values()),
        "threads_per_worker": sorted({w["nthreads"] for w in workers.values()}),
        "memory_limit_per_worker": sorted({w.get("memory_limit", 0) for w in workers.values()}),
    }
    growth = adapt_range(client.cluster)
    if growth:
        facts["adapt"] = list(growth)
    return facts


def ship_models_if_needed(
    client: Client, ref: ModelRef, ort_threads: int = 1, files: ModelPayload | None = None
) -> Future | None:
    """Load the models on every worker that can read them; broadcast them once (`files`, the
    bytes the client already read, or else read now) when some cannot."""
    missing = workers_without_models(client, ref, ort_threads)
    if not missing:
        return None
    worker, reason = next(iter(missing.items()))
    log.info("%d worker(s) cannot read the models at %s (%s: %s); sending them to every "
             "worker once", len(missing), ref.directory, worker, reason)
    return client.scatter(files or ModelPayload.read(ref), broadcast=True, hash=True)


