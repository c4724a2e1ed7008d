"""What a score run gives back: the graph's counts (`ScoreCounts`) and the public result
(`ScoreResult`: the report document, where the run's files are, its predictions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_dist.images.report import failure_lines
from mnist_dist.report.document import summary_text
from mnist_dist.report.formats import count
from mnist_dist.report.pages import render_page
from mnist_dist.report.schema import HTML_NAME, REPORT_NAME, SCHEMA
from mnist_dist.scoring.summaries import PredictionSummary

if TYPE_CHECKING:
    import dask.dataframe as dd


@dataclass(frozen=True)
class ScoreCounts:
    """What the client receives: counts and timings, never the predictions themselves.

    `confusion` and `misclassified` are empty when the split has no labels (`labelled`);
    `images_computed` are the images of the partitions scored in this call (`wall_seconds`).
    """

    n_images: int
    partitions: int
    partitions_computed: int
    confusion: dict[str, np.ndarray]
    wall_seconds: float
    task_seconds: dict[str, float]
    misclassified: dict[str, np.ndarray] = field(default_factory=dict)
    labelled: bool = True
    predictions: PredictionSummary | None = None
    # Pixels of the prediction samples: name → digits (k, 784), nearest training digits
    # (k, 3, 784) or None (see `prediction_samples`).
    samples: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    # Pixels (k, 784) of each model's misclassified sample (the gallery), labelled splits only.
    gallery: dict[str, np.ndarray] = field(default_factory=dict)
    images_computed: int = 0
    # The partitions that failed (--keep-going): index, start, stop, cause, run_id.
    failed: list[dict[str, Any]] = field(default_factory=list)
    # Seconds per phase (read, each model, write, other) from Dask's fine performance metrics;
    # None when the scheduler could not say or the run resumed (see `observability.spans`).
    time_phases: dict[str, float] | None = None


@dataclass(frozen=True)
class ScoreResult:
    """A finished score run: its report.json document (`report`) and run folder (`out`).

    >>> result = md.score(md.ScoreSpec(split="test"), client=client)      # doctest: +SKIP
    >>> result.accuracy                                                  # doctest: +SKIP
    {'knn': 0.9465, 'mlp': 0.9712}
    >>> result.predictions.head()                                        # doctest: +SKIP
    """

    report: dict[str, Any]
    out: Path

    @property
    def labelled(self) -> bool:
        """True when the split had labels (accuracy and confusion are known)."""
        return bool(self.report["schema"] == SCHEMA)

    @property
    def n_images(self) -> int:
        """Images scored."""
        return int(self.report["dataset"]["n_images"])

    @property
    def accuracy(self) -> dict[str, float]:
        """Each model's overall accuracy (0-1); empty for a split without labels."""
        if not self.labelled:
            return {}
        return {name: float(model["accuracy"]) for name, model in self.report["models"].items()}

    @property
    def report_html(self) -> Path:
        """The run's report page."""
        return self.out / HTML_NAME

    @property
    def report_json(self) -> Path:
        """The run's report document, as written."""
        return self.out / REPORT_NAME

    @property
    def predictions(self) -> dd.DataFrame:
        """Every image's predictions as a lazy Dask DataFrame (the columns `md.export` writes)."""
        import mnist_dist

        return mnist_dist.read_predictions(self.out)

    def summary(self) -> str:
        """The terminal summary: images, time, rate, and per-digit accuracy or predicted digits."""
        return summary_text(self.report)

    @property
    def failed_partitions(self) -> list[dict[str, Any]]:
        """Partitions a `keep_going` run could not read or score: index, start, stop, cause."""
        return list(self.report.get("failed_partitions") or [])

    @property
    def n_failed(self) -> int:
        """Image files that could not be scored (`md.score_images`); 0 for a store's split."""
        return int(self.report.get("images", {}).get("n_failed", 0))

    def failures(self) -> list[str]:
        """Terminal lines naming the image files that could not be scored, and why."""
        return failure_lines(self.report["images"]) if "images" in self.report else []

    def _repr_html_(self) -> str:
        dataset, timing = self.report["dataset"], self.report["timing"]
        return render_page(
            "score_result.html", split=dataset["split"], store=dataset["store"],
            images=count(self.n_images), seconds=f"{timing['wall_seconds']:.1f}",
            rate=count(round(timing["images_per_second"])), labelled=self.labelled,
            models=model_rows(self.report), report=str(self.report_html),
        )


def model_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model: name, overall accuracy (%) and the ten per-digit accuracies (%), or with no
    labels the ten predicted-digit counts."""
    if report["schema"] != SCHEMA:
        counts = report["predictions"]["counts"]
        return [{"name": name.upper(), "overall": "", "cells": [count(c) for c in digits]}
                for name, digits in counts.items()]
    return [{"name": name.upper(), "overall": f"{100 * model['accuracy']:.2f}%",
             "cells": ["–" if a is None else f"{100 * a:.1f}"
                       for a in model["per_class_accuracy"]]}
            for name, model in report["models"].items()]
