"""What an ingest gives back: the split written aside (`Built`) and the public result
(`IngestResult`), which renders itself in a notebook."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_dist.report.formats import count, fixed
from mnist_dist.report.pages import render_page


@dataclass(frozen=True)
class Built:
    """A split written aside: rows, failed files, seconds on the cluster (without its start-up),
    and the content SHA-256 of each Zarr source."""

    n_images: int
    n_failed: int
    seconds: float
    content_sha256: dict[str, str]


@dataclass(frozen=True)
class IngestResult:
    """The split written (`location`, `store/split`): its rows, the image files that failed
    (count and the first few (file, reason)), the seconds on the cluster."""

    location: str
    n_images: int
    n_failed: int
    failures: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return (self.n_images + self.n_failed) / self.seconds if self.seconds > 0 else 0.0

    def _repr_html_(self) -> str:
        return render_page("ingest_result.html", location=self.location,
                           images=count(self.n_images), failed=count(self.n_failed),
                           rate=fixed(self.images_per_second), seconds=fixed(self.seconds, 1),
                           failures=self.failures)
