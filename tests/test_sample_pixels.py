"""The galleries' pixels come from the tasks that read the rows (`scoring.samples`): the client
keeps only those that can still make a sample, and reads none of the split again."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from distributed import Client

import mnist_dist as md
from mnist_dist.report.schema import decode_pixels
from mnist_dist.scoring.samples import SamplePixels, candidate_pixels

LIMIT = 4
ROWS = 50  # per partition


def partition(index: int, rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray]:
    """A partition's summary with random candidates (as `score_block` builds them) and its
    pixels (row r is filled with r % 251, so each row's pixels name it)."""
    start = index * ROWS
    wrong = np.sort(rng.choice(ROWS, size=rng.integers(0, 8), replace=False)) + start
    differ = np.sort(rng.choice(ROWS, size=rng.integers(0, 8), replace=False)) + start
    unsure = rng.choice(ROWS, size=LIMIT, replace=False) + start
    summary = {
        "misclassified": {"knn": [[int(r), 1, 2] for r in wrong[:LIMIT]]},
        "least_confident": [{"index": int(r), "probability": float(rng.random())}
                            for r in unsure],
        "disagreements": [{"index": int(r)} for r in differ[:LIMIT]],
    }
    pixels = (np.arange(start, start + ROWS)[:, None] % 251 * np.ones(784)).astype(np.uint8)
    return summary, pixels


def test_the_kept_pixels_are_exactly_those_of_the_final_samples_in_any_finishing_order() -> None:
    rng = np.random.default_rng(7)
    parts = [partition(i, rng) for i in range(30)]
    order = list(range(30))
    random.Random(3).shuffle(order)
    keeper = SamplePixels(LIMIT)
    for i in order:
        summary, pixels = parts[i]
        keeper.add(summary, candidate_pixels(pixels, summary, i * ROWS))
        assert len(keeper.pixels) <= 3 * LIMIT  # bounded however many partitions finished
    # The samples as the run picks them at the end (scoring.graph.combine, combine_summaries).
    wrong = [r[0] for s, _ in parts for r in s["misclassified"]["knn"]][:LIMIT]
    differ = [r["index"] for s, _ in parts for r in s["disagreements"]][:LIMIT]
    unsure = [r["index"] for r in sorted((r for s, _ in parts for r in s["least_confident"]),
                                         key=lambda r: (r["probability"], r["index"]))][:LIMIT]
    assert set(keeper.pixels) == set(wrong) | set(differ) | set(unsure)

    def no_reads(rows: list[int]) -> np.ndarray:
        raise AssertionError(f"read {rows} although the tasks returned them")

    for rows in (wrong, differ, unsure):
        np.testing.assert_array_equal(keeper.rows(rows, no_reads)[:, 0], np.array(rows) % 251)


def test_rows_of_an_earlier_attempt_are_read_and_only_those() -> None:
    rng = np.random.default_rng(1)
    (first, _), (second, pixels) = partition(0, rng), partition(1, rng)
    first["misclassified"]["knn"] = [[3, 1, 2]]
    second["misclassified"]["knn"] = [[ROWS + 5, 1, 2]]
    keeper = SamplePixels(LIMIT)
    keeper.add(first, None)  # a partition scored before the run was resumed: no pixels
    keeper.add(second, candidate_pixels(pixels, second, ROWS))
    read: list[list[int]] = []

    def from_store(rows: list[int]) -> np.ndarray:
        read.append(rows)
        return np.full((len(rows), 784), 99, dtype=np.uint8)

    got = keeper.rows([3, ROWS + 5], from_store)
    assert read == [[3]]
    assert got[0, 0] == 99 and got[1, 0] == (ROWS + 5) % 251


def test_the_client_reads_no_pixels_of_the_split_and_the_galleries_are_the_splits_rows(
    small_models: Path, small_store: Path, local_client: Client, tmp_path: Path,
    monkeypatch: Any,
) -> None:
    chunks: list[str] = []
    get = zarr.storage.LocalStore.get

    async def counting_get(self: zarr.storage.LocalStore, key: str, *args: object,
                           **kwargs: object) -> object:
        if key.startswith("test/images/c"):
            chunks.append(key)
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    result = md.score(md.ScoreSpec(store=str(small_store), models=str(small_models),
                                   out=tmp_path / "run", partition_rows=200,
                                   show_progress=False, throughput=False), client=local_client)
    assert chunks == []
    monkeypatch.undo()
    images = zarr.open_group(str(small_store), mode="r")["test/images"][:]
    report = result.report
    shown = [item for m in ("knn", "mlp") for item in report["models"][m]["misclassified"]]
    shown += report["predictions"]["least_confident"] + report["predictions"]["disagreements"]
    assert len(shown) > 12
    for item in shown:
        np.testing.assert_array_equal(decode_pixels(item), images[item["index"]])

