"""--save-preprocessed never overwrites a file the run did not create."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs import score as score_job
from mnist_dist.atomic import write_bytes_new
from mnist_dist.errors import EXIT_CODES, StoreExistsError


def user_image(path: Path) -> bytes:
    """A 40x40 grey digit-like PNG at `path`; returns its bytes."""
    pixels = np.zeros((40, 40), np.uint8)
    pixels[8:32, 18:22] = 255
    Image.fromarray(pixels).save(path)
    return path.read_bytes()


def test_save_into_the_images_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    original = user_image(scans / "7_a.png")
    code = score_job.main([
        "--images", str(scans), "--save-preprocessed", str(scans),
        "--models", str(tmp_path / "models"), "--store", str(tmp_path / "store.zarr"),
        "--out", str(tmp_path / "run"),
    ])
    err = capsys.readouterr().err
    assert code == EXIT_CODES[StoreExistsError]
    assert err.startswith(f"error: --save-preprocessed {scans} already holds 7_a.png;")
    assert len(err.splitlines()) == 1
    assert (scans / "7_a.png").read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scans"]  # nothing built or trained


def test_save_to_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    user_image(scans / "1.png")
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code = score_job.main(["--images", str(scans), "--save-preprocessed", str(target),
                           "--models", str(tmp_path / "models"), "--out", str(tmp_path / "r")])
    assert code == EXIT_CODES[StoreExistsError]
    assert "is a file; expected a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_worker_write_never_replaces_other_bytes(tmp_path: Path) -> None:
    path = tmp_path / "3.png"
    path.write_bytes(b"user's file")
    with pytest.raises(FileExistsError):
        write_bytes_new(path, b"28x28 digit")
    assert path.read_bytes() == b"user's file"
    write_bytes_new(tmp_path / "4.png", b"digit")
    write_bytes_new(tmp_path / "4.png", b"digit")  # a retried task rewrites its own output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.png", "4.png"]
