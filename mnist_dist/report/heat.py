"""Figures drawn by the page itself, as inline CSS: heatmap tables (each cell shaded by a
matplotlib colormap), data bars behind table cells and small histograms.

Tables rather than pictures: the numbers stay text (selectable, read by tests and screen
readers) and drawing them costs nothing.
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


def log_shade(counts: np.ndarray) -> np.ndarray:
    """The shade of counts on a log scale, log10(1 + count); a negative count (a corrupt
    report) shades as zero."""
    return np.log10(1 + np.clip(counts, 0, None))


def bar_style(value: float, largest: float, colour: str) -> str:
    """CSS of a table cell with a data bar behind its text: `value` as a share of `largest`."""
    share = 100 * max(0.0, value) / largest if largest > 0 else 0.0
    return f"background:linear-gradient(90deg,{colour} {share:.1f}%,transparent {share:.1f}%)"


def histogram_heights(counts: np.ndarray) -> list[float]:
    """Bar heights in % of the tallest for `counts` (k,), on a log scale (1 + count) so that
    a bin of one image stays visible beside a bin of thousands."""
    logs = log_shade(np.asarray(counts, dtype=np.float64))
    top = float(logs.max(initial=0.0)) or 1.0
    return [round(100 * h / top, 1) for h in logs]
