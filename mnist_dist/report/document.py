"""The `report.json` document of a scoring run: build it, write it atomically, summarise it.

Field reference: README.md, section "report.json".
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import mnist_dist
from mnist_dist.atomic import write_json_atomic
from mnist_dist.metrics import accuracy_summary
from mnist_dist.report.formats import digit_lines
from mnist_dist.report.schema import REPORT_NAME, SCHEMA
from mnist_dist.scoring import ScoreResult
from mnist_dist.settings import effective_settings


def misclassified_examples(rows: np.ndarray, pixels: np.ndarray) -> list[dict[str, Any]]:
    """Gallery entries: index, true and predicted digit, and the 784 pixels as base64."""
    return [
        {"index": int(i), "true": int(t), "predicted": int(p),
         "pixels_b64": base64.b64encode(pixels[k].tobytes()).decode("ascii")}
        for k, (i, t, p) in enumerate(rows)
    ]


def model_section(
    name: str, result: ScoreResult, threads: int, manifest: dict[str, Any],
    gallery_pixels: np.ndarray,
) -> dict[str, Any]:
    """Accuracy, per-class accuracy, confusion and speed of one model in this run."""
    confusion = result.confusion[name]
    task_seconds = result.task_seconds[name]
    # The cluster's time for this model alone: its summed task time spread over all threads.
    seconds = task_seconds / max(1, threads)
    trained = manifest["models"][name]
    return {
        **accuracy_summary(confusion),
        "task_seconds": task_seconds,
        "seconds": seconds,
        "images_per_second": result.n_images / seconds if seconds > 0 else None,
        "train_seconds": trained["train_seconds"],
        "test_accuracy_at_training": trained["test_accuracy"],
        "artifacts": {
            artifact: manifest["artifacts"][artifact] for artifact in trained["artifacts"]
        },
        "misclassified": misclassified_examples(result.misclassified[name], gallery_pixels),
    }


def build_report(
    result: ScoreResult,
    dataset: dict[str, Any],
    cluster: dict[str, Any],
    manifest: dict[str, Any],
    throughput: list[dict[str, Any]],
    outputs: dict[str, str],
    gallery: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The whole report.json document of one run; `gallery` holds the misclassified pixels."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
        "dataset": {
            **dataset, "n_images": result.n_images, "partitions": result.partitions,
            "partitions_computed": result.partitions_computed,
        },
        "cluster": cluster,
        "models": {
            name: model_section(name, result, cluster["threads"], manifest, gallery[name])
            for name in result.confusion
        },
        "timing": {
            "wall_seconds": result.wall_seconds,
            "images_per_second": result.n_images / result.wall_seconds,
        },
        "throughput": throughput,
        "outputs": outputs,
        "versions": manifest.get("versions", {}),
        "effective_settings": effective_settings(),
    }


def write_report(report: dict[str, Any], out: Path) -> Path:
    """Write `out/report.json` atomically; returns its path."""
    path = out / REPORT_NAME
    write_json_atomic(path, report)
    return path


def summary_text(report: dict[str, Any]) -> str:
    """A short human summary: overall and per-digit accuracy of both models, and speed."""
    dataset, timing = report["dataset"], report["timing"]
    line = (
        f"scored {dataset['n_images']:,} images of {dataset['store']} ({dataset['split']}) "
        f"in {timing['wall_seconds']:.1f} s ({timing['images_per_second']:,.0f} images/s, "
        f"{report['cluster']['workers']} workers, {report['cluster']['threads']} threads)"
    )
    return "\n".join([line, *digit_lines(report["models"])])
