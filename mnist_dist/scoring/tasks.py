"""The score job's per-partition work: pixels in, outputs written to the predictions store,
JSON-ready counts and samples out. No Dask: testable on NumPy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_dist.data.store import zarr_array
from mnist_dist.metrics import confusion_matrix
from mnist_dist.models.cache import ModelPayload, load_predictors
from mnist_dist.models.outputs import timed_outputs
from mnist_dist.observability.spans import WRITE, meter
from mnist_dist.scoring.predictions import output_array
from mnist_dist.scoring.samples import PIXELS, candidate_pixels
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.scoring.summaries import prediction_summary


def score_block(
    images: np.ndarray, labels: np.ndarray | None, index: int, start: int, job: ScoreJob,
    payload: ModelPayload | None = None, copy_ids: bool = False, metered: bool = True,
) -> dict[str, Any]:
    """Task body for one partition: every model's outputs written to the predictions store
    (and the split's ids copied), then a JSON-ready summary (confusion only with labels) and,
    under `PIXELS`, the pixels of its sample candidates (for the galleries). When `metered`,
    Dask's fine performance metrics count each model's time and the writing under its name."""
    predictors = load_predictors(job.models, job.ort_threads, payload)
    outputs: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name in job.model_names:
        with meter(name, metered):
            values, spent = timed_outputs(predictors, (name,), images)
        outputs.update(values)
        seconds.update(spent)
    stop = start + len(images)
    with meter(WRITE, metered):
        write_outputs(job, outputs, start, stop, copy_ids)
    summary = prediction_summary(outputs, start, job.sample_misclassified)
    if labels is not None:
        for row in summary["least_confident"] + summary["disagreements"]:
            row["true"] = int(labels[row["index"] - start])
        digits = {name: outputs[name] for name in job.model_names}
        summary.update(partition_summary(labels, digits, start, job.sample_misclassified))
    return {"index": index, "start": start, "stop": stop, "seconds": seconds, **summary,
            PIXELS: candidate_pixels(images, summary, start)}


def write_outputs(job: ScoreJob, outputs: dict[str, np.ndarray], start: int, stop: int,
                  copy_ids: bool) -> None:
    """Rows `start`-`stop` of every output array (and of the split's ids when `copy_ids`)
    written to the predictions store."""
    for name, values in outputs.items():
        output_array(job.predictions, name, job.token)[start:stop] = values
    if copy_ids:
        ids = zarr_array(job.store, f"{job.split}/ids")[start:stop]
        output_array(job.predictions, "ids", job.token)[start:stop] = ids


def misclassified_rows(
    labels: np.ndarray, predictions: np.ndarray, offset: int, limit: int
) -> np.ndarray:
    """Up to `limit` misclassified rows as int64 (k, 3): global index, true and predicted digit."""
    wrong = np.flatnonzero(labels != predictions)[:limit]
    return np.stack([wrong + offset, labels[wrong], predictions[wrong]], axis=1).astype(np.int64)


def partition_summary(
    labels: np.ndarray, predictions: dict[str, np.ndarray], offset: int, limit: int
) -> dict[str, Any]:
    """JSON-ready confusion counts and a misclassified sample of each model for one partition."""
    return {
        "confusion": {
            name: confusion_matrix(labels, pred).tolist() for name, pred in predictions.items()
        },
        "misclassified": {
            name: misclassified_rows(labels, pred, offset, limit).tolist()
            for name, pred in predictions.items()
        },
    }
