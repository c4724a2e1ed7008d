"""Outputs get the permissions the umask gives new files, and replaced files keep theirs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnist_dist.atomic import write_bytes_atomic, write_bytes_new, write_json_atomic


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_new_outputs_get_the_umask_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        write_bytes_atomic(tmp_path / "a.bin", b"a")
        write_bytes_new(tmp_path / "b.png", b"b")
        write_json_atomic(tmp_path / "c.json", {"c": 1})
    finally:
        os.umask(old)
    for name in ("a.bin", "b.png", "c.json"):
        assert mode_of(tmp_path / name) == 0o666 & ~umask, name


def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022: None) -> None:
    for mode in (0o640, 0o604, 0o600):
        path = tmp_path / f"report-{mode:o}.json"
        path.write_text("{}")
        path.chmod(mode)
        write_json_atomic(path, {"new": True})
        assert mode_of(path) == mode
        assert path.read_text().startswith("{\n")


def test_no_temporary_file_is_left_behind(tmp_path: Path, umask_022: None) -> None:
    write_bytes_atomic(tmp_path / "x", b"1")
    write_bytes_atomic(tmp_path / "x", b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
