"""Report figures as PNG bytes (matplotlib, Agg): deterministic, no pyplot state, no network.

Every figure is drawn from a few small arrays (10 digits, a 10x10 matrix, a handful of batch
sizes), so drawing time does not depend on how many images were scored.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
import numpy as np
import PIL.Image
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mnist_dist.report.analysis import LABELS, Crossover, Series

COLORS = {"knn": "#3b6fb6", "mlp": "#e07b39"}
DIFF_COLORS = ("#c0392b", "#2e8b57")  # MLP behind, MLP ahead
DPI = 110
# PNG text chunks would carry the matplotlib version; the report must re-render byte-identical.
PNG_METADATA: dict[str, Any] = {"Software": None}
STYLE: dict[Any, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.7,
    "axes.axisbelow": True,
    "axes.titleweight": "bold",
    "legend.frameon": False,
}


@contextmanager
def figure(
    width: float, height: float, dpi: int = DPI, style: dict[Any, Any] | None = None,
    **margins: float,
) -> Iterator[Figure]:
    """A fresh Agg figure, in the report style unless `style` is given (no pyplot: nothing
    global to clean up).

    Fixed `margins` (`subplots_adjust` fractions) rather than a layout engine: twice as fast.
    """
    with matplotlib.rc_context(STYLE if style is None else style):
        fig = Figure(figsize=(width, height), dpi=dpi)
        FigureCanvasAgg(fig)  # Agg explicitly, without touching pyplot's global backend
        fig.subplots_adjust(**margins)
        yield fig


def png_bytes(fig: Figure, dpi: int = DPI, tight: bool = False) -> bytes:
    """The figure as PNG bytes without version or time metadata (`tight`: cropped to what
    is drawn)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata=PNG_METADATA, facecolor="white",
                bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def accuracy_chart(per_class: dict[str, list[float | None]], diff: list[float | None]) -> bytes:
    """Grouped bars of per-digit accuracy (%) per model, and MLP − KNN (points) below."""
    digits = np.arange(10)
    with figure(7.2, 4.4, left=0.1, right=0.98, top=0.93, bottom=0.11, hspace=0.1) as fig:
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1.3))
        width = 0.8 / len(per_class)
        for i, (name, values) in enumerate(per_class.items()):
            heights = [np.nan if v is None else 100 * v for v in values]
            top.bar(digits + (i - (len(per_class) - 1) / 2) * width, heights, width,
                    label=LABELS.get(name, name), color=COLORS.get(name))
        top.set_ylim(0, 100.5)  # from zero: bar lengths compare; the panel below the gaps
        top.set_ylabel("accuracy (%)")
        top.set_title("Per-digit accuracy", loc="left")
        top.legend(ncols=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
        draw_differences(bottom, diff)
        fig_bytes = png_bytes(fig)
    return fig_bytes


def draw_differences(ax: Axes, diff: list[float | None]) -> None:
    """Bars of MLP − KNN per digit in percentage points, green where the MLP is ahead."""
    points = [0.0 if d is None else 100 * d for d in diff]
    colors = [DIFF_COLORS[p >= 0] for p in points]
    ax.bar(np.arange(10), points, 0.6, color=colors)
    ax.axhline(0, color="#555", linewidth=0.8)
    ax.set_ylabel("MLP − KNN\n(points)")
    ax.set_xticks(np.arange(10))
    ax.set_xlabel("digit")


def throughput_chart(series: dict[str, Series], cross: Crossover) -> bytes:
    """Log-log images/s and ms/image against batch size, both models, crossover marked."""
    # Rates near the float limit are legal; the log axes' transforms overflow on them, harmlessly.
    with figure(9.2, 3.6, left=0.08, right=0.98, top=0.91, bottom=0.14, wspace=0.25) as fig, \
            np.errstate(over="ignore", invalid="ignore"):
        speed, latency = fig.subplots(1, 2)
        for name, s in series.items():
            style = {"color": COLORS.get(name), "marker": "o", "label": LABELS.get(name, name)}
            speed.plot(s.batch_sizes, s.images_per_second, **style)
            latency.plot(s.batch_sizes, s.ms_per_image, **style)
        for ax, label in ((speed, "images / s"), (latency, "ms / image")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
            if cross.estimate is not None:
                ax.axvline(cross.estimate, color="#777", linestyle="--", linewidth=1,
                           label=f"crossover ≈ {cross.estimate:,.0f}")
        speed.set_title("Throughput")
        latency.set_title("Time per image")
        speed.legend()
        fig_bytes = png_bytes(fig)
    return fig_bytes


def digit_png(pixels: np.ndarray) -> bytes:
    """A 28x28 grayscale PNG (ink dark on white) of one digit, uint8 pixels (784,)."""
    image = io.BytesIO()
    ink = 255 - np.asarray(pixels, dtype=np.uint8).reshape(28, 28)
    PIL.Image.fromarray(ink).save(image, format="PNG")
    return image.getvalue()
