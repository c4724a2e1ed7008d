"""Standardisation parameters shared by both models (scikit-learn `StandardScaler` semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scaler:
    """Per-pixel mean and scale; `scale` is 1 where the variance is 0, as in scikit-learn.

    mean, scale : float64 arrays of shape (784,)
    """

    mean: np.ndarray
    scale: np.ndarray

    def __post_init__(self) -> None:
        for name in ("mean", "scale"):
            value = getattr(self, name)
            if value.shape != (784,) or value.dtype != np.float64:
                raise ValueError(
                    f"Scaler.{name} must be float64 of shape (784,); "
                    f"got {value.dtype} {value.shape} instead"
                )

    @classmethod
    def from_moments(cls, mean: np.ndarray, var: np.ndarray) -> Scaler:
        """Build from per-pixel mean and (population) variance."""
        scale = np.sqrt(np.asarray(var, dtype=np.float64))
        scale[scale == 0.0] = 1.0
        return cls(np.asarray(mean, dtype=np.float64), scale)

    def transform(self, images: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Standardise raw pixels of shape (n, 784) into `dtype`."""
        return ((images.astype(np.float64) - self.mean) / self.scale).astype(dtype, copy=False)
