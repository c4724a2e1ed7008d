"""Where things live: local paths and fsspec URLs (`s3://…`, `memory://…`) for stores and models."""

from __future__ import annotations

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
