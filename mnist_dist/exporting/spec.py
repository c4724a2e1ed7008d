"""One export, as the caller describes it: which run, which format, where."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_dist.errors import SpecError
from mnist_dist.locations import is_url
from mnist_dist.settings import setting_field

FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class ExportSpec:
    """Which run to export (a `jobs.score` run folder), in which format, where (default
    `RUN/predictions.<format>`; a path or an fsspec URL such as `s3://bucket/key`)."""

    run: Path
    format: str = setting_field("export.format")
    out: Path | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.run, (str, Path)) or not str(self.run):
            raise SpecError(f"run must be the path of a jobs.score run folder; "
                            f"got {self.run!r} instead")
        object.__setattr__(self, "run", Path(self.run))  # a str from a Python caller
        if self.format not in FORMATS:
            raise SpecError(f"format must be one of {', '.join(FORMATS)}; "
                            f"got {self.format!r} instead")
        if self.out is not None and (not isinstance(self.out, (str, Path)) or not str(self.out)):
            raise SpecError(f"out must be a path, a URL or None (RUN/predictions.<format>); "
                            f"got {self.out!r} instead")

    def target(self) -> Path | str:
        """Where the table goes: a local Path, or a URL string."""
        if isinstance(self.out, str) and not is_url(self.out):
            return Path(self.out.removeprefix("file://"))
        return self.out or self.run / f"predictions.{self.format}"
