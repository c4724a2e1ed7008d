"""One score run, as the caller describes it (`ScoreSpec`) and as its tasks carry it (`ScoreJob`:
locations resolved, partition rows and models fixed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dask

from mnist_dist.cluster import ClusterSpec
from mnist_dist.errors import SpecError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.outputs import MODEL_NAMES, check_model_names
from mnist_dist.run_state import new_run_folder
from mnist_dist.scoring.sweep import SweepSpec
from mnist_dist.settings import setting_field


def default_out() -> Path:
    """A new run folder per invocation (`runs/score-<time>-<pid>`)."""
    return new_run_folder("score")


@dataclass(frozen=True)
class ScoreSpec:
    """Everything `python -m jobs.score` needs; defaults are what a laptop user gets.

    `store` and `models` are local paths or fsspec URLs (`file://`, `s3://`, …) that the
    workers read directly; `predictions` (default `OUT/predictions.zarr`) is where they write.
    Partitions hold `partition_rows` rows, or else as many whole chunks as fit `partition_mb`.
    The throughput sweep (`sweep`) evaluates the models, so by default (`throughput=None`) it
    runs for a labelled split only; True or False runs it or not whatever the split.
    """

    store: str = setting_field("store")
    models: str = setting_field("models")
    out: Path = field(default_factory=default_out)
    predictions: str = ""
    split: str = setting_field("score.split")
    partition_mb: float = setting_field("score.partition-mb")
    partition_rows: int | None = None
    model_names: tuple[str, ...] = MODEL_NAMES
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    sweep: SweepSpec = field(default_factory=SweepSpec)
    throughput: bool | None = None  # the batch-size sweep; None: only for a labelled split
    train_epochs: int = setting_field("train.epochs")
    show_progress: bool = True
    performance_report: bool = False
    resume: bool = False
    keep_going: bool = False  # a partition that cannot be read or scored fails alone

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))  # a str from a Python caller
        rows = self.partition_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise SpecError(f"partition_rows must be an integer >= 1, or None for partition_mb; "
                            f"got {rows!r} instead")
        if not isinstance(self.keep_going, bool):
            raise SpecError(f"keep_going must be True or False; got {self.keep_going!r} instead")
        if self.throughput is not None and not isinstance(self.throughput, bool):
            raise SpecError(f"throughput must be True, False or None (only for a labelled "
                            f"split); got {self.throughput!r} instead")
        if self.throughput and not self.sweep.batch_sizes:
            raise SpecError("throughput=True needs at least one batch size in sweep.batch_sizes")

    def measures_throughput(self, labelled: bool) -> bool:
        """Whether this run times the models per batch size, for a split with or without labels."""
        wanted = labelled if self.throughput is None else self.throughput
        return wanted and bool(self.sweep.batch_sizes)


@dataclass(frozen=True)
class ScoreJob:
    """One scoring run: which images, how they are partitioned, which models, where to write.

    store : Zarr store path or URL as the workers see it; `split` names the group holding
    `images` (N, 784) uint8 and optionally `labels` (N,) uint8 and `ids` (N,). `run_dir` is the client's run folder;
    `predictions` the Zarr store the workers write (default `run_dir/predictions.zarr`).
    """

    store: str
    run_dir: Path
    models: ModelRef
    predictions: str = ""
    split: str = setting_field("score.split")
    partition_rows: int = setting_field("prepare.chunk-rows")  # one chunk per task
    ort_threads: int = 1
    model_names: tuple[str, ...] = MODEL_NAMES
    sample_misclassified: int = 12
    resume: bool = False
    keep_going: bool = False

    def __post_init__(self) -> None:
        if self.partition_rows < 1:
            raise SpecError(f"partition_rows must be >= 1; got {self.partition_rows} instead")
        object.__setattr__(self, "model_names", check_model_names(self.model_names))
        if not self.predictions:
            object.__setattr__(
                self, "predictions", str(Path(self.run_dir).resolve() / "predictions.zarr")
            )

    @property
    def token(self) -> str:
        """A deterministic name of this job (task keys, the workers' open predictions arrays)."""
        return str(dask.base.tokenize(self))
