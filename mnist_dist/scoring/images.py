"""Score your own image files: `md.score_images` (`python -m jobs.score --images PATH...`).

An ingest, then a score run. The files are ingested (`ingestion.run.ingest_files`: read and
preprocessed on the workers) into the split `images` of a store inside the run folder
(`OUT/images.zarr`: images, ids = file paths, labels when given, failures/{file,reason}); the
score run (`scoring.run.score_on`) scores that split into `OUT/predictions.zarr`, which also gets
the failures; the report is the score report plus an `images` section of counts and bounded
samples. The client holds the list of paths and never a per-file result, so
`jobs.export OUT` gives one row per scored file.

Like the image files they read, `--save-preprocessed` must be on storage the workers share.
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
import numpy as np
import zarr
from distributed import Client

from mnist_dist.cluster import client_for, cluster_faults
from mnist_dist.data.splits import open_split, stamped_split
from mnist_dist.data.store import store_codec
from mnist_dist.ensure import trained_models
from mnist_dist.errors import SpecError, StoreExistsError
from mnist_dist.images.files import file_labels, list_image_files, output_names
from mnist_dist.images.report import images_section
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.images.staging import STRINGS, Layout, new_array, store_all
from mnist_dist.ingestion.result import Built
from mnist_dist.ingestion.run import ingest_files
from mnist_dist.locations import absolute
from mnist_dist.models.cache import ModelFiles
from mnist_dist.run_state import (
    IMAGES_RUN_ATTRIBUTE,
    IMAGES_STAGING,
    IMAGES_STORE,
    interrupted_ingest,
    locked_run_folder,
    run_started,
)
from mnist_dist.scoring.result import ScoreResult
from mnist_dist.scoring.run import publish_report, score_on
from mnist_dist.scoring.spec import ScoreSpec
from mnist_dist.settings import setting
from mnist_dist.storage import storage_errors

log = logging.getLogger(__name__)

SPLIT = "images"


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


def ingest_into_run(
    client: Client, paths: Sequence[str], labels: Sequence[int] | None,
    names: Sequence[str] | None, spec: ImageScoreSpec,
) -> tuple[str, Built, dict[str, Any]]:
    """The files ingested on the workers into `OUT/images.zarr/images`; returns the store's
    location, what was built and the staging facts (partitions, seconds)."""
    store = spec.out.resolve() / IMAGES_STORE
    staging = spec.out.resolve() / IMAGES_STAGING
    if store.exists() and not (spec.resume and interrupted_ingest(spec.out)):
        raise StoreExistsError(f"{store} exists (an earlier attempt); finish that run with "
                               "--resume, or choose a new --out")
    if store.exists():
        log.info("the last attempt stopped while it ingested the files: ingesting them again")
        shutil.rmtree(store)
        shutil.rmtree(staging, ignore_errors=True)
    threads = max(1, sum(client.nthreads().values()))
    layout = run_layout(len(paths), threads)
    size = max(1, min(spec.partition_files, math.ceil(len(paths) / threads)))
    save = None
    if spec.save_preprocessed is not None and names is not None:
        save = (str(spec.save_preprocessed.resolve()), names)
    try:
        root = zarr.open_group(str(store), mode="w-")
        root.attrs[IMAGES_RUN_ATTRIBUTE] = True  # ours, should this attempt stop (see run_state)
        split = root.create_group(SPLIT)
        built = ingest_files(client, paths, labels, split, str(staging), layout, size, save)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    facts = {"file_partitions": math.ceil(len(paths) / size), "ingest_seconds": built.seconds,
             "store": str(store)}
    return str(store), built, facts


def ingested_before(out: Path, paths: Sequence[str], labels: Sequence[int] | None
                    ) -> tuple[str, Built, dict[str, Any]]:
    """The run store an earlier attempt of this run ingested, checked to hold these files (the
    same paths and labels; the split's stamp then guards its content), as `ingest_into_run`
    returns it."""
    store = str(out.resolve() / IMAGES_STORE)
    split = open_split(store, SPLIT)
    failed = zarr.open_group(store, mode="r")[f"{SPLIT}/failures/file"]
    ingested = [str(i) for i in np.asarray(split.ids[:])] if split.ids is not None else []
    scored = set(ingested) | {str(f) for f in np.asarray(failed[:])}
    if len(scored) != len(paths) or not scored.issuperset(paths):
        raise SpecError(f"--resume: {out} holds a run of other image files ({len(scored)} then, "
                        f"{len(paths)} now); pass the same files, or choose a new --out")
    if labels is not None and split.labels is not None:
        given = dict(zip(paths, labels, strict=True))
        if [given[i] for i in ingested] != np.asarray(split.labels[:]).tolist():
            raise SpecError(f"--resume: the labels differ from those of the run in {out}; "
                            "pass the same labels, or choose a new --out")
    built = Built(len(ingested), int(failed.shape[0]), 0.0, {})
    return store, built, {"file_partitions": 0, "ingest_seconds": 0.0, "store": store}


def copy_failures(client: Client, store: str, predictions: str) -> zarr.Group:
    """The split's failures/{file,reason} copied into the predictions store on the workers;
    returns the copy."""
    source = zarr.open_group(store, mode="r")[f"{SPLIT}/failures"]
    target = zarr.open_group(predictions, mode="r+").create_group("failures", overwrite=True)
    n = int(source["file"].shape[0])
    layout = Layout(int(source["file"].chunks[0]), source["file"].compressors)
    pairs = []
    for name in ("file", "reason"):
        array = new_array(target, name, (n,), STRINGS, layout)
        if n:
            pairs.append((da.from_zarr(source[name]), array))
    store_all(client, pairs)
    return target


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
        if run_started(spec.out) and not spec.resume:  # before anything is ingested into it
            raise StoreExistsError(f"{spec.out} holds an unfinished run; pass --resume to "
                                   "continue it or choose a new --out")
        if spec.save_preprocessed is not None:
            make_save_folder(spec.save_preprocessed)
        log.info("scoring %d image files", len(paths))
        return score_files(spec, paths, labels, names, models, client)


def score_files(
    spec: ImageScoreSpec, paths: Sequence[str], labels: Sequence[int] | None,
    names: Sequence[str] | None, models: ModelFiles, caller: Client | None = None,
) -> dict[str, Any]:
    """Ingest, then score and report, on the `caller`'s client or a new one (see the module
    docstring)."""
    with client_for(spec.cluster, caller) as client:
        started = time.perf_counter()
        if spec.resume and run_started(spec.out):  # the files were ingested: score the rest
            store, built, staging = ingested_before(spec.out, paths, labels)
        else:
            store, built, staging = ingest_into_run(client, paths, labels, names, spec)
        stamp, split = stamped_split(store, SPLIT)
        rows = int(split.pixels.chunks[0])  # one partition per chunk
        report = score_on(client, score_spec(spec, store, rows), split, models, rows, stamp)
        failures = copy_failures(client, store, report["outputs"]["predictions"])
        seconds = time.perf_counter() - started
    report["images"] = images_section(spec, built.n_images, failures, {
        **staging, "seconds": seconds, "files_per_second": len(paths) / seconds})
    publish_report(report, spec.out)
    return report


def score_spec(spec: ImageScoreSpec, store: str, rows: int) -> ScoreSpec:
    """The score run over the run's own store: its split `images` in partitions of `rows`, no
    throughput sweep (that evaluates the models, not the files)."""
    return ScoreSpec(store=store, models=spec.models, out=spec.out, split=SPLIT,
                     partition_rows=rows, cluster=spec.cluster, throughput=False,
                     train_epochs=spec.train_epochs, show_progress=False, resume=spec.resume)


def score_images(spec: ImageScoreSpec, *, client: Client | None = None) -> ScoreResult:
    """Score your own image files (`python -m jobs.score --images`) on `client` (left open) or
    on a cluster started for it; the result's `failures()` lists the files that could not be.

    >>> result = md.score_images(md.ImageScoreSpec(images=(Path("scans"),)))  # doctest: +SKIP
    >>> result.summary(), result.failures()                                 # doctest: +SKIP
    """
    with storage_errors(locations=(spec.store, spec.models)):
        return ScoreResult(run_image_scoring(spec, client=client), spec.out)
