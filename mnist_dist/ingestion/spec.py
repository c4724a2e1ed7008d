"""One ingest, as the caller describes it: `IngestSpec` (what to ingest into which split)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mnist_dist.cluster import ClusterSpec
from mnist_dist.errors import SpecError
from mnist_dist.settings import setting_field

SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # a store group name, as --split takes
PIXEL_RANGES = (1, 255)


@dataclass(frozen=True)
class IngestSpec:
    """What to ingest into which split; defaults are what `python -m jobs.ingest` gives.

    `sources` are array sources (`.npy` (N, 28, 28) or (N, 784), an `.npz` member `key`, a Zarr
    array by path or URL) or image files and folders, not both. `store` is a path or URL
    (`s3://…`); `labels` a `.npy` of N ints, or a `file,digit` CSV for image files.
    `preprocess`: array digits get the MNIST-style preprocessing of image files (which always
    get it, so True is accepted for them too).
    """

    sources: tuple[str, ...]
    split: str
    store: Path | str = setting_field("store")
    key: str | None = None
    pixel_range: int | None = None
    labels: Path | None = None
    labels_from_names: bool = False
    force: bool = False
    partition_files: int = setting_field("ingest.partition-files")
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    preprocess: bool = False

    def __post_init__(self) -> None:
        # A Python caller may name one source, or give paths and lists: kept as strings.
        one = isinstance(self.sources, (str, os.PathLike))
        sources = (self.sources,) if one else tuple(self.sources)
        if not sources or not all(isinstance(s, (str, os.PathLike)) and str(s).strip()
                                  for s in sources):
            raise SpecError(f"`sources` must name one or more files, folders or URLs; "
                            f"got {self.sources!r} instead")
        object.__setattr__(self, "sources", tuple(map(str, sources)))
        if not isinstance(self.split, str) or not SPLIT_NAME.fullmatch(self.split):
            raise SpecError(f"`split` must be a plain group name such as 'new' (letters, digits, "
                            f"_ and -); got {self.split!r} instead")
        if not isinstance(self.store, (str, os.PathLike)) or not str(self.store).strip():
            raise SpecError(f"`store` must be a path or URL; got {self.store!r} instead")
        self.check_options()

    def check_options(self) -> None:
        """SpecError for an option of the wrong kind; labels become a Path."""
        scale = self.pixel_range
        if scale is not None and (isinstance(scale, bool) or scale not in PIXEL_RANGES):
            raise SpecError(f"`pixel_range` must be 1, 255 or None (uint8 sources); "
                            f"got {scale!r} instead")
        if not isinstance(self.preprocess, bool):
            raise SpecError(f"`preprocess` must be True or False; got {self.preprocess!r} "
                            "instead")
        rows = self.partition_files
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise SpecError(f"`partition_files` must be an integer >= 1; got {rows!r} instead")
        if self.labels is not None:
            object.__setattr__(self, "labels", Path(self.labels))  # a str from a Python caller
            if self.labels_from_names:
                raise SpecError("`labels` and `labels_from_names` exclude each other; "
                                "choose one")
        if not isinstance(self.cluster, ClusterSpec):
            raise SpecError(f"`cluster` must be a mnist_dist.cluster.ClusterSpec; "
                            f"got {type(self.cluster).__name__} instead")
