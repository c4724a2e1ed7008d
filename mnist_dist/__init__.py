"""mnist-dist: distributed batch scoring of handwritten digits on Dask."""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

__version__ = "0.1.0"


def installed_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in `packages`; None for a missing one."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
