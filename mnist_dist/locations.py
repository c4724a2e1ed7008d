"""Where things live: local paths and fsspec URLs (`s3://…`, `memory://…`) for stores and models,
and whether a URL's scheme has a back end installed here."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# fsspec protocols whose data stays on this machine: memory, local files, and archives or
# caches of a target that is itself named (zip://…::/local.zip, simplecache::s3://…).
LOCAL_PROTOCOLS = frozenset({"file", "local", "memory", "zip", "tar", "libarchive", "data",
                             "reference", "dir", "simplecache", "filecache", "blockcache",
                             "cached"})
# fsspec's own schemes named in a message about an unknown one (all: fsspec.available_protocols()).
BUILT_IN_SCHEMES = ("file", "memory", "http", "https", "ftp", "sftp", "zip")


def is_url(location: str) -> bool:
    """True for fsspec URLs such as `s3://…` (`file://` counts as a plain path)."""
    return "://" in location and not location.startswith("file://")


def url_protocols(location: str) -> list[str]:
    """The fsspec protocols of a URL, one per link of a chain (`simplecache::s3://…`); none
    for a plain path."""
    if "://" not in location:
        return []
    links = location.split("::")
    return [link.split("://", 1)[0] if "://" in link else link
            for i, link in enumerate(links) if "://" in link or i < len(links) - 1]


def is_remote(location: str) -> bool:
    """True for URLs whose data lives on a server (s3://, http://, gs://…, also behind a
    cache or inside an archive there)."""
    return is_url(location) and any(p not in LOCAL_PROTOCOLS for p in url_protocols(location))


def scheme_problem(location: str) -> str | None:
    """Why no installed fsspec back end opens the URL `location` (an unknown scheme, one whose
    package is not installed), naming the fix; None for a plain path or a URL one opens."""
    import fsspec

    for protocol in url_protocols(location):
        try:
            if not protocol:
                raise ValueError("no scheme")
            fsspec.get_filesystem_class(protocol)
        except ValueError:
            return unknown_scheme(protocol)
        except Exception as exc:  # noqa: BLE001 - ImportError, or what a broken back end raises
            return missing_back_end(protocol, exc)
    return None


def unknown_scheme(protocol: str) -> str:
    """The message for a URL scheme fsspec does not know: the schemes it knows here."""
    import fsspec

    lower = protocol.lower()
    hint = f"; did you mean {lower}://?" if lower != protocol and lower in \
        fsspec.available_protocols() else ""
    return (f"unknown URL scheme {protocol + '://'!r} (installed here: "
            f"{', '.join(installed_schemes())} and fsspec's own {', '.join(BUILT_IN_SCHEMES)}, "
            f"…){hint}")


def installed_schemes() -> list[str]:
    """The URL schemes of the fsspec back ends installed from other packages (s3fs's s3…)."""
    from importlib.util import find_spec

    from fsspec.registry import known_implementations

    return sorted(protocol for protocol, impl in known_implementations.items()
                  if not impl["class"].startswith("fsspec.")
                  and find_spec(impl["class"].split(".")[0]) is not None)


def missing_back_end(protocol: str, exc: BaseException) -> str:
    """The message for a URL scheme whose back end fails to load: the package to install."""
    missing = next((e.name for e in (exc.__cause__, exc) if isinstance(e, ImportError) and e.name),
                   None)
    if missing:
        package = missing.split(".")[0].replace("_", "-")
        return f"{protocol}:// needs {package}, which is not installed: pip install {package}"
    reason = " ".join(str(exc).split())[:200]
    return f"the back end of {protocol}:// cannot be loaded ({type(exc).__name__}: {reason})"


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
