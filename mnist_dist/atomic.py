"""Atomic file-system writes: outputs appear whole or not at all, and old ones survive failures."""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from mnist_dist.errors import StoreExistsError

log = logging.getLogger(__name__)


def output_mode(path: Path) -> int:
    """Permission bits for the file written at `path`: an existing file's own, else those the
    umask gives a new file (mkstemp's 0600 would hide outputs from their readers)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (worker threads write
    files concurrently; os.umask can only read it by setting it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)  # briefly the strictest mask, never a looser one
    os.umask(umask)
    return umask


def write_temporary(path: Path, data: bytes) -> Path:
    """`data` written and synced to a new temporary file beside `path`, with `output_mode`
    (path)'s permissions; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = output_mode(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`."""
    if path.is_dir():  # os.replace would fail only after the work that made `data`
        raise StoreExistsError(f"{path} is a folder, where a file is to be written; "
                               "remove it or write elsewhere")
    tmp = write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_new(path: Path, data: bytes) -> None:
    """Write `data` to a new file `path` atomically; FileExistsError when `path` exists and
    holds other bytes (identical bytes are a retried task's own output and are kept)."""
    tmp = write_temporary(path, data)
    try:
        try:
            os.link(tmp, path)  # unlike os.replace, never replaces an existing file
        except FileExistsError:
            if not path.is_file() or path.read_bytes() != data:
                raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write `document` as indented JSON to `path` atomically."""
    write_bytes_atomic(path, (json.dumps(document, indent=2) + "\n").encode())


def temporary_sibling(path: Path) -> Path:
    """A fresh, unused path beside `path` for building an output before renaming it in."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")


def swap_into_place(tmp: Path, path: Path) -> None:
    """Rename `tmp` to `path`; an existing `path` is moved aside first and deleted after."""
    if not path.exists():
        os.rename(tmp, path)
        return
    old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(old, path)
        raise
    remove_quietly(old)


def remove_quietly(path: Path) -> None:
    """Delete a file or directory tree; a failure is only logged (the new output is in place)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as exc:
        log.warning("could not remove the replaced output %s: %s", path, exc)
