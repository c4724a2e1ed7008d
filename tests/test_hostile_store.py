"""A store whose Zarr metadata is hostile or broken is one `error:` line and exit code 3 from
`jobs.score`, never a traceback, a hang or a run that starts: unknown codec, impossible chunk
shapes and fill values, JSON that is not JSON or nested beyond any parser, a chunk-key separator
that climbs out of the store, and shapes the stored data does not have."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from distributed import Client

from jobs import score as score_job
from mnist_dist.data.splits import grid_indices, missing_chunks, open_split
from mnist_dist.errors import EXIT_CODES, DataError

Edit = Callable[[dict[str, Any]], None]


def chunk_shape(shape: list[int]) -> Edit:
    return lambda meta: meta["chunk_grid"]["configuration"].__setitem__("chunk_shape", shape)


EDITS: dict[str, Edit] = {
    "unknown codec": lambda meta: meta["codecs"].__setitem__(0, {"name": "no-such-codec"}),
    "chunk shape 0": chunk_shape([0, 784]),
    "negative chunk shape": chunk_shape([-5, 784]),
    "fill value 300 for uint8": lambda meta: meta.__setitem__("fill_value", 300),
    "fill value NaN for uint8": lambda meta: meta.__setitem__("fill_value", "NaN"),
    "separator ../": lambda meta: meta["chunk_key_encoding"]["configuration"].__setitem__(
        "separator", "../"),
    "shape 1e30": lambda meta: meta.__setitem__("shape", [10**30, 784]),
}
RAW = {
    "not JSON": "{not json",
    "JSON nested 10^5 deep": "[" * 100_000 + "]" * 100_000,
}
MESSAGES = {
    "unknown codec": "unreadable Zarr metadata (Unknown codec",
    "chunk shape 0": "chunk shape [0, 784]",
    "negative chunk shape": "unreadable Zarr metadata",
    "fill value 300 for uint8": "unreadable Zarr metadata",
    "fill value NaN for uint8": "unreadable Zarr metadata",
    "separator ../": "unreadable Zarr metadata",
    "shape 1e30": "images but 600 labels",
    "not JSON": "unreadable Zarr metadata",
    "JSON nested 10^5 deep": "unreadable Zarr metadata",
}


def hostile_copy(small_store: Path, folder: Path, case: str) -> Path:
    """A copy of the small store whose test/images metadata is the hostile `case`."""
    store = folder / "hostile.zarr"
    shutil.copytree(small_store, store)
    meta = store / "test" / "images" / "zarr.json"
    if case in RAW:
        meta.write_text(RAW[case])
    else:
        document = json.loads(meta.read_text())
        EDITS[case](document)
        meta.write_text(json.dumps(document))
    return store


def score(store: Path, models: Path, out: Path, capsys: pytest.CaptureFixture[str]
          ) -> tuple[int, list[str]]:
    """`jobs.score` as a user runs it; its exit code and stderr lines."""
    code = score_job.main(["--store", str(store), "--models", str(models), "--out", str(out),
                           "--no-progress"])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", [*EDITS, *RAW])
def test_hostile_metadata_is_one_error_line_and_nothing_starts(
    case: str, small_store: Path, small_models: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = hostile_copy(small_store, tmp_path, case)
    code, lines = score(store, small_models, tmp_path / "run", capsys)
    errors = [line for line in lines if line.startswith("error:")]
    assert code == EXIT_CODES[DataError], lines
    assert len(errors) == 1 and MESSAGES[case] in errors[0], lines
    assert "hostile.zarr/test" in errors[0]  # names the split (or its array) at fault
    assert not (tmp_path / "run").exists()  # refused before the run started


def test_a_shape_the_data_does_not_have_is_refused_at_once(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "huge.zarr"
    shutil.copytree(small_store, store)
    for name, shape in (("images", [10**12, 784]), ("labels", [10**12])):
        meta = store / "test" / name / "zarr.json"
        document = json.loads(meta.read_text())
        document["shape"] = shape
        meta.write_text(json.dumps(document))
    started = time.monotonic()
    code, lines = score(store, small_models, tmp_path / "run", capsys)
    assert code == EXIT_CODES[DataError], lines
    # 4 * 10^9 chunks claimed, 3 stored: counted from one listing, not enumerated.
    assert "test/images is missing 3999999997 chunk(s): c/3/0, c/4/0" in lines[-1]
    assert time.monotonic() - started < 60  # a bound on a hang, not a speed claim


def test_missing_chunks_counts_from_the_listing_and_names_the_first(small_store: Path) -> None:
    split = open_split(str(small_store), "test")
    assert missing_chunks(split.images) == (0, [])
    assert list(grid_indices((2, 3))) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]


@pytest.mark.parametrize(("shape", "message"), [
    ([600, 784], "chunk(s) c/0/0 cannot be decoded"),
    ([100, 784], "missing 3 chunk(s): c/3/0, c/4/0, c/5/0"),
    ([250, 392], "missing 3 chunk(s): c/0/1, c/1/1, c/2/1"),
], ids=["larger than stored", "smaller than stored", "split columns"])
def test_legal_chunk_metadata_that_the_stored_chunks_do_not_match_is_one_data_error(
    shape: list[int], message: str, small_store: Path, small_models: Path,
    local_client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "hostile.zarr"
    shutil.copytree(small_store, store)
    meta = store / "test" / "images" / "zarr.json"
    document = json.loads(meta.read_text())
    chunk_shape(shape)(document)
    meta.write_text(json.dumps(document))
    code = score_job.main(["--store", str(store), "--models", str(small_models),
                           "--out", str(tmp_path / "run"), "--no-progress",
                           "--scheduler", local_client.scheduler.address])
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert code == EXIT_CODES[DataError], lines  # the data's fault, not a worker's (9)
    assert len(errors) == 1 and message in errors[0] and "hostile.zarr/test/images" in errors[0]
    assert not any("Traceback" in line for line in lines)
