"""Score image files with both models on Dask: paths in, one small result row per file out.

The client only lists the files; partitions of paths go to the workers, which read,
preprocess and predict (`tasks.score_files`), and send back one `ImageRow` per file. Pixels
come back only for the contact sheet, in a second round over at most `sheet_limit` files;
`--save-preprocessed` PNGs are written by the workers themselves. So, like the image files
they read, the folder must be on storage the workers share. This is the only module of the
package that touches the Dask client.

A file that cannot be scored (unreadable, corrupt, blank, animated, too large) gets an
`error` in its row; the rest of the batch is scored regardless.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distributed import Client, Future

from mnist_dist.atomic import write_json_atomic
from mnist_dist.cluster import (
    check_versions,
    cluster_facts,
    connect,
    ort_threads_for,
    ship_models_if_needed,
)
from mnist_dist.ensure import ensure_models, ensure_store
from mnist_dist.errors import SpecError, StoreExistsError
from mnist_dist.images.files import (
    label_from_name,
    list_image_files,
    match_labels,
    output_names,
    read_labels_csv,
)
from mnist_dist.images.report import build_images_report
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.images.tasks import (
    ImageRow,
    ImageTask,
    choose_sheet,
    partitions,
    score_files,
    sheet_entries,
)
from mnist_dist.locations import absolute, is_url
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import validate_models
from mnist_dist.report.images_render import write_renderings
from mnist_dist.report.schema import REPORT_NAME
from mnist_dist.run_state import prepare_out
from mnist_dist.training import TrainSpec, check_model_folder

log = logging.getLogger(__name__)

SHEET_PARTITION = 25


def build_tasks(files: Sequence[Path], spec: ImageScoreSpec) -> list[ImageTask]:
    """One task per file, with its label (if any) and its preprocessed PNG name."""
    if spec.labels is not None:
        labels = match_labels(files, read_labels_csv(spec.labels), spec.labels.parent)
    elif spec.labels_from_names:
        labels = [label_from_name(f) for f in files]
    else:
        labels = [None] * len(files)
    names = output_names(files) if spec.save_preprocessed else [None] * len(files)
    return [
        ImageTask(i, str(f), label, name)
        for i, (f, label, name) in enumerate(zip(files, labels, names, strict=True))
    ]


def check_save_folder(folder: Path, tasks: Sequence[ImageTask]) -> None:
    """StoreExistsError unless `folder` is a folder (or absent) holding none of the PNG names
    the run will write: --save-preprocessed never replaces a file the run did not create."""
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"--save-preprocessed {folder} is a file; expected a folder")
    above = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
    if above is not None:
        raise StoreExistsError(
            f"--save-preprocessed {folder} lies under {above}, which is a file; expected a folder"
        )
    taken = sorted(t.save_as for t in tasks if t.save_as and (folder / t.save_as).exists())
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


def score_on_cluster(
    client: Client, tasks: Sequence[ImageTask], spec: ImageScoreSpec, ref: ModelRef,
    ort_threads: int, payload: Future | None = None,
) -> tuple[list[ImageRow], int]:
    """Every file's row, in order, and the number of partitions the files were cut into."""
    threads = max(1, sum(client.nthreads().values()))
    # Small batches still spread over every thread; large ones use `partition_files`.
    size = max(1, min(spec.partition_files, math.ceil(len(tasks) / threads)))
    parts = partitions(tasks, size)
    save_dir = str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None
    futures = client.map(
        score_files, parts, ref=ref, ort_threads=ort_threads, save_dir=save_dir,
        max_pixels=spec.max_pixels, payload=payload, pure=False,
    )
    rows = [row for part in client.gather(futures) for row in part]
    return rows, len(parts)


def sheet_on_cluster(
    client: Client, tasks: Sequence[ImageTask], chosen: Sequence[int], max_pixels: int
) -> list[dict[str, Any]]:
    """Contact-sheet entries of the `chosen` rows, read by the workers, in `chosen` order."""
    wanted = [tasks[i] for i in chosen]
    if not wanted:
        return []
    futures = client.map(
        sheet_entries, partitions(wanted, SHEET_PARTITION), max_pixels=max_pixels, pure=False
    )
    entries = [entry for part in client.gather(futures) for entry in part]
    position = {index: k for k, index in enumerate(chosen)}
    return sorted(entries, key=lambda entry: position[entry["index"]])


def model_reference(spec: ImageScoreSpec) -> ModelRef:
    """A verified reference to the models at `spec.models` (path or URL); a missing local
    folder is first trained on `spec.store`, as jobs.score does."""
    models = absolute(spec.models)
    if not is_url(models) and not Path(models).exists():
        # Refuse before building anything when the trained models would land in the wrong place.
        check_model_folder(TrainSpec(store=spec.store, models=Path(models),
                                     epochs=spec.train_epochs))
        ensure_store(spec.store)
        ensure_models(Path(models), spec.store, spec.train_epochs)
    return ModelRef.from_location(models)


def run_image_scoring(spec: ImageScoreSpec) -> dict[str, Any]:
    """Score the image files of `spec`; returns the report (also written as report.json,
    report.md and report.html in `spec.out`). Per-file failures are rows, not exceptions."""
    files = list_image_files(spec.images)
    tasks = build_tasks(files, spec)
    if spec.save_preprocessed is not None:  # before anything is built, trained or written
        check_save_folder(spec.save_preprocessed, tasks)
    ref = model_reference(spec)
    manifest = validate_models(ref)  # before any work: a malformed model is one error line
    prepare_out(spec.out)
    if spec.save_preprocessed is not None:
        make_save_folder(spec.save_preprocessed)
    log.info("scoring %d image files", len(tasks))
    with connect(spec.cluster) as client:
        check_versions(client)
        payload = ship_models_if_needed(client, ref)
        ort_threads = ort_threads_for(client)
        started = time.perf_counter()
        rows, n_parts = score_on_cluster(client, tasks, spec, ref, ort_threads, payload)
        wall = time.perf_counter() - started
        sheet = sheet_on_cluster(client, tasks, choose_sheet(rows, spec.sheet_limit),
                                 spec.max_pixels)
        cluster = {**cluster_facts(client), "ort_threads": ort_threads, "partitions": n_parts,
                   "models_shipped": payload is not None}
    report = build_images_report(spec, rows, sheet, cluster, manifest, wall)
    write_json_atomic(spec.out / REPORT_NAME, report)
    write_renderings(report, spec.out)
    return report
