"""The Dask scoring graph: Zarr images → both predictors → Zarr predictions + confusion counts.

Each partition task reads its rows on a worker (`splits.read_rows`: an undecodable chunk is named), runs
every selected model, writes its per-row outputs (digits, MLP probabilities, KNN neighbours and
distances) into the Zarr chunks that match the partition, and returns only counts (confusion
when the split has labels, predicted digits, agreement, confidence), bounded samples and timings. The client records each
finished partition (see `run_state.py`), so a run survives lost workers (Dask recomputes their
tasks; writes are idempotent) and an interrupted run resumes where it stopped. With
`keep_going`, a partition whose data cannot be read fails alone and is recorded as failed.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import dask
import numpy as np
import zarr
from distributed import Client, Future, KilledWorker

from mnist_dist.data.splits import Split, check_split, read_rows, split_stamp, stamped_split
from mnist_dist.errors import DataError, FileSystemError, PartitionsFailedError
from mnist_dist.models.cache import ModelPayload, validated_knn
from mnist_dist.models.outputs import OUTPUT_ARRAYS, predict_partition
from mnist_dist.observability.metrics import job_started, partition_done, partition_failed
from mnist_dist.observability.spans import (
    READ,
    SCORE,
    SCORE_SPAN,
    WRITE,
    job_span,
    observed,
    phase_seconds,
)
from mnist_dist.run_state import (
    RunRecord,
    marker_path,
    run_started,
    start_run,
    write_failure,
    write_marker,
)
from mnist_dist.scoring.predictions import (
    check_new_predictions,
    lost_partitions,
    open_prediction_store,
)
from mnist_dist.scoring.result import ScoreCounts
from mnist_dist.scoring.samples import PIXELS, SamplePixels
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.scoring.summaries import combine_summaries
from mnist_dist.scoring.tasks import score_block
from mnist_dist.storage import storage_failure
from mnist_dist.waiting import as_they_finish

log = logging.getLogger(__name__)


def job_identity(job: ScoreJob, n_images: int, stamp: str) -> dict[str, Any]:
    """What must not change between an interrupted run and its resumption; `stamp` is the
    split's `split_stamp`."""
    return {
        "store": job.store, "split": job.split, "split_stamp": stamp, "n_images": n_images,
        "partition_rows": job.partition_rows, "models": dict(job.models.checksums),
        "model_names": list(job.model_names), "predictions": job.predictions,
        "outputs": [array for name in job.model_names for array, _, _ in OUTPUT_ARRAYS[name]],
    }


def partition_ranges(n_images: int, partition_rows: int) -> list[tuple[int, int]]:
    """Rows (start, stop) of each partition, in order."""
    return [(start, min(start + partition_rows, n_images))
            for start in range(0, n_images, partition_rows)]


def partition_tasks(
    job: ScoreJob, n_images: int, labelled: bool, skip: set[int],
    payload: Future | ModelPayload | None, copy_ids: bool = False,
) -> dict[int, Any]:
    """One delayed task per partition not in `skip`, keyed by partition index; each reads its
    own rows of the split on a worker (span READ) and scores them (span SCORE), the time of each
    model and of the writing counted under its name (see `observability.spans`)."""
    read = dask.delayed(read_rows, pure=True)
    task = dask.delayed(score_block, pure=True)
    metered = observed()
    ranges = {index: rows for index, rows in
              enumerate(partition_ranges(n_images, job.partition_rows)) if index not in skip}
    with job_span(READ, on=metered):
        inputs = {index: (read(job.store, f"{job.split}/images", start, stop),
                          read(job.store, f"{job.split}/labels", start, stop) if labelled
                          else None)
                  for index, (start, stop) in ranges.items()}
    with job_span(SCORE, on=metered):
        return {index: task(*inputs[index], index, start, job, payload, copy_ids, metered,
                            dask_key_name=f"score-partition-{job.token}-{index}")
                for index, (start, _) in ranges.items()}


def score_graph(
    client: Client, job: ScoreJob, show_progress: bool = True,
    payload: Future | ModelPayload | None = None, checked: tuple[str, Split] | None = None,
    files: ModelPayload | None = None,
) -> ScoreCounts:
    """Run the graph on `client`, recording each finished partition under `job.run_dir`;
    `checked` is the split's (`split_stamp`, opened split) when the caller already checked
    it, `files` the model bytes it already read."""
    stamp, split = checked or stamped_split(job.store, job.split)
    n_images = int(split.pixels.shape[0])
    labelled = split.labels is not None
    # Predictions are only ever resumed by the run that created them (its run.json names them).
    if not run_started(job.run_dir):
        check_new_predictions(job)
    ranges = partition_ranges(n_images, job.partition_rows)
    run = start_run(job.run_dir, job_identity(job, n_images, stamp), job.resume, ranges)
    copy_ids = split.ids is not None
    # Made before any task runs, so no partition was recorded against a half-made store.
    open_prediction_store(job, n_images, run.run_id, copy_ids)
    done = checked_markers(job, run.done, labelled, copy_ids)
    with job_span(SCORE_SPAN) as span_id:
        tasks = partition_tasks(job, n_images, labelled, set(done), payload, copy_ids)
    log.info("scoring %s images in %d partition%s of up to %s rows (%d already done)",
             f"{n_images:,}", len(tasks), "" if len(tasks) == 1 else "s",
             f"{job.partition_rows:,}", len(done))
    start = time.perf_counter()
    found = collect(client, job, run, ranges, tasks, done, stamp, show_progress)
    wall = time.perf_counter() - start
    # Of the whole run only: a resumed run's earlier partitions ran in other spans.
    phases = None if done else phase_seconds(client, span_id, (*job.model_names, WRITE))
    check_split_unchanged(job, stamp)
    failed = found.failed
    if failed and not found.markers:
        first = failed[min(failed)]
        raise PartitionsFailedError(
            f"every partition failed; the first, partition {first['index']} "
            f"(rows {first['start']}-{first['stop']}): {first['cause']}")
    failed_rows = sum(failure["stop"] - failure["start"] for failure in failed.values())
    to_score = sum(ranges[i][1] - ranges[i][0] for i in tasks)
    result = combine(found.markers, job, n_images - failed_rows, len(tasks), wall, labelled,
                     computed=to_score - failed_rows)
    result = replace(result, partitions=len(ranges), time_phases=phases,
                     failed=[failed[index] for index in sorted(failed)])
    pixels = found.pixels
    read = partial(pick_rows, split.pixels)  # rows no task of this run returned
    gallery = {name: pixels.rows(rows[:, 0].tolist(), read)
               for name, rows in result.misclassified.items()}
    return replace(result, gallery=gallery,
                   samples=prediction_samples(job, result, pixels, read, files))


@dataclass
class Collected:
    """What the client gathered of a run: every finished partition's marker (this session's and
    earlier ones), the failed partitions' records, the sampled pixels."""

    markers: dict[int, dict[str, Any]]
    failed: dict[int, dict[str, Any]]
    pixels: SamplePixels


def collect(
    client: Client, job: ScoreJob, run: RunRecord, ranges: list[tuple[int, int]],
    tasks: dict[int, Any], done: dict[int, dict[str, Any]], stamp: str, show_progress: bool,
) -> Collected:
    """Compute `tasks` and record each partition as it finishes (with `job.keep_going`, a
    failed one too), on top of the `done` ones of earlier sessions; `stamp` is the split's."""
    futures = client.compute(list(tasks.values()))
    index_of = {future.key: index for future, index in zip(futures, tasks)}
    found = Collected(dict(done), {}, SamplePixels(job.sample_misclassified))
    for marker in done.values():
        found.pixels.add(marker, None)
    to_score = sum(ranges[i][1] - ranges[i][0] for i in tasks)
    reporting = observed()  # the scheduler's /metrics
    if reporting:
        job_started(client, run.run_id, len(tasks), to_score)
    rows_done, start = 0, time.perf_counter()
    try:
        for finished, future in enumerate(as_they_finish(client, futures), start=1):
            index = index_of[future.key]
            fault = partition_fault(future) if job.keep_going else None
            if fault is not None:
                found.failed[index] = record_failure(job, run.run_id, index, ranges[index], fault)
                if reporting:
                    partition_failed(client, run.run_id, index)
            else:
                marker = {**future.result(), "run_id": run.run_id}
                candidates = marker.pop(PIXELS)
                write_marker(job.run_dir, marker)
                if reporting:
                    partition_done(client, run.run_id, marker)
                found.markers[index] = marker
                found.pixels.add(marker, candidates)
                rows_done += marker["stop"] - marker["start"]
            if show_progress:
                progress_line(finished, len(futures), rows_done, to_score - rows_done,
                              time.perf_counter() - start)
    except Exception as exc:
        if storage_failure(exc) is None:  # no use listing a store whose server is gone
            check_split_unchanged(job, stamp)  # a task read a split being replaced
        raise
    return found


# What fails one partition, not the run, with --keep-going: its data cannot be read or
# decoded, a file of it is refused, or it killed every worker that tried it.
PARTITION_FAULTS = (DataError, FileSystemError, KilledWorker)


def partition_fault(future: Future) -> BaseException | None:
    """The error of a finished partition task when it is one of PARTITION_FAULTS, else None."""
    if future.status != "error":
        return None
    error = future.exception()
    return error if isinstance(error, PARTITION_FAULTS) else None


def record_failure(job: ScoreJob, run_id: str, index: int, rows: tuple[int, int],
                   error: BaseException) -> dict[str, Any]:
    """Record and announce that partition `index` (its `rows`) failed with `error`."""
    cause = f"{type(error).__name__}: {' '.join(str(error).split())}"
    failure = {"index": index, "start": rows[0], "stop": rows[1], "cause": cause,
               "run_id": run_id}
    write_failure(job.run_dir, failure)
    log.warning("partition %d (rows %d-%d) failed, the others go on (--keep-going): %s",
                index, rows[0], rows[1], cause)
    return failure


def checked_markers(
    job: ScoreJob, done: dict[int, dict[str, Any]], labelled: bool, copy_ids: bool
) -> dict[int, dict[str, Any]]:
    """The finished partitions whose counts are whole and whose predictions are all in the
    store; a partition whose predictions were lost is left out, to be scored again."""
    for index, marker in done.items():
        problem = marker_problem(marker, job.model_names, labelled)
        if problem:
            raise DataError(f"{marker_path(job.run_dir, index)}: {problem}; remove it to score "
                            "that partition again, or choose a new --out")
    lost = lost_partitions(job, set(done), copy_ids)
    if lost:
        log.warning("%d finished partition(s) lost their predictions in %s; scoring them "
                    "again", len(lost), job.predictions)
    return {index: marker for index, marker in done.items() if index not in lost}


def marker_problem(marker: dict[str, Any], names: tuple[str, ...], labelled: bool) -> str:
    """What is wrong with a finished partition's counts ('' when nothing): every model's
    seconds, predicted-digit counts and (with labels) confusion, each counting its rows."""
    rows = marker["stop"] - marker["start"]
    for name in names:
        timings = marker.get("seconds")
        seconds = timings.get(name) if isinstance(timings, dict) else None
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            return f"expected the seconds of model {name}"
        counts: list[tuple[Any, str, tuple[int, ...]]] = [
            (marker.get("predicted"), "predicted-digit counts", (10,))]
        if labelled:
            counts.append((marker.get("confusion"), "confusion matrix", (10, 10)))
        for section, what, shape in counts:
            if not counts_of(section, name, shape, rows):
                return f"expected the {what} of model {name}, {shape} counts of its {rows} rows"
    return ""


def counts_of(section: Any, name: str, shape: tuple[int, ...], rows: int) -> bool:
    """True when `section[name]` is a `shape` array of non-negative integers summing to `rows`."""
    if not isinstance(section, dict):
        return False
    try:
        values = np.asarray(section.get(name))
    except (TypeError, ValueError, OverflowError):
        return False
    return (values.shape == shape and values.dtype.kind in "iu" and bool((values >= 0).all())
            and int(values.sum()) == rows)


def check_split_unchanged(job: ScoreJob, stamp: str) -> None:
    """DataError when the split's files changed while the run read them (e.g. replaced by
    `jobs.ingest --force`): its partitions would mix old and new data."""
    if split_stamp(job.store, job.split) != stamp:
        raise DataError(
            f"{job.store}/{job.split} changed while it was being scored (its files were "
            "rewritten or replaced); the predictions may mix old and new data: score it again "
            "with a new --out"
        )


def progress_line(done: int, total: int, rows: int, left: int, seconds: float) -> None:
    """A one-line progress bar on stderr: partitions done of `total`, `rows` scored in
    `seconds` (its rate) and the time the `left` rows will take at that rate."""
    sys.stderr.write("\r" + progress_text(done, total, rows, left, seconds)
                     + ("\n" if done == total else ""))
    sys.stderr.flush()


def progress_text(done: int, total: int, rows: int, left: int, seconds: float,
                  width: int = 30) -> str:
    """The progress line, e.g. `[######    ] 3/7 partitions · 6,000 rows/s · 5 s left`."""
    filled = width * done // max(1, total)
    text = f"[{'#' * filled}{' ' * (width - filled)}] {done}/{total} partitions"
    if rows and seconds > 0:
        rate = rows / seconds
        text += f" · {rate:,.0f} rows/s · " + (f"{left / rate:,.0f} s left" if left else "done")
    return text


def combine(
    markers: dict[int, dict[str, Any]], job: ScoreJob, n_images: int, partitions_computed: int,
    wall: float, labelled: bool = True, computed: int = 0,
) -> ScoreCounts:
    """Sum the partitions' counts and timings into the run's result; `computed` images were
    scored in `wall` seconds."""
    ordered = [markers[i] for i in sorted(markers)]
    names = job.model_names
    limit = job.sample_misclassified
    return ScoreCounts(
        n_images=n_images,
        partitions=len(ordered),
        partitions_computed=partitions_computed,
        confusion={n: np.sum([m["confusion"][n] for m in ordered], axis=0)
                   for n in names} if labelled else {},
        wall_seconds=wall,
        task_seconds={n: float(sum(m["seconds"][n] for m in ordered)) for n in names},
        misclassified={
            n: np.array([row for m in ordered for row in m["misclassified"][n]],
                        dtype=np.int64).reshape(-1, 3)[:limit]
            for n in names
        } if labelled else {},
        labelled=labelled,
        predictions=combine_summaries(ordered, names, limit),
        images_computed=computed,
    )


def pick_rows(array: zarr.Array, index: list[int]) -> np.ndarray:
    """Rows `index` (any order, repeats allowed) of a 2-D Zarr array, read on this side."""
    rows = np.asarray(index, dtype=np.int64)
    if not len(rows):
        return np.empty((0, array.shape[1]), dtype=array.dtype)
    unique, inverse = np.unique(rows, return_inverse=True)
    return np.asarray(array.get_orthogonal_selection((unique, slice(None))))[inverse]


def prediction_samples(
    job: ScoreJob, result: ScoreCounts, pixels: SamplePixels,
    read: Callable[[list[int]], np.ndarray], files: ModelPayload | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Pixels of each sample of the run (least confident, disagreements): uint8 (k, 784) of the
    digits (as the tasks returned them, else `read`) and (k, 3, 784) of their nearest training
    digits (None without the KNN), from the KNN's `files` when the client already read them."""
    if result.predictions is None:
        return {}
    samples = {"least_confident": result.predictions.least_confident,
               "disagreements": result.predictions.disagreements}
    reference = None
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, rows in samples.items():
        neighbours = None
        if rows and "neighbours" in rows[0]:
            if reference is None:  # the KNN's own reference set, whatever store it came from
                reference = validated_knn(job.models, files.get if files else None).reference
            neighbours = reference[np.array([row["neighbours"] for row in rows])]
        out[name] = (pixels.rows([row["index"] for row in rows], read), neighbours)
    return out


def score_in_process(job: ScoreJob) -> dict[str, np.ndarray]:
    """The same predictions computed partition by partition in this process, without Dask
    (the reference the graph is tested against)."""
    n_images = check_split(job.store, job.split)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in job.model_names}
    for start in range(0, n_images, job.partition_rows):
        stop = min(start + job.partition_rows, n_images)
        images = read_rows(job.store, f"{job.split}/images", start, stop)
        for name in job.model_names:
            parts[name].append(predict_partition(images, name, job.models, job.ort_threads))
    return {name: np.concatenate(values) for name, values in parts.items()}
