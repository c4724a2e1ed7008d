"""The expand job: write a planned expanded split on a cluster, then rename it into place."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import zarr
from distributed import Client, progress

from mnist_dist.atomic import swap_into_place, temporary_sibling
from mnist_dist.cluster import ClusterSpec, connect
from mnist_dist.data.expand_graph import (
    ExpandPlan,
    ExpandSpec,
    directory_bytes,
    format_bytes,
    generation_arrays,
    plan_expand,
    store_codec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpandResult:
    """What was written (or found): sizes, timing and disk usage in bytes."""

    store: Path
    group: str
    n: int
    partitions: int
    partition_rows: int
    chunk_rows: int
    wall_seconds: float
    group_bytes: int
    store_bytes: int
    reused: bool


def execute(client: Client, plan: ExpandPlan, show_progress: bool = False) -> ExpandResult:
    """Write the planned group on `client`'s workers (nothing to do when it is reused)."""
    if plan.reuse:
        return reused(plan)
    spec, rows, chunk_rows = plan.spec, plan.partition_rows, plan.chunk_rows
    target = spec.store / spec.group
    store = str(spec.store.resolve())
    tmp = temporary_sibling(target)
    try:
        wall = write_expanded(client, store, tmp, spec, rows, chunk_rows, plan.attrs,
                              show_progress)
        swap_into_place(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = result_for(spec, rows, chunk_rows, wall, reused=False)
    log.info("wrote %s: %d digits in %.1f s, %s on disk", target, spec.n, wall,
             format_bytes(result.group_bytes))
    return result


def reused(plan: ExpandPlan) -> ExpandResult:
    """The result for an existing group with the requested provenance."""
    log.info("reusing %s/%s (same n, seed, source and deformation)",
             plan.spec.store, plan.spec.group)
    return result_for(plan.spec, plan.partition_rows, plan.chunk_rows, 0.0, reused=True)


def expand_store(client: Client, spec: ExpandSpec, show_progress: bool = False) -> ExpandResult:
    """Plan and write the expanded split on `client`; an identical existing one is reused."""
    return execute(client, plan_expand(spec), show_progress)


def run_expand(spec: ExpandSpec, cluster: ClusterSpec, show_progress: bool = False) -> ExpandResult:
    """Plan first (refusing before any cluster starts), then write on the `cluster` described."""
    plan = plan_expand(spec)
    if plan.reuse:
        return reused(plan)
    with connect(cluster) as client:
        return execute(client, plan, show_progress)


def summary_line(result: ExpandResult) -> str:
    """One line for the job's output: what was written, how fast, and the disk it takes."""
    where = f"{result.store}/{result.group}"
    disk = (f"{format_bytes(result.group_bytes)} on disk "
            f"({result.group_bytes / result.n:.0f} B/digit), store {format_bytes(result.store_bytes)}")
    if result.reused:
        return f"expanded {where}: n={result.n} already present (same provenance); {disk}"
    rate = result.n / result.wall_seconds if result.wall_seconds else float("nan")
    return (f"expanded {where}: n={result.n} in {result.partitions} partitions of "
            f"{result.partition_rows} rows, {result.wall_seconds:.1f} s ({rate:,.0f} digits/s); "
            f"{disk}")


def write_expanded(
    client: Client, store: str, tmp: Path, spec: ExpandSpec, rows: int, chunk_rows: int,
    attrs: dict[str, Any], show_progress: bool,
) -> float:
    """Create the arrays under `tmp`, run the graph, write `attrs` last; returns wall seconds."""
    group = zarr.open_group(str(tmp), mode="w")
    targets: list[Any] = [
        group.create_array(name, shape=shape, chunks=chunks, dtype="uint8",
                           compressors=store_codec())
        for name, shape, chunks in (("images", (spec.n, 784), (chunk_rows, 784)),
                                    ("labels", (spec.n,), (chunk_rows,)))
    ]
    images, labels = generation_arrays(store, spec, rows)
    stored = da.store([images, labels], targets, lock=False, compute=False)
    start = time.perf_counter()
    futures = client.compute(stored)
    if show_progress:
        progress(futures)
    client.gather(futures)
    wall = time.perf_counter() - start
    group.attrs.update(attrs)
    return wall


def result_for(
    spec: ExpandSpec, rows: int, chunk_rows: int, wall: float, reused: bool
) -> ExpandResult:
    """The ExpandResult of `spec`, measuring the disk usage now."""
    return ExpandResult(
        store=spec.store, group=spec.group, n=spec.n, partitions=-(-spec.n // rows),
        partition_rows=rows, chunk_rows=chunk_rows, wall_seconds=wall,
        group_bytes=directory_bytes(spec.store / spec.group),
        store_bytes=directory_bytes(spec.store), reused=reused,
    )
