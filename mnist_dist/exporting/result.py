"""What an export gives back: where the table went, its format and its shape; renders itself
in a notebook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_dist.report.formats import count
from mnist_dist.report.pages import render_page


@dataclass(frozen=True)
class ExportResult:
    """The table written by an export: `path` (a local Path or a URL), `format` (parquet or
    csv), `rows` (one per image) and its `columns`, in order."""

    path: Path | str
    format: str
    rows: int
    columns: tuple[str, ...]

    def _repr_html_(self) -> str:
        return render_page("export_result.html", path=str(self.path), format=self.format,
                           rows=count(self.rows), columns=self.columns)
