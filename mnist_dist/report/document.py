"""The `report.json` document of a scoring run: build it, write it atomically, summarise it.

Field reference: the JSON Schema `mnist_dist/report/report.schema.json`; `write_report` checks
every document against it.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import mnist_dist
from mnist_dist.atomic import write_json_atomic
from mnist_dist.metrics import accuracy_summary
from mnist_dist.report.formats import digit_lines, resumed_part
from mnist_dist.report.schema import REPORT_NAME, SCHEMA, SCHEMA_UNLABELLED, check_document
from mnist_dist.scoring.summaries import CONFIDENCE_BINS, THRESHOLDS, PredictionSummary
from mnist_dist.settings import effective_settings

if TYPE_CHECKING:
    from mnist_dist.scoring.result import ScoreCounts

# Where the seconds of report.json's `time` section come from.
TIME_SOURCE = "dask fine performance metrics"
# Pixels of a run's samples, as `ScoreCounts.samples`.
Samples = dict[str, tuple[np.ndarray, np.ndarray | None]]


def b64(pixels: np.ndarray) -> str:
    """The bytes of uint8 pixels (784,) as base64 text."""
    return base64.b64encode(pixels.tobytes()).decode("ascii")


def misclassified_examples(rows: np.ndarray, pixels: np.ndarray) -> list[dict[str, Any]]:
    """Gallery entries: index, true and predicted digit, and the 784 pixels as base64."""
    return [
        {"index": int(i), "true": int(t), "predicted": int(p), "pixels_b64": b64(pixels[k])}
        for k, (i, t, p) in enumerate(rows)
    ]


def prediction_examples(
    rows: list[dict[str, Any]], pixels: np.ndarray, neighbours: np.ndarray | None
) -> list[dict[str, Any]]:
    """Gallery entries of sampled predictions: index, true digit (with labels), each model's
    digit, the MLP's top probability, the pixels as base64, and each nearest training digit
    (row, distance, pixels)."""
    items = []
    for k, row in enumerate(rows):
        item: dict[str, Any] = {key: row[key] for key in ("index", "true", "knn", "mlp", "probability")
                                if key in row}
        item["pixels_b64"] = b64(pixels[k])
        if neighbours is not None:
            item["neighbours"] = [
                {"row": r, "distance": d, "pixels_b64": b64(neighbours[k, j])}
                for j, (r, d) in enumerate(zip(row["neighbours"], row["distances"]))
            ]
        items.append(item)
    return items


def predictions_section(
    summary: PredictionSummary, n_images: int, labelled: bool, samples: Samples
) -> dict[str, Any]:
    """What both models predicted, without labels: digit counts, agreement, the MLP's
    confidence, and galleries of the least confident predictions and of the disagreements."""
    section: dict[str, Any] = {
        "labelled": labelled,
        "counts": {name: c.tolist() for name, c in summary.predicted.items() if c is not None},
        "agreement": None, "confidence": None,
    }
    if summary.agreement is not None:
        total = int(summary.agreement.sum())
        section["agreement"] = {
            "rate": float(np.trace(summary.agreement)) / total if total else None,
            "matrix": summary.agreement.tolist(),
        }
    if summary.confidence is not None and summary.under is not None:
        section["confidence"] = {
            "bin_width": 1 / CONFIDENCE_BINS, "histogram": summary.confidence.tolist(),
            "thresholds": [{"below": t, "count": int(c), "share": c / n_images if n_images else None}
                           for t, c in zip(THRESHOLDS, summary.under)],
        }
    for name in ("least_confident", "disagreements"):
        rows = getattr(summary, name)
        section[name] = prediction_examples(rows, *samples[name]) if name in samples else []
    return section


def model_section(
    name: str, result: ScoreCounts, threads: int, manifest: dict[str, Any],
    gallery_pixels: np.ndarray | None,
) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion (with labels) and speed of one model."""
    task_seconds = result.task_seconds[name]
    # The cluster's time for this model alone: its summed task time spread over all threads.
    seconds = task_seconds / max(1, threads)
    trained = manifest["models"][name]
    section = {
        **(accuracy_summary(result.confusion[name]) if result.labelled else {}),
        "task_seconds": task_seconds,
        "seconds": seconds,
        "images_per_second": result.n_images / seconds if seconds > 0 else None,
        "train_seconds": trained["train_seconds"],
        "test_accuracy_at_training": trained["test_accuracy"],
        "artifacts": {
            artifact: manifest["artifacts"][artifact] for artifact in trained["artifacts"]
        },
    }
    if result.labelled and gallery_pixels is not None:
        section["misclassified"] = misclassified_examples(result.misclassified[name],
                                                          gallery_pixels)
    return section


def build_report(
    result: ScoreCounts,
    dataset: dict[str, Any],
    cluster: dict[str, Any],
    manifest: dict[str, Any],
    throughput: list[dict[str, Any]],
    outputs: dict[str, str],
    gallery: dict[str, np.ndarray],
    settings: dict[str, Any] | None = None,
    startup: dict[str, float] | None = None,
    kernels: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The whole report.json document of one run; `gallery` holds the misclassified pixels
    (the prediction samples' are in `result.samples`), `settings` what the run ran with
    (default: the effective settings), `startup` each worker's seconds to load the models and
    `kernels` the KNN GEMM kernels it chose then.
    Schema 2 when the split has no labels."""
    report = {
        "schema": SCHEMA if result.labelled else SCHEMA_UNLABELLED,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
        "dataset": {
            **dataset, "n_images": result.n_images, "partitions": result.partitions,
            "partitions_computed": result.partitions_computed,
        },
        "cluster": cluster,
        "models": {
            name: model_section(name, result, cluster["threads"], manifest, gallery.get(name))
            for name in result.task_seconds
        },
        "timing": {  # of this session's partitions only, when it resumed a run
            "wall_seconds": result.wall_seconds,
            "images_computed": result.images_computed,
            "images_per_second": result.images_computed / result.wall_seconds
            if result.wall_seconds > 0 else 0.0,
        },
        "throughput": throughput,
        "outputs": outputs,
        "versions": manifest.get("versions", {}),
        "effective_settings": effective_settings() if settings is None else settings,
    }
    if result.failed:  # --keep-going: the figures cover the other partitions
        report["failed_partitions"] = [
            {key: failure[key] for key in ("index", "start", "stop", "cause")}
            for failure in result.failed]
    if result.predictions is not None:
        report["predictions"] = predictions_section(result.predictions, result.n_images,
                                                    result.labelled, result.samples)
    if result.time_phases:
        report["time"] = {"phases": dict(result.time_phases), "source": TIME_SOURCE}
    if startup:
        report["startup"] = startup_section(startup, kernels)
    return report


def startup_section(seconds: dict[str, float], kernels: dict[str, dict[str, str]] | None = None
                    ) -> dict[str, Any]:
    """Worker start-up apart from scoring: each worker's seconds to load the models (by
    address), their maximum and the number of workers, and (when known) the KNN GEMM kernels
    each chose by measurement as it loaded them."""
    section = {"worker_seconds": dict(sorted(seconds.items())),
               "max_seconds": max(seconds.values()), "workers": len(seconds)}
    if kernels:
        section["knn_kernels"] = dict(sorted(kernels.items()))
    return section


def sample_items(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sampled digit of `report`: each model's misclassified, the least confident and the
    disagreeing ones."""
    items = [item for model in report["models"].values()
             for item in model.get("misclassified") or []]
    predictions = report.get("predictions") or {}
    return items + [item for name in ("least_confident", "disagreements")
                    for item in predictions.get(name) or []]


def name_samples(report: dict[str, Any], ids: Any) -> None:
    """Give each sampled digit of `report` its `id` from the split's `ids` (N,) array (a run of
    image files: the file's path), read for those rows only."""
    items = sample_items(report)
    if not items:
        return
    rows = np.unique(np.array([item["index"] for item in items], dtype=np.int64))
    names = np.asarray(ids.get_orthogonal_selection((rows,)))
    found = dict(zip(rows.tolist(), (str(name) for name in names), strict=True))
    for item in items:
        item["id"] = found[item["index"]]


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write `out/report.json` atomically, once it matches `report.schema.json` (ReportError
    otherwise); returns its path."""
    check_document(report)
    path = out / REPORT_NAME
    write_json_atomic(path, report)
    return path


def summary_text(report: dict[str, Any]) -> str:
    """A short human summary: overall and per-digit accuracy of both models, and speed."""
    dataset, timing = report["dataset"], report["timing"]
    line = (
        f"scored {dataset['n_images']:,} images of {dataset['store']} ({dataset['split']}"
        f"{resumed_part(timing, dataset['n_images'])}) in {timing['wall_seconds']:.1f} s "
        f"({timing['images_per_second']:,.0f} images/s, "
        f"{report['cluster']['workers']} workers, {report['cluster']['threads']} threads)"
    )
    lines = [line, *failed_lines(report.get("failed_partitions") or [])]
    if report["schema"] == SCHEMA:
        return "\n".join([*lines, *digit_lines(report["models"])])
    return "\n".join([*lines, *prediction_lines(report["predictions"])])


def failed_lines(failed: list[dict[str, Any]]) -> list[str]:
    """Terminal lines of the partitions a --keep-going run could not score, one each."""
    return [f"FAILED partition {row['index']} (rows {row['start']:,}-{row['stop']:,}): "
            f"{row['cause']}" for row in failed]


def prediction_lines(section: dict[str, Any]) -> list[str]:
    """Terminal text of an unlabelled run: predicted-digit counts, agreement, confidence."""
    lines = ["predicted  " + " ".join(f"{d:>6}" for d in range(10))]
    lines += [f"{name.upper():<10} " + " ".join(f"{c:>6,}" for c in counts)
              for name, counts in section["counts"].items()]
    if section["agreement"] and section["agreement"]["rate"] is not None:
        lines.append(f"KNN and MLP agree on {100 * section['agreement']['rate']:.2f}%")
    for row in (section["confidence"] or {}).get("thresholds", []):
        if row["share"] is not None:
            lines.append(f"MLP top probability below {row['below']}: "
                         f"{row['count']:,} ({100 * row['share']:.2f}%)")
    return lines
