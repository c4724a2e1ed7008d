"""Tests of `python -m jobs.prepare`: in-process via `main([...])` and once as a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs import prepare
from mnist_dist.data.sources import vendored_dir
from mnist_dist.data.store import store_info

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    """A small valid `.npz` source: 50 train and 20 test random digits."""
    rng = np.random.default_rng(2)
    path = tmp_path / "small.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 50),
        x_test=rng.integers(0, 256, (20, 784), dtype=np.uint8),
        y_test=rng.integers(0, 10, 20),
    )
    return path


def test_bad_source_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"not a zip")
    code = prepare.main(["--source", str(bad), "--store", str(tmp_path / "m.zarr")])
    err = capsys.readouterr().err
    assert code == 3
    assert err.count("\n") == 1
    assert err.startswith(f"error: {bad}: not a readable .npz archive")
    assert not (tmp_path / "m.zarr").exists()


def test_build_reuse_refuse_force(
    npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "m.zarr"
    args = ["--source", str(npz), "--store", str(store), "--chunk-rows", "16"]
    assert prepare.main([*args, "--split", "canonical"]) == 0
    assert capsys.readouterr().out == f"store {store}: n_train=50 n_test=20 split=canonical\n"
    assert prepare.main([*args, "--split", "canonical"]) == 0
    assert prepare.main(args) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"error: store {store} exists with different provenance")
    assert err.rstrip().endswith("pass --force to rebuild")
    assert prepare.main([*args, "--force"]) == 0
    assert store_info(store)["split"]["name"] == "seed"
    assert store_info(store)["n_train"] == 56


def test_bad_chunk_rows_is_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--chunk-rows", "0", "--store", str(tmp_path / "m.zarr")])
    assert exit_info.value.code == 2


def test_download_flag_uses_downloaded_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake_download(dest: Path) -> Path:
        shutil.copytree(vendored_dir(), dest, ignore=shutil.ignore_patterns("SHA256SUMS*"))
        return dest

    monkeypatch.setattr("mnist_dist.preparation.store.download", fake_download)
    dest, store = tmp_path / "dl", tmp_path / "m.zarr"
    assert prepare.main(["--download", str(dest), "--store", str(store),
                         "--split", "canonical", "--chunk-rows", "10000"]) == 0
    assert store_info(store)["source"] == str(dest)
    assert "n_train=60000 n_test=10000" in capsys.readouterr().out


def test_subprocess_vendored(tmp_path: Path) -> None:
    store = tmp_path / "vendored.zarr"
    result = subprocess.run(
        [sys.executable, "-m", "jobs.prepare", "--store", str(store)],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"store {store}: n_train=56000 n_test=14000 split=seed\n"
    info = store_info(store)
    assert (info["source"], info["chunk_rows"]) == ("vendored", 2000)
