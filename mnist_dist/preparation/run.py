"""The prepare job end to end: the store built (or reused), then the expanded split on Dask."""

from __future__ import annotations

import logging

from distributed import Client

from mnist_dist.cluster import ClusterSpec, client_for
from mnist_dist.preparation.graph import execute, reused
from mnist_dist.preparation.plan import check_group_target, plan_expand
from mnist_dist.preparation.result import ExpandResult, PrepareResult
from mnist_dist.preparation.spec import ExpandSpec, PrepareSpec
from mnist_dist.preparation.store import build_base_store

log = logging.getLogger(__name__)


def run(spec: PrepareSpec, *, client: Client | None = None) -> PrepareResult:
    """Build the store `spec` describes, then write its expanded split when `spec.expand` asks,
    on `client` (left open) or on a cluster of `spec.cluster` started for it.

    >>> import mnist_dist as md                                        # doctest: +SKIP
    >>> spec = md.PrepareSpec(store="data/mnist.zarr", expand=100_000)  # doctest: +SKIP
    >>> md.prepare(spec, client=client).expanded.digits_per_second      # doctest: +SKIP
    """
    expand = spec.expand_spec()
    if expand:
        check_group_target(expand)  # before the store is built: refuse foreign data first
    info = build_base_store(spec)
    expanded = expand_split(expand, spec.cluster, client) if expand else None
    return PrepareResult(
        store=spec.store, n_train=info["n_train"], n_test=info["n_test"],
        split=info["split"]["name"], source=str(info["source"]), chunk_rows=info["chunk_rows"],
        expanded=expanded,
    )


def expand_split(spec: ExpandSpec, cluster: ClusterSpec, client: Client | None = None
                 ) -> ExpandResult:
    """Plan first (refusing before any cluster starts), then write on `client`, or on the
    `cluster` described when there is none."""
    plan = plan_expand(spec)
    if plan.reuse:
        return reused(plan)
    with client_for(cluster, client) as ready:
        return execute(ready, plan)
