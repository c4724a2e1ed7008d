"""What a prepare run gives back: the store built (`PrepareResult`) and the expanded split
written or reused (`ExpandResult`); both render as the job's terminal lines, the former also
in a notebook."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mnist_dist.preparation.plan import format_bytes
from mnist_dist.report.formats import count, fixed
from mnist_dist.report.pages import render_page


@dataclass(frozen=True)
class ExpandResult:
    """What was written (or found): sizes, timing and disk usage in bytes."""

    store: Path
    group: str
    n: int
    partitions: int
    partition_rows: int
    chunk_rows: int
    wall_seconds: float
    group_bytes: int
    store_bytes: int
    reused: bool

    @property
    def digits_per_second(self) -> float:
        """Generation speed; NaN for a reused split (nothing was generated)."""
        return self.n / self.wall_seconds if self.wall_seconds else float("nan")

    def summary(self) -> str:
        """One line for the job's output: what was written, how fast, and the disk it takes."""
        where = f"{self.store}/{self.group}"
        disk = (f"{format_bytes(self.group_bytes)} on disk "
                f"({self.group_bytes / self.n:.0f} B/digit), "
                f"store {format_bytes(self.store_bytes)}")
        if self.reused:
            return f"expanded {where}: n={self.n} already present (same provenance); {disk}"
        return (f"expanded {where}: n={self.n} in {self.partitions} partitions of "
                f"{self.partition_rows} rows, {self.wall_seconds:.1f} s "
                f"({self.digits_per_second:,.0f} digits/s); {disk}")


@dataclass(frozen=True)
class PrepareResult:
    """The store at `store` (a local path or URL) with its split sizes, the split scheme
    (`split`: seed or canonical) and source, and the expanded split when one was asked for."""

    store: str
    n_train: int
    n_test: int
    split: str
    source: str
    chunk_rows: int
    expanded: ExpandResult | None = None

    def summary_text(self) -> str:
        """The job's output: the store line, then the expanded split's line when there is one."""
        store = f"store {self.store}: n_train={self.n_train} n_test={self.n_test} split={self.split}"
        lines = [store]
        if self.expanded is not None:
            lines.append(self.expanded.summary())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        expanded = self.expanded
        return render_page(
            "prepare_result.html", store=self.store, n_train=count(self.n_train),
            n_test=count(self.n_test), split=self.split, source=self.source,
            chunk_rows=count(self.chunk_rows),
            expanded=None if expanded is None else {
                "where": f"{expanded.store}/{expanded.group}", "n": count(expanded.n),
                "reused": expanded.reused, "seconds": fixed(expanded.wall_seconds, 1),
                "rate": fixed(expanded.digits_per_second),
                "disk": format_bytes(expanded.group_bytes),
                "per_digit": fixed(expanded.group_bytes / expanded.n),
            },
        )
