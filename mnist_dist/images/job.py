"""Score image files with both models on Dask: `jobs.score --images PATH...`.

One implementation with `jobs.ingest` and `jobs.score --split`: the files are ingested
(`mnist_dist.images.staging`: read and preprocessed on the workers, partition by partition) into
the split `images` of a store inside the run folder (`OUT/images.zarr`: images, ids = file
paths, labels when given, failures/{file,reason}); that split is scored by the normal graph
(`scoring.graph.score_graph`) into `OUT/predictions.zarr`, which also gets the failures; the report is the
score report plus an `images` section of counts and bounded samples. The client holds the list
of paths and never a per-file result, so `jobs.export OUT` gives one row per scored file.

Like the image files they read, `--save-preprocessed` must be on storage the workers share.
With `staging`, the only module of `mnist_dist.images` that touches the Dask client.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import zarr
from distributed import Client

from mnist_dist.cluster import (
    check_versions,
    client_for,
    cluster_facts,
    cluster_faults,
    ort_threads_for,
    ship_models_if_needed,
)
from mnist_dist.data.splits import open_split
from mnist_dist.data.store import store_codec
from mnist_dist.ensure import trained_models
from mnist_dist.errors import ImageInputError, SpecError, StoreExistsError
from mnist_dist.images.files import file_labels, list_image_files, output_names
from mnist_dist.images.report import images_section
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.images.staging import (
    STRINGS,
    Layout,
    compact_staged,
    new_array,
    stage_files,
    store_all,
)
from mnist_dist.locations import absolute
from mnist_dist.models.cache import ModelFiles
from mnist_dist.report.document import build_report, write_report
from mnist_dist.report.render import render_report
from mnist_dist.run_state import locked_run_folder
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.result import ScoreResult
from mnist_dist.scoring.run import gallery_pixels
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.settings import setting
from mnist_dist.storage import storage_errors

log = logging.getLogger(__name__)

STORE_NAME = "images.zarr"  # the run's own store, in the run folder
SPLIT = "images"
STAGING_NAME = "images-staging.zarr"


def check_save_folder(folder: Path, names: Sequence[str]) -> None:
    """StoreExistsError unless `folder` is a folder (or absent) holding none of the PNG names
    the run will write: --save-preprocessed never replaces a file the run did not create."""
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"--save-preprocessed {folder} is a file; expected a folder")
    above = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise StoreExistsError(
            f"--save-preprocessed {folder} lies under {above}, which is a file; expected a folder"
        )
    taken = sorted(name for name in names if (folder / name).exists()) if folder.exists() else []
    if taken:
        shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise StoreExistsError(
            f"--save-preprocessed {folder} already holds {shown}; expected a new or empty "
            "folder (the run never overwrites files it did not create)"
        )


def make_save_folder(folder: Path) -> None:
    """Create the --save-preprocessed folder; SpecError when the system refuses."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"--save-preprocessed {folder}: cannot create the folder ({exc})") from exc


def run_layout(n_files: int, threads: int) -> Layout:
    """The run store's layout: the store's chunk rows, fewer when that spreads a small batch
    over every thread; compressed like the store."""
    rows = max(1, min(int(setting("prepare.chunk-rows")), math.ceil(n_files / threads)))
    return Layout(rows, store_codec())


def ingest_files(
    client: Client, paths: Sequence[str], labels: Sequence[int] | None,
    names: Sequence[str] | None, spec: ImageScoreSpec,
) -> tuple[str, int, int, dict[str, Any]]:
    """The files preprocessed on the workers into `OUT/images.zarr/images`; returns its
    location, the rows scored and failed, and the staging facts (partitions, seconds)."""
    store = spec.out.resolve() / STORE_NAME
    if store.exists():
        raise StoreExistsError(f"{store} exists (an earlier attempt); choose a new --out")
    threads = max(1, sum(client.nthreads().values()))
    layout = run_layout(len(paths), threads)
    size = max(1, min(spec.partition_files, math.ceil(len(paths) / threads)))
    staging_at = spec.out.resolve() / STAGING_NAME
    save_dir = str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None
    started = time.perf_counter()
    try:
        staging = stage_files(client, paths, labels, str(staging_at), size, layout,
                              save_dir, names)
        split = zarr.open_group(str(store), mode="w-").create_group(SPLIT)
        n_ok, n_failed = compact_staged(client, staging, split, layout, labels is not None)
    finally:
        shutil.rmtree(staging_at, ignore_errors=True)
    facts = {"file_partitions": math.ceil(len(paths) / size),
             "ingest_seconds": time.perf_counter() - started, "store": str(store)}
    return str(store), n_ok, n_failed, facts


def copy_failures(client: Client, store: str, predictions: str) -> zarr.Group:
    """The split's failures/{file,reason} copied into the predictions store on the workers;
    returns the copy."""
    source = zarr.open_group(store, mode="r")[f"{SPLIT}/failures"]
    target = zarr.open_group(predictions, mode="r+").create_group("failures")
    n = int(source["file"].shape[0])
    layout = Layout(int(source["file"].chunks[0]), source["file"].compressors)
    pairs = []
    for name in ("file", "reason"):
        array = new_array(target, name, (n,), STRINGS, layout)
        if n:
            pairs.append((da.from_zarr(source[name]), array))
    store_all(client, pairs)
    return target


def first_failure(store: str) -> str:
    """`file: reason` of the first failed file."""
    failures = zarr.open_group(store, mode="r")[f"{SPLIT}/failures"]
    return f"{failures['file'][0]}: {failures['reason'][0]}"


def run_image_scoring(spec: ImageScoreSpec, *, client: Client | None = None) -> dict[str, Any]:
    """Score the image files of `spec` on `client` (left open) or on a cluster started for it;
    returns the report (also written as report.json, report.md and report.html in `spec.out`).
    Per-file failures are counted, not raised."""
    files = list_image_files(spec.images)
    labels = file_labels(files, spec.labels, spec.labels_from_names)
    names = output_names(files) if spec.save_preprocessed is not None else None
    paths = [str(f) for f in files]
    del files  # the client keeps one list of names, not Path objects as well
    if spec.save_preprocessed is not None and names is not None:  # before anything is built
        check_save_folder(spec.save_preprocessed, names)
    # Before any work: a malformed model is one error line.
    models = trained_models(absolute(spec.models), absolute(spec.store), spec.train_epochs)
    with locked_run_folder(spec.out), cluster_faults():
        if spec.save_preprocessed is not None:
            make_save_folder(spec.save_preprocessed)
        log.info("scoring %d image files", len(paths))
        return score_files(spec, paths, labels, names, models, client)


def score_files(
    spec: ImageScoreSpec, paths: Sequence[str], labels: Sequence[int] | None,
    names: Sequence[str] | None, models: ModelFiles, caller: Client | None = None,
) -> dict[str, Any]:
    """Ingest, score and report on the cluster: the `caller`'s client or a new one (see the
    module docstring)."""
    with client_for(spec.cluster, caller) as client:
        check_versions(client)
        ort_threads = ort_threads_for(client)
        ref = models.ref
        payload = ship_models_if_needed(client, ref, ort_threads, models.files)
        started = time.perf_counter()
        store, n_ok, n_failed, staging = ingest_files(client, paths, labels, names, spec)
        if n_ok == 0:
            raise ImageInputError(f"none of the {n_failed} image files could be scored "
                                  f"(first: {first_failure(store)})")
        job = ScoreJob(store=store, run_dir=spec.out, models=ref, split=SPLIT,
                       partition_rows=int(zarr.open_array(f"{store}/{SPLIT}/images").chunks[0]),
                       ort_threads=ort_threads)
        result = score_graph(client, job, show_progress=False, payload=payload)
        failures = copy_failures(client, store, job.predictions)
        seconds = time.perf_counter() - started
        cluster = {**cluster_facts(client), "ort_threads": ort_threads,
                   "models_shipped": payload is not None}
    dataset = {"store": store, "split": SPLIT, "partition_rows": job.partition_rows,
               "store_split": None}
    outputs = {"predictions": job.predictions, "models": ref.directory}
    report = build_report(result, dataset, cluster, models.manifest, [], outputs,
                          gallery_pixels(open_split(store, SPLIT), result))
    report["images"] = images_section(spec, n_ok, failures, {
        **staging, "seconds": seconds, "files_per_second": len(paths) / seconds})
    write_report(report, spec.out)
    render_report(report, spec.out)
    return report


def score_images(spec: ImageScoreSpec, *, client: Client | None = None) -> ScoreResult:
    """Score your own image files (`python -m jobs.score --images`) on `client` (left open) or
    on a cluster started for it; the result's `failures()` lists the files that could not be.

    >>> result = md.score_images(md.ImageScoreSpec(images=(Path("scans"),)))  # doctest: +SKIP
    >>> result.summary(), result.failures()                                 # doctest: +SKIP
    """
    with storage_errors(locations=(spec.store, spec.models)):
        return ScoreResult(run_image_scoring(spec, client=client), spec.out)
