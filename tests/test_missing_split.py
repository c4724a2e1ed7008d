"""A split that is nowhere is named before anything is built or trained, from any folder (a
notebook's working directory is rarely the repository's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mnist_dist as md
from mnist_dist.errors import EXIT_CODES, StoreNotFoundError


def score(cwd: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.score", "--no-progress", *flags],
                          cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_a_split_that_no_built_store_holds_is_named_before_building_anything(
    tmp_path: Path, data_home: Path,
) -> None:
    done = score(tmp_path, "--split", "new", "--out", "r")
    assert done.returncode == EXIT_CODES[StoreNotFoundError], done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "split 'new' not found" in lines[0]
    assert str(data_home / "mnist.zarr") in lines[0] and "--store" in lines[0]
    assert "building" not in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run folder
    assert sorted(p.name for p in data_home.iterdir()) == []  # no store or models


def test_a_store_without_the_split_is_refused_before_missing_models_are_trained(
    tmp_path: Path, small_store: Path,
) -> None:
    store = tmp_path / "mnist.zarr"
    shutil.copytree(small_store, store)
    with pytest.raises(StoreNotFoundError, match=r"split 'new' not found in the store \(its "
                                                 r"groups: test, train\); add it with jobs.ingest"):
        md.score(md.ScoreSpec(store=str(store), models=str(tmp_path / "models"), split="new",
                              out=tmp_path / "run"))
    assert not (tmp_path / "models").exists() and not (tmp_path / "run").exists()
