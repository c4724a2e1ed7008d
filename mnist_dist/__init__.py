"""mnist-dist: distributed batch scoring of handwritten digits on Dask."""

from __future__ import annotations

__version__ = "0.1.0"
