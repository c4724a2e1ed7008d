"""A split with missing chunks is refused before scoring, naming them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from distributed import Client

from mnist_dist.data.splits import check_complete, open_split
from mnist_dist.errors import DataError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.run_state import RUN_FILE
from mnist_dist.scoring.graph import score_graph
from mnist_dist.scoring.spec import ScoreJob


@pytest.fixture()
def holed_store(small_store: Path, tmp_path: Path) -> Path:
    """A copy of the small store (600 test rows in 250-row chunks) without two chunks."""
    store = tmp_path / "holed.zarr"
    shutil.copytree(small_store, store)
    (store / "test" / "images" / "c" / "1" / "0").unlink()
    (store / "test" / "labels" / "c" / "2").unlink()
    return store


def test_missing_chunks_are_named(holed_store: Path, small_store: Path) -> None:
    with pytest.raises(DataError, match=r"test/images is missing 1 chunk\(s\): c/1/0; expected"):
        check_complete(open_split(str(holed_store), "test"))
    chunk = Path("test", "images", "c", "1", "0")
    shutil.copy(small_store / chunk, holed_store / chunk)
    with pytest.raises(DataError, match=r"test/labels is missing 1 chunk\(s\): c/2; expected"):
        check_complete(open_split(str(holed_store), "test"))


def test_scoring_refuses_a_split_with_a_missing_chunk(
    holed_store: Path, small_models: Path, local_client: Client, tmp_path: Path
) -> None:
    job = ScoreJob(store=str(holed_store), run_dir=tmp_path / "run",
                   models=ModelRef.from_directory(small_models))
    with pytest.raises(DataError, match=r"c/1/0"):
        score_graph(local_client, job, show_progress=False)
    assert not (tmp_path / "run" / RUN_FILE).exists()  # refused before the run started


def test_a_complete_split_passes(small_store: Path) -> None:
    check_complete(open_split(str(small_store), "test"))
    check_complete(open_split(str(small_store), "train"))
