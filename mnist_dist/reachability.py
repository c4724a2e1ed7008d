"""Which workers the Dask scheduler can reach. Before a job starts, a worker that does not answer
the scheduler within a bounded time is named in one warning and removed from the scheduler, so
that no start-up check waits on it and no task of the job is sent to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from distributed import Client

from mnist_dist.errors import ClusterError

log = logging.getLogger(__name__)


def workers_info(client: Client) -> dict[str, dict[str, Any]]:
    """Every worker's scheduler record (address → host, nthreads, memory_limit, …), fresh.

    Asked of the scheduler directly: `client.scheduler_info()` returns a cache that the
    client's periodic refresh can overwrite with an empty `workers` at any moment.
    """
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def unreachable_workers(client: Client, addresses: list[str], timeout: float) -> list[str]:
    """Those of `addresses` whose worker does not answer the scheduler within `timeout` s.

    Each is asked on its own, so one that never answers (a cut link drops packets without a
    reply) costs `timeout` once, not the scheduler's own connect timeout per start-up check.
    """
    async def replies(address: str) -> bool:
        ask = client.scheduler.broadcast(msg={"op": "identity"}, workers=[address],
                                         on_error="return_pickle")
        try:
            reply = await asyncio.wait_for(ask, timeout)
        except (OSError, TimeoutError):
            return False
        return isinstance(reply.get(address), dict)  # else the pickled error of its comm

    async def ask_all() -> list[bool]:
        return await asyncio.gather(*(replies(address) for address in addresses))

    return [a for a, answered in zip(addresses, client.sync(ask_all)) if not answered]


def drop_unreachable_workers(client: Client, timeout: float) -> None:
    """Remove every worker the scheduler cannot reach within `timeout` seconds (one warning
    names them); ClusterError when it reaches none of them."""
    addresses = sorted(workers_info(client))
    lost = unreachable_workers(client, addresses, timeout)
    if lost and len(lost) == len(addresses):
        raise ClusterError(
            f"no worker answered the Dask scheduler within {timeout:g}s (of {len(lost)}: "
            f"{', '.join(lost)}); check that the scheduler can connect to the workers' addresses"
        )
    if lost:
        leave_out(client, lost, f"did not answer the Dask scheduler within {timeout:g}s")


def leave_out(client: Client, addresses: list[str], why: str) -> None:
    """One warning naming `addresses` and `why`; then they are removed from the scheduler."""
    log.warning("%d worker(s) %s, so the job runs without them and they are removed from the "
                "scheduler: %s", len(addresses), why, ", ".join(addresses))
    remove_workers(client, addresses)


def remove_workers(client: Client, addresses: list[str]) -> None:
    """The scheduler forgets the workers at `addresses` at once (their tasks go elsewhere) and
    asks them to close.

    Removed rather than skipped: a worker that does not answer the scheduler can still be sent
    tasks over its own stream to it, which would then wait until the scheduler drops it (after
    `distributed.scheduler.worker-ttl`, or a TCP timeout) or never deliver results; and the
    sweep, the stall check and the report all read the scheduler's list of workers. Not
    `retire_workers`: it first copies the worker's data elsewhere, which needs the worker.
    """
    async def remove(addresses: list[str], dask_scheduler: Any = None) -> None:
        # Nested, so it travels by value: the scheduler needs no mnist_dist installed.
        for address in addresses:
            if address in dask_scheduler.workers:
                await dask_scheduler.remove_worker(
                    address, stimulus_id=f"mnist-dist-unreachable-{address}", close=True)

    client.run_on_scheduler(remove, addresses)


def answers(client: Client, function: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """`function(*args)` on every worker, by address. A worker the scheduler cannot reach is left
    out (one warning) and removed; ClusterError when none answers.

    `function` reports its own problems as values: an OSError it raised would read as a
    worker the scheduler cannot reach; another exception is raised here.
    """
    results = client.run(function, *args, on_error="return")
    lost = sorted(worker for worker, result in results.items() if isinstance(result, OSError))
    for result in results.values():
        if isinstance(result, Exception) and not isinstance(result, OSError):
            raise result
    if lost and len(lost) == len(results):
        raise ClusterError(f"no worker answered the Dask scheduler (of {len(lost)}: "
                           f"{', '.join(lost)}: {results[lost[0]]})")
    if lost:
        leave_out(client, lost, f"lost their connection to the Dask scheduler "
                                f"({results[lost[0]]})")
    return {worker: result for worker, result in results.items() if worker not in lost}
