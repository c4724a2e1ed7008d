"""The expanded split on Dask: the lazy graph of deformed digits, written on a client's workers
under a temporary name that is renamed into place.

One task reads the source split from the store on a worker (it is shared from there), every
partition task deforms its rows with `tasks.generate_partition`, and `da.store` writes them into
chunk-aligned arrays: the client never holds the expanded digits.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr
from distributed import Client, progress

from mnist_dist.atomic import swap_into_place, temporary_sibling
from mnist_dist.observability.spans import EXPAND_SPAN, job_span
from mnist_dist.preparation.plan import (
    ExpandPlan,
    directory_bytes,
    format_bytes,
    plan_expand,
    store_codec,
)
from mnist_dist.preparation.result import ExpandResult
from mnist_dist.preparation.spec import ExpandSpec
from mnist_dist.preparation.tasks import generate_partition

log = logging.getLogger(__name__)


def expand_store(client: Client, spec: ExpandSpec, show_progress: bool = False) -> ExpandResult:
    """Plan and write the expanded split on `client`; an identical existing one is reused."""
    return execute(client, plan_expand(spec), show_progress)


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


def generation_arrays(store: str, spec: ExpandSpec, rows: int) -> tuple[da.Array, da.Array]:
    """Lazy expanded images uint8 (n, 784) and labels uint8 (n,), `rows` rows per partition.

    The source split is read by one task on a worker (`da.from_zarr`), not shipped from here.
    """
    # One block each: the whole source is one dependency, read once and shared by all tasks.
    source_images = da.from_zarr(store, component=f"{spec.source}/images", chunks=-1)
    source_labels = da.from_zarr(store, component=f"{spec.source}/labels", chunks=-1)
    generate = dask.delayed(generate_partition, nout=2, pure=True)
    image_parts, label_parts = [], []
    for start in range(0, spec.n, rows):
        stop = min(start + rows, spec.n)
        images, labels = generate(
            source_images, source_labels, start, stop, spec.seed, spec.params
        )
        image_parts.append(da.from_delayed(
            images, (stop - start, 784), dtype=np.uint8, meta=np.empty((0, 784), np.uint8)
        ))
        label_parts.append(da.from_delayed(
            labels, (stop - start,), dtype=np.uint8, meta=np.empty((0,), np.uint8)
        ))
    return da.concatenate(image_parts), da.concatenate(label_parts)


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
    start = time.perf_counter()
    with job_span(EXPAND_SPAN, "generate-and-write"):
        images, labels = generation_arrays(store, spec, rows)
        stored = da.store([images, labels], targets, lock=False, compute=False)
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
