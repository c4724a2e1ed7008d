"""What a training run gives back: where the models went and how well each did on the test
split; renders as the job's terminal lines and in a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mnist_dist.report.formats import count, fixed, pct
from mnist_dist.report.pages import render_page


@dataclass(frozen=True)
class ModelFigures:
    """One model's validation figures: accuracy (0-1) on the store's test split, and the
    seconds its training took."""

    test_accuracy: float
    train_seconds: float


@dataclass(frozen=True)
class TrainResult:
    """The model folder `models` (a local path or URL) trained on `store` (`n_train` training
    digits, validated on `n_test` test digits), each model's figures, how far the exported ONNX
    MLP's probabilities are from Keras' (`onnx_max_abs_diff`), and the manifest written."""

    models: str
    store: str
    n_train: int
    n_test: int
    knn: ModelFigures
    mlp: ModelFigures
    onnx_max_abs_diff: float
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_manifest(cls, models: str, manifest: dict[str, Any]) -> TrainResult:
        """The result of the run that wrote `manifest` into `models`."""
        trained = manifest["models"]
        figures = {name: ModelFigures(float(facts["test_accuracy"]),
                                      float(facts["train_seconds"]))
                   for name, facts in trained.items()}
        return cls(models=models, store=manifest["store"]["path"], n_train=manifest["n_train"],
                   n_test=manifest["n_test"], knn=figures["knn"], mlp=figures["mlp"],
                   onnx_max_abs_diff=float(trained["mlp"]["onnx_max_abs_diff"]),
                   manifest=manifest)

    def summary_text(self) -> str:
        """The job's output: each model's test accuracy and training time, then the folder."""
        lines = [f"{name}: test accuracy {facts.test_accuracy:.4f}, "
                 f"trained in {facts.train_seconds:.1f} s"
                 for name, facts in (("knn", self.knn), ("mlp", self.mlp))]
        lines.append(f"models: {self.models} (manifest.json lists every artifact's SHA-256)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [{"name": name, "accuracy": pct(facts.test_accuracy),
                 "seconds": fixed(facts.train_seconds, 1)}
                for name, facts in (("KNN", self.knn), ("MLP", self.mlp))]
        return render_page("train_result.html", models=self.models, store=self.store,
                           n_train=count(self.n_train), n_test=count(self.n_test), rows=rows,
                           onnx_diff=f"{self.onnx_max_abs_diff:.2e}")
