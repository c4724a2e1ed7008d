"""One prepare run, as the caller describes it (`PrepareSpec`), and the expanded split it may
add, as its graph carries it (`ExpandSpec`)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.expand import DeformParams
from mnist_dist.data.store import SPLITS
from mnist_dist.errors import SpecError
from mnist_dist.locations import is_url
from mnist_dist.settings import setting_field

DEFAULT_GROUP = "expanded"
RESERVED_GROUPS = ("train", "test")


@dataclass(frozen=True)
class ExpandSpec:
    """An expanded split: `n` deformed digits of split `source`, written as group `group`.

    partition_rows : rows per task, a multiple of the store's chunk rows; None (the default)
    chooses them from the memory target `partition_mb` (MiB).
    """

    store: Path
    n: int
    seed: int = setting_field("expand.seed")
    params: DeformParams = field(default_factory=DeformParams)
    partition_mb: float = setting_field("expand.partition-mb")
    partition_rows: int | None = None
    group: str = DEFAULT_GROUP
    source: str = "test"
    force: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise SpecError(f"n must be >= 1; got {self.n} instead")
        if self.seed < 0:
            raise SpecError(f"seed must be >= 0; got {self.seed} instead")
        if not math.isfinite(self.partition_mb) or self.partition_mb <= 0:
            raise SpecError(
                f"partition_mb must be a finite number of MiB > 0; got {self.partition_mb} instead"
            )
        if self.partition_rows is not None and self.partition_rows < 1:
            raise SpecError(f"partition_rows must be >= 1; got {self.partition_rows} instead")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", self.group):
            raise SpecError(f"group must be a plain name like 'expanded'; got {self.group!r}")
        if self.group in RESERVED_GROUPS:
            raise SpecError(f"group must not be one of {RESERVED_GROUPS}; got {self.group!r}")


@dataclass(frozen=True)
class PrepareSpec:
    """Everything `python -m jobs.prepare` needs; defaults are what a laptop user gets.

    Builds the store `store` (a local path or URL) from `source` (a folder of IDX files or an
    .npz; None: the vendored copy) or from the files downloaded into `download`. With `expand`
    (a number of digits) it then writes that many deformed test digits as group `expanded`,
    generated on the cluster `cluster` describes (used only then).
    """

    store: str = setting_field("store")
    source: Path | None = None
    download: Path | None = None
    split: str = setting_field("prepare.split")
    chunk_rows: int = setting_field("prepare.chunk-rows")
    force: bool = False
    expand: int | None = None
    seed: int = setting_field("expand.seed")
    partition_mb: float = setting_field("expand.partition-mb")
    cluster: ClusterSpec = field(default_factory=ClusterSpec)

    def __post_init__(self) -> None:
        if not isinstance(self.store, (str, os.PathLike)) or not str(self.store):
            raise SpecError(f"store must be a path or URL; got {self.store!r} instead")
        object.__setattr__(self, "store", os.fspath(self.store))  # a Path from a Python caller
        for name in ("source", "download"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if self.source is not None and self.download is not None:
            raise SpecError(f"source and download are exclusive (download fetches the source); "
                            f"got {self.source} and {self.download} instead")
        if self.split not in SPLITS:
            raise SpecError(f"split must be one of {', '.join(SPLITS)}; got {self.split!r} instead")
        check_count("chunk_rows", self.chunk_rows)
        if self.expand is not None:
            check_count("expand", self.expand)
            if is_url(self.store):
                raise SpecError(f"--expand needs a local --store (the expanded split is built "
                                f"beside it on disk); got {self.store} instead")
            self.expand_spec()  # its own checks, before any work

    def expand_spec(self) -> ExpandSpec | None:
        """The expanded split asked for, or None without `expand`."""
        if self.expand is None:
            return None
        return ExpandSpec(store=Path(self.store), n=self.expand, seed=self.seed,
                          partition_mb=self.partition_mb, force=self.force)


def check_count(name: str, value: object) -> None:
    """SpecError unless `value` is an integer >= 1 (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} must be an integer >= 1; got {value!r} instead")
