"""Heatmap tables: each cell of a (10, 10) table shaded by a matplotlib colormap, as inline CSS.

A table rather than a picture: the numbers stay text (selectable, read by tests and screen
readers) and drawing 100 annotated cells costs nothing.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import to_hex

DARK = 0.55  # share of the largest shade above which a cell's text turns white


def cell_styles(shade: np.ndarray, cmap: str) -> np.ndarray:
    """CSS `background` and text `color` of each cell, shaded from 0 to the largest value
    of `shade` (float (r, c) -> str (r, c))."""
    top = float(np.max(shade)) or 1.0
    colours = matplotlib.colormaps[cmap](np.clip(shade / top, 0.0, 1.0))
    styles = np.empty(shade.shape, dtype=object)
    for index, value in np.ndenumerate(shade):
        text = "#fff" if value > DARK * top else "#222"
        styles[index] = f"background:{to_hex(colours[index])};color:{text}"
    return styles
