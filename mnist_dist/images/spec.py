"""The settings of one image run: `ImageScoreSpec`, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mnist_dist.cluster import ClusterSpec
from mnist_dist.errors import SpecError
from mnist_dist.run_state import new_run_folder
from mnist_dist.settings import setting_field


def default_images_out() -> Path:
    """A new run folder per invocation (`runs/images-<time>-<pid>`)."""
    return new_run_folder("images")


@dataclass(frozen=True)
class ImageScoreSpec:
    """Everything `python -m jobs.score --images ...` needs.

    `images` are files or folders (searched recursively for `preprocess.EXTENSIONS`); labels come
    from a `file,digit` CSV (`labels`) or from names like `7_anything.png`
    (`labels_from_names`), never both. `models` is a path or fsspec URL (sent to workers that
    cannot read it); `store` (a path or URL) is used only to train missing local models.
    """

    images: tuple[Path, ...]
    models: str = setting_field("models")
    store: str = setting_field("store")
    out: Path = field(default_factory=default_images_out)
    labels: Path | None = None
    labels_from_names: bool = False
    save_preprocessed: Path | None = None
    partition_files: int = setting_field("images.partition-files")
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    train_epochs: int = setting_field("train.epochs")
    resume: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", str(self.store))  # a Path from a Python caller
        if not self.images:
            raise SpecError("images must name at least one file or folder; got none instead")
        if self.labels is not None and self.labels_from_names:
            raise SpecError("labels and labels_from_names exclude each other; choose one")
        if self.partition_files < 1:
            raise SpecError(f"partition_files must be >= 1; got {self.partition_files} instead")

