"""Where things live: local paths and fsspec URLs (`s3://…`, `memory://…`) for stores and models."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def is_url(location: str) -> bool:
    """True for fsspec URLs such as `s3://…` (`file://` counts as a plain path)."""
    return "://" in location and not location.startswith("file://")


def local_path(location: str) -> str:
    """A plain path for `file://` URLs (Zarr and NumPy want plain paths); others unchanged."""
    return location.removeprefix("file://")


def absolute(location: str) -> str:
    """Local paths made absolute (workers may run elsewhere); URLs unchanged."""
    return location if is_url(location) else str(Path(local_path(location)).resolve())


def read_location(location: str) -> bytes:
    """Bytes of a local file or an fsspec URL."""
    if is_url(location):
        import fsspec

        with fsspec.open(location, "rb") as f:
            return f.read()
    return Path(local_path(location)).read_bytes()


def inside(location: str, folder: str) -> bool:
    """True when the path or URL `location` is `folder` or lies below it."""
    if is_url(location):
        return f"{location.rstrip('/')}/".startswith(f"{folder.rstrip('/')}/")
    path, parent = Path(local_path(location)).resolve(), Path(local_path(folder)).resolve()
    return path == parent or parent in path.parents


def holds_anything(location: str) -> bool:
    """True when something other than an empty local folder is at the path or URL `location`
    (a symbolic link counts, wherever it points)."""
    if is_url(location):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return bool(fs.exists(path))
    path = Path(local_path(location))
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return True
    return path.is_dir() and any(path.iterdir())


def folder_stamp(location: str) -> str:
    """SHA-256 of the listing of the folder at a path or URL (each file's name, size, and
    modification time and inode, or ETag): it changes whenever any of its files is rewritten,
    replaced, added or lost."""
    entries = []
    if is_url(location):
        import fsspec

        fs, root = fsspec.core.url_to_fs(location)
        for name, info in sorted(fs.find(root, detail=True).items()):
            version = info.get("ETag") or info.get("LastModified") or info.get("mtime")
            entries.append(f"{name[len(root):]}\t{info.get('size')}\t{version}")
    else:
        root = Path(local_path(location))
        for folder, _, files in sorted(os.walk(root)):
            for file in sorted(files):
                path = Path(folder, file)
                st = path.lstat()
                entries.append(f"{path.relative_to(root)}\t{st.st_size}\t{st.st_mtime_ns}\t"
                               f"{st.st_ino}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()
