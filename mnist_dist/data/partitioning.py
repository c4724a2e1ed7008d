"""Partition sizes from a memory target, aligned to whole Zarr chunks.

A partition's rows are the largest multiple of the target array's chunk rows whose working
memory fits the target (`--partition-mb`, in MiB), and never less than one chunk. Whole chunks
matter: Dask tasks writing partitions that share a Zarr chunk race on it and silently lose rows,
and reading whole chunks decodes each chunk once.

Working memory per row while a partition is processed (bytes):

Scoring, `SCORE_BYTES_PER_ROW` = 10 KiB:
    784   the partition's uint8 pixels (held until every predictor has run)
    784   Zarr's decoded chunk buffers while it assembles the partition (transient)
  3,136   float32 cast of the pixels inside the ONNX MLP
  3,136   standardised float32 copy fed to the first layer
  1,792   hidden activations, 256 + 128 + 64 float32
    ~80   probabilities (40), argmax int64 (8), KNN neighbour indices (24), labels, predictions
  ≈ 9.7 KB, rounded up to 10 KiB. The KNN works through blocks of queries internally, so its
  scores and temporaries are bounded per block and count with the model (per worker thread,
  on top of its reference set), not with the partition.

Generation, `GENERATE_BYTES_PER_ROW` = 2 KiB:
    784   the partition's deformed uint8 pixels, plus 1 label and an int64 source index (8)
    784   the copy Zarr makes while it splits the partition into chunks and compresses them
  ≈ 1.6 KB, rounded up to 2 KiB. The float64 deformation temporaries belong to one 64-digit
  batch (`expand.BATCH_ROWS`, ~3 MB) and the source split (~11 MB) is shared: both constant.

Peak worker memory ≈ baseline process + models (or source split) + threads x partition
working memory (+ one partition waiting to be written): independent of the number of rows N.
"""

from __future__ import annotations

import math
from pathlib import Path

import zarr

from mnist_dist.errors import SpecError
from mnist_dist.settings import setting

MIB = 1 << 20
SCORE_BYTES_PER_ROW = 10 * 1024
GENERATE_BYTES_PER_ROW = 2 * 1024


def partition_rows(target_mb: float, bytes_per_row: int, chunk_rows: int) -> int:
    """Rows per partition: the largest multiple of `chunk_rows` within `target_mb` MiB of
    working memory at `bytes_per_row`, at least `chunk_rows`."""
    if not math.isfinite(target_mb) or target_mb <= 0:
        raise SpecError(f"target_mb must be a positive number; got {target_mb} instead")
    if bytes_per_row < 1:
        raise SpecError(f"bytes_per_row must be >= 1; got {bytes_per_row} instead")
    if chunk_rows < 1:
        raise SpecError(f"chunk_rows must be >= 1; got {chunk_rows} instead")
    fitting = int(target_mb * MIB) // bytes_per_row
    return max(1, fitting // chunk_rows) * chunk_rows


def check_aligned(partition: int, chunk_rows: int, what: str) -> None:
    """SpecError unless `partition` rows are a whole number of `chunk_rows` chunks."""
    if partition < 1 or partition % chunk_rows:
        raise SpecError(
            f"partition rows must be a positive multiple of the {chunk_rows}-row chunks of "
            f"{what}; got {partition} instead. Choose the size with `partition_rows()`"
        )


def chunk_rows_of(store: Path | str, component: str) -> int:
    """Rows per chunk of the array `component` (e.g. "test/images") in the Zarr store."""
    array = zarr.open_array(str(store), path=component, mode="r")
    return int(array.chunks[0])


def default_score_rows() -> int:
    """Rows per scoring partition with the default settings in a store of default chunks."""
    return partition_rows(setting("score.partition-mb"), SCORE_BYTES_PER_ROW,
                          setting("prepare.chunk-rows"))


