"""The pixels of a run's samples (the galleries), as the tasks that read them return them.

Each partition task returns, with its summary, the pixels of its sample candidates: its first
misclassified rows per model, its least confident and its first disagreeing rows, at most
`limit` of each (`candidate_pixels`). The client keeps, as partitions finish, only the pixels of
rows that can still make a sample (`SamplePixels`): for each sample, the `limit` best rows so
far, by the rule that picks it at the end. So the client never re-reads the split for them,
except rows of partitions scored by an earlier, interrupted attempt (their markers carry no
pixels). No Dask: plain NumPy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mnist_dist.data.sources import N_PIXELS

PIXELS = "pixels"  # the key of a task result's candidate pixels; never written to a marker


def candidate_rows(summary: dict[str, Any]) -> Iterator[tuple[str, tuple[float, int]]]:
    """(sample, sort key) of each candidate row a partition summary names: smaller keys win.
    Misclassified and disagreeing rows are taken in row order, least confident ones by the
    MLP's top probability, then row."""
    for name, rows in (summary.get("misclassified") or {}).items():
        for row in rows:
            yield f"misclassified:{name}", (0.0, int(row[0]))
    for row in summary.get("least_confident") or []:
        yield "least_confident", (float(row["probability"]), int(row["index"]))
    for row in summary.get("disagreements") or []:
        yield "disagreements", (0.0, int(row["index"]))


def candidate_pixels(images: np.ndarray, summary: dict[str, Any], start: int
                     ) -> dict[str, np.ndarray]:
    """The pixels of every candidate row of a partition whose first row is `start`: global rows
    int64 (k,) and their pixels uint8 (k, 784), each row once."""
    rows = np.unique(np.array([key[1] for _, key in candidate_rows(summary)], dtype=np.int64))
    return {"rows": rows, "pixels": np.ascontiguousarray(images[rows - start])}


class SamplePixels:
    """The pixels of the rows that can still make one of the run's samples (bounded: at most
    `limit` rows per sample), fed with each finished partition's summary and candidates."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.best: dict[str, list[tuple[float, int]]] = {}
        self.pixels: dict[int, np.ndarray] = {}

    def add(self, summary: dict[str, Any], candidates: dict[str, np.ndarray] | None) -> None:
        """Merge one partition: its candidates compete with the best so far; the pixels of rows
        no sample can take any more are dropped. `candidates` None: a partition of an earlier
        attempt, whose rows are read from the store when they win."""
        for sample, key in candidate_rows(summary):
            self.best.setdefault(sample, []).append(key)
        for sample, keys in self.best.items():
            self.best[sample] = heapq.nsmallest(self.limit, set(keys))
        kept = {row for keys in self.best.values() for _, row in keys}
        if candidates is not None:
            for row, pixels in zip(candidates["rows"].tolist(), candidates["pixels"],
                                   strict=True):
                if row in kept:
                    self.pixels[row] = pixels
        self.pixels = {row: p for row, p in self.pixels.items() if row in kept}

    def rows(self, index: list[int], read: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """Pixels uint8 (k, 784) of rows `index`, those no task returned read with `read`."""
        missing = sorted({row for row in index if row not in self.pixels})
        if missing:
            self.pixels.update(zip(missing, read(missing), strict=True))
        if not index:
            return np.empty((0, N_PIXELS), dtype=np.uint8)
        return np.stack([self.pixels[row] for row in index])
