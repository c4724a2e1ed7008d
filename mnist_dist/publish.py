"""Outputs that appear whole or not at all, on a local disk or on object storage.

An output folder (a store, a split, a model folder, an export) is built aside and only then put
in place. On disk that is one rename (`atomic.swap_into_place`). Object storage has no rename:
the folder is written under a temporary key beside its target, then moved there file by file
with its `marker` file (the one readers check: a store's root `zarr.json`, a model folder's
`manifest.json`) moved last, so a reader never takes a half-moved folder for a whole one.
A replaced output loses its marker first, then the rest of it.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from mnist_dist.atomic import swap_into_place, temporary_sibling
from mnist_dist.locations import is_url, local_path

log = logging.getLogger(__name__)


def exists(location: str | Path) -> bool:
    """True when a file or folder is at the local path or URL `location`."""
    where = str(location)
    if not is_url(where):
        return Path(local_path(where)).exists()
    fs, path = fsspec.core.url_to_fs(where)
    return bool(fs.exists(path))


def temporary_location(target: str | Path) -> str:
    """A fresh, unused path or URL beside `target` (same folder, bucket or file system)."""
    where = str(target)
    if not is_url(where):
        return str(temporary_sibling(Path(local_path(where))))
    protocol, path = where.rstrip("/").split("://", 1)
    parent, _, name = path.rpartition("/")
    return f"{protocol}://{parent}/.{name}.tmp-{secrets.token_hex(4)}"


def move_tree(fs: Any, source: str, target: str, marker: str) -> None:
    """Move every file under `source` to the same place under `target`, `marker` last.

    File by file: a recursive move also copies the folder's own marker object, which some
    servers (SeaweedFS) list but cannot copy.
    """
    files = sorted(fs.find(source), key=lambda f: f == f"{source}/{marker}")
    for file in files:
        fs.mv(file, target + file[len(source):])


def replace_folder(source: str, target: str, marker: str) -> None:
    """Put the complete output at `source` in the place of `target` (same file system): a
    rename on disk; on object storage the old output's `marker` goes first, then the rest of
    it, then `source` is moved in with its `marker` last."""
    if not is_url(target):
        swap_into_place(Path(local_path(source)), Path(local_path(target)))
        return
    fs, path = fsspec.core.url_to_fs(target)
    _, staged = fsspec.core.url_to_fs(source)
    path = path.rstrip("/")
    with contextlib.suppress(FileNotFoundError):
        fs.rm(f"{path}/{marker}")
    if fs.exists(path):
        fs.rm(path, recursive=True)
    move_tree(fs, staged.rstrip("/"), path, marker)


def remove_folder(location: str) -> None:
    """Delete whatever is at the path or URL `location`, if anything."""
    if not is_url(location):
        path = Path(local_path(location))
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return
    fs, path = fsspec.core.url_to_fs(location)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def upload_folder(local: Path, target: str, marker: str) -> None:
    """Put the local folder `local` at the URL `target`, replacing what is there (see the
    module docstring); the temporary key is removed whatever happens."""
    staged = temporary_location(target)
    fs, key = fsspec.core.url_to_fs(staged)
    try:
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            fs.put_file(str(file), f"{key}/{file.relative_to(local).as_posix()}")
        replace_folder(staged, target, marker)
    finally:
        remove_folder(staged)


@contextlib.contextmanager
def built_aside(target: str | Path, marker: str) -> Iterator[Path]:
    """A fresh local folder path (not yet created) to build the output `target` in; once the
    block succeeds, it replaces `target` (a path or URL) whole. Nothing is left on failure."""
    where = str(target)
    if not is_url(where):
        Path(local_path(where)).parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_location(where)
        try:
            yield Path(tmp)
            replace_folder(tmp, where, marker)
        finally:
            remove_folder(tmp)
        return
    with tempfile.TemporaryDirectory(prefix="mnist-dist-") as folder:
        built = Path(folder) / "output"
        yield built
        upload_folder(built, where, marker)
    log.info("uploaded to %s", where)
