"""The `report.json` document of one image run (schema `SCHEMA`), built from its rows."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

import mnist_dist
from mnist_dist.images import preprocess
from mnist_dist.images.spec import ImageScoreSpec
from mnist_dist.images.tasks import ImageRow
from mnist_dist.locations import absolute
from mnist_dist.metrics import accuracy_summary, confusion_matrix
from mnist_dist.predict import MODEL_NAMES
from mnist_dist.report.schema import HTML_NAME, MARKDOWN_NAME, REPORT_NAME
from mnist_dist.settings import effective_settings

SCHEMA = "mnist-dist-images-report/1"


def model_accuracy(rows: Sequence[ImageRow]) -> dict[str, dict[str, Any]] | None:
    """Accuracy, per-class accuracy and confusion of both models on the labelled, scored rows."""
    labelled = [row for row in rows if row.label is not None and row.error is None]
    if not labelled:
        return None
    labels = np.array([row.label for row in labelled], dtype=np.uint8)
    return {
        name: accuracy_summary(confusion_matrix(
            labels, np.array([getattr(row, name) for row in labelled], dtype=np.uint8)))
        for name in MODEL_NAMES
    }


def labels_source(spec: ImageScoreSpec) -> dict[str, Any]:
    """Where the labels came from, for the report."""
    if spec.labels is not None:
        return {"source": "csv", "path": str(spec.labels)}
    if spec.labels_from_names:
        return {"source": "names", "path": None}
    return {"source": None, "path": None}


def preprocessing_facts(spec: ImageScoreSpec) -> dict[str, Any]:
    """The preprocessing steps and their parameters, for the report."""
    return {
        "steps": ["to_grayscale", "fix_polarity", "isolate_ink", "drop_specks", "trim_to_ink",
                  "fit_box", "centre_by_mass"],
        "side": preprocess.SIDE, "box": preprocess.BOX, "centre": preprocess.CENTRE,
        "noise_floor_fraction": preprocess.NOISE_FLOOR_FRACTION,
        "bilevel_threshold": preprocess.BILEVEL_THRESHOLD,
        "bilevel_max_scale": preprocess.BILEVEL_MAX_SCALE,
        "max_pixels": spec.max_pixels, "formats": list(preprocess.FORMATS),
    }


def inputs_facts(spec: ImageScoreSpec, rows: Sequence[ImageRow]) -> dict[str, Any]:
    """The files asked for, how many were scored or failed, and their labels."""
    failed = sum(row.error is not None for row in rows)
    return {
        "paths": [str(p) for p in spec.images],
        "n_files": len(rows), "n_scored": len(rows) - failed, "n_failed": failed,
        "labels": {**labels_source(spec),
                   "n_labelled": sum(row.label is not None for row in rows)},
    }


def sheet_cards(rows: Sequence[ImageRow], sheet: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contact sheet's entries (from `tasks.sheet_entries`) with their PNGs as base64."""
    return [
        {"index": entry["index"], "file": rows[entry["index"]].file,
         "original_png_b64": base64.b64encode(entry["original_png"]).decode("ascii"),
         "preprocessed_png_b64": base64.b64encode(entry["preprocessed_png"]).decode("ascii")}
        for entry in sheet
    ]


def outputs_facts(spec: ImageScoreSpec) -> dict[str, Any]:
    """Where the run wrote its report files and (if asked) its preprocessed PNGs."""
    out = spec.out.resolve()
    return {
        "report_json": str(out / REPORT_NAME),
        "report_md": str(out / MARKDOWN_NAME),
        "report_html": str(out / HTML_NAME),
        "preprocessed": str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None,
    }


def build_images_report(
    spec: ImageScoreSpec, rows: Sequence[ImageRow], sheet: Sequence[dict[str, Any]],
    cluster: dict[str, Any], manifest: dict[str, Any], wall_seconds: float,
) -> dict[str, Any]:
    """The whole `report.json` document (schema `SCHEMA`) of one image-scoring run."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
        "inputs": inputs_facts(spec, rows),
        "preprocessing": preprocessing_facts(spec),
        "models": {
            "directory": absolute(spec.models),
            **{name: {"test_accuracy_at_training": manifest["models"][name]["test_accuracy"]}
               for name in MODEL_NAMES},
        },
        "cluster": cluster,
        "timing": {
            "wall_seconds": wall_seconds,
            "files_per_second": len(rows) / wall_seconds if wall_seconds > 0 else None,
        },
        "accuracy": model_accuracy(rows),
        "files": [asdict(row) for row in rows],
        "sheet": sheet_cards(rows, sheet),
        "outputs": outputs_facts(spec),
        "effective_settings": effective_settings(),
    }
