"""Partition sizes from a memory target: whole chunks, at least one, and the jobs' flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from jobs import score as score_job
from mnist_dist.data.partitioning import (
    GENERATE_BYTES_PER_ROW,
    MIB,
    SCORE_BYTES_PER_ROW,
    check_aligned,
    chunk_rows_of,
    partition_rows,
)


@pytest.mark.parametrize(
    ("target_mb", "bytes_per_row", "chunk_rows", "expected"),
    [
        (20, SCORE_BYTES_PER_ROW, 2000, 2000),  # 2,048 rows fit → one whole chunk
        (64, SCORE_BYTES_PER_ROW, 2000, 6000),  # 6,553 fit → three chunks
        (64, GENERATE_BYTES_PER_ROW, 2000, 32000),
        (1, SCORE_BYTES_PER_ROW, 250, 250),  # 102 fit: never less than one chunk
        (0.5, 1, 7, (MIB // 2) // 7 * 7),
    ],
)
def test_rows_are_whole_chunks_within_the_target(
    target_mb: float, bytes_per_row: int, chunk_rows: int, expected: int
) -> None:
    rows = partition_rows(target_mb, bytes_per_row, chunk_rows)
    assert rows == expected
    assert rows % chunk_rows == 0
    assert rows == chunk_rows or rows * bytes_per_row <= target_mb * MIB


def test_rows_grow_with_the_target_and_shrink_with_the_row_cost() -> None:
    sizes = [partition_rows(mb, SCORE_BYTES_PER_ROW, 100) for mb in (8, 16, 32, 64, 128)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert partition_rows(64, GENERATE_BYTES_PER_ROW, 100) > partition_rows(
        64, SCORE_BYTES_PER_ROW, 100
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 10), "target_mb must be a positive number; got 0"),
        ((float("nan"), 10, 10), "target_mb must be a positive number"),
        ((1, 0, 10), "bytes_per_row must be >= 1; got 0"),
        ((1, 10, 0), "chunk_rows must be >= 1; got 0"),
    ],
)
def test_bad_arguments_are_refused(args: tuple[float, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        partition_rows(*args)


def test_misaligned_partitions_are_refused() -> None:
    check_aligned(64, 8, "x")
    with pytest.raises(ValueError, match="multiple of the 8-row chunks of x; got 60"):
        check_aligned(60, 8, "x")


def test_chunk_rows_come_from_the_store(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w")
    group.create_array("test/images", data=np.zeros((100, 784), np.uint8), chunks=(30, 784))
    assert chunk_rows_of(tmp_path / "s.zarr", "test/images") == 30
    chunk_rows = chunk_rows_of(tmp_path / "s.zarr", "test/images")
    assert partition_rows(1, SCORE_BYTES_PER_ROW, chunk_rows) == 90  # 102 rows fit


def test_score_job_takes_a_memory_target_or_explicit_rows() -> None:
    assert score_job.parse_args([]).partition_rows is None
    assert score_job.parse_args(["--partition-mb", "64"]).partition_mb == 64
    assert score_job.parse_args(["--partition-rows", "500"]).partition_rows == 500
    with pytest.raises(SystemExit):
        score_job.parse_args(["--partition-rows", "500", "--partition-mb", "8"])
