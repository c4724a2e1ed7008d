"""Deformed digits at scale (infiMNIST / MNIST-8M style): pure NumPy/SciPy, no Dask.

Expanded digit `i` (global index, 0-based) is a deformation of source digit `i mod n_source`
(the store's test split) and keeps its label. Every random number digit `i` uses comes from
one counter-based stream, so any row range can be regenerated alone, byte for byte:

    draws(i) = Generator(Philox(key=seed, counter=i * 394)).random(1576)

i.e. positions [1576 i, 1576 (i + 1)) of the Philox stream keyed by `seed` (394 Philox blocks
of four 64-bit words per digit; one float64 in [0, 1) per word). The draws are used as:

    draws[0:8]     affine: u0 rotation, u1 scale, u2 shear, u3 x shift, u4 y shift (u5..u7 unused)
    draws[8:792]   elastic x-displacement noise, 28x28
    draws[792:1576] elastic y-displacement noise, 28x28

Deformation of one 28x28 digit with `DeformParams` (defaults in brackets), each parameter drawn
uniformly in its symmetric range:

- rotation angle in ±`rotation_deg` [±10°] about the image centre (13.5, 13.5);
- isotropic scale in 1 ± `scale` [0.9-1.1];
- horizontal shear x += h·y with h in ±`shear` [±0.15];
- shift (tx, ty) in ±`shift_px` [±1 px] each;
- elastic distortion (Simard, Steinkraus & Platt, ICDAR 2003): noise uniform in [-1, 1] per
  pixel and axis, smoothed by a Gaussian of standard deviation `elastic_sigma` [4 px] (reflecting
  borders) and multiplied by `elastic_alpha` [8 px; displacement s.d. about 0.4 px], added to
  the sampling position. (Simard's α = 34 is too strong here: the project's MLP scores ~61 %
  on that elastic distortion alone, ~88 % on these defaults, ~97 % on the originals.)

Output pixel p samples the source at c + A⁻¹(p − c − t) + d(p) (A = rotation·scale·shear,
c the centre, t the shift, d the elastic field) with bilinear interpolation, zero outside the
28x28 grid, then rounds to uint8. All arithmetic is elementwise float64 per digit, or a fixed-shape
28x28 matrix product per digit (the Gaussian smoothing), so a digit's pixels do not depend on
which other digits share its batch: the result is identical for any partitioning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from mnist_dist.errors import SpecError

SIDE = 28
N_PIXELS = SIDE * SIDE
AFFINE_DRAWS = 8
DRAWS_PER_DIGIT = AFFINE_DRAWS + 2 * N_PIXELS  # 1576
PHILOX_WORDS_PER_BLOCK = 4
BLOCKS_PER_DIGIT = DRAWS_PER_DIGIT // PHILOX_WORDS_PER_BLOCK  # 394
# Digits deformed together: small enough for the float64 temporaries to stay in cache (measured
# fastest at 32-64 rows), so the working set is ~8 MB whatever the partition size.
BATCH_ROWS = 64
PAD = 2  # zero border around a digit for bilinear sampling
CENTRE = (SIDE - 1) / 2.0
GRID_Y, GRID_X = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) - CENTRE  # pixel offsets from c


@dataclass(frozen=True)
class DeformParams:
    """Ranges of the random deformation (see the module docstring); recorded in store attrs."""

    rotation_deg: float = 10.0
    scale: float = 0.1
    shear: float = 0.15
    shift_px: float = 1.0
    elastic_alpha: float = 8.0
    elastic_sigma: float = 4.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not np.isfinite(value) or value < 0:
                raise SpecError(f"{name} must be a finite number >= 0; got {value} instead")
        if self.scale >= 1:
            raise SpecError(f"scale must be < 1 (scale factor 1 ± scale); got {self.scale}")
        if self.elastic_sigma == 0 and self.elastic_alpha != 0:
            raise SpecError("elastic_sigma must be > 0 when elastic_alpha is not 0; got 0")

    def as_dict(self) -> dict[str, float]:
        """The parameters as a JSON-ready dict."""
        return {key: float(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DeformParams:
        """Inverse of `as_dict`."""
        return cls(**{key: float(value) for key, value in values.items()})


def digit_draws(seed: int, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """The uniform draws, float64 (stop - start, 1576), of digits start..stop-1 under `seed`."""
    if seed < 0 or not 0 <= start <= stop:
        raise ValueError(f"need seed >= 0 and 0 <= start <= stop; got {seed}, {start}, {stop}")
    if out is None:
        out = np.empty((stop - start, DRAWS_PER_DIGIT))
    bits = np.random.Philox(key=seed, counter=start * BLOCKS_PER_DIGIT)
    return np.random.Generator(bits).random(out=out)


@lru_cache(maxsize=8)
def smoothing_matrix(sigma: float) -> np.ndarray:
    """G (28, 28) float64 with G @ u = gaussian_filter1d(u, sigma, axis=0, mode="reflect")."""
    matrix = gaussian_filter1d(np.eye(SIDE), sigma, axis=0, mode="reflect")
    matrix.setflags(write=False)
    return matrix


class Workspace:
    """Buffers for deforming up to `rows` digits at once, reused from batch to batch.

    Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which pins glibc's mmap threshold at 128 KiB: every
    fresh NumPy temporary of a batch would then be a new mapping, and its page faults cost ~3x
    the arithmetic (measured). Writing into these buffers with `out=` allocates nothing per batch.
    """

    def __init__(self, rows: int = BATCH_ROWS) -> None:
        side = SIDE + 2 * PAD
        plane = (rows, SIDE, SIDE)
        self.rows = rows
        self.draws = np.empty((rows, DRAWS_PER_DIGIT))
        self.noise = np.empty((rows, 2, SIDE, SIDE))
        self.half = np.empty((rows, 2, SIDE, SIDE))
        self.x, self.y, self.px, self.py, self.tmp = (np.empty(plane) for _ in range(5))
        self.top, self.bottom, self.right = (np.empty(plane) for _ in range(3))
        self.index, self.column = np.empty(plane, np.intp), np.empty(plane, np.intp)
        self.padded = np.zeros((rows, side, side))  # the zero border is never written
        self.offsets = (np.arange(rows) * side * side)[:, None, None]


def deform_batch(
    images: np.ndarray, draws: np.ndarray, params: DeformParams,
    workspace: Workspace | None = None,
) -> np.ndarray:
    """Deform digits: images uint8 (n, 784) or (n, 28, 28), draws float64 (n, 1576) -> uint8 (n, 784).

    Row k of the result depends only on images[k] and draws[k].
    """
    n = len(images)
    images = np.asarray(images).reshape(n, SIDE, SIDE)
    if images.dtype != np.uint8 or draws.shape != (n, DRAWS_PER_DIGIT):
        raise ValueError(
            f"images must be uint8 (n, 784) and draws float64 (n, {DRAWS_PER_DIGIT}); "
            f"got {images.dtype} {images.shape} and {draws.shape} instead"
        )
    if workspace is None or workspace.rows < n:
        workspace = Workspace(n)
    sampling_positions(draws, params, workspace)
    out = np.empty((n, N_PIXELS), dtype=np.uint8)
    bilinear(images, workspace, out.reshape(n, SIDE, SIDE))
    return out


def sampling_positions(draws: np.ndarray, params: DeformParams, ws: Workspace) -> None:
    """Source coordinates sampled by every output pixel, into ws.x and ws.y [:n] (n, 28, 28)."""
    n = len(draws)
    u = 2.0 * draws[:, :AFFINE_DRAWS] - 1.0  # symmetric in [-1, 1)
    angle = np.deg2rad(params.rotation_deg) * u[:, 0]
    factor = 1.0 + params.scale * u[:, 1]
    shear = params.shear * u[:, 2]
    tx, ty = params.shift_px * u[:, 3], params.shift_px * u[:, 4]
    # libm per digit: NumPy's SIMD sin/cos may round a lane differently from its scalar tail.
    cos = np.array([math.cos(a) for a in angle.tolist()]) / factor
    sin = np.array([math.sin(a) for a in angle.tolist()]) / factor
    # A = R(angle) · factor · [[1, shear], [0, 1]];  A⁻¹ = [[1, -shear], [0, 1]] · R(-angle) / factor
    inverse = ((cos + shear * sin, sin - shear * cos), (-sin, cos))
    px, py, tmp = ws.px[:n], ws.py[:n], ws.tmp[:n]
    np.subtract(GRID_X, tx[:, None, None], out=px)
    np.subtract(GRID_Y, ty[:, None, None], out=py)
    for target, (along_x, along_y) in zip((ws.x[:n], ws.y[:n]), inverse):
        np.multiply(px, along_x[:, None, None], out=target)
        np.multiply(py, along_y[:, None, None], out=tmp)
        target += tmp
        target += CENTRE
    if params.elastic_alpha:
        smooth = smoothing_matrix(params.elastic_sigma)
        noise = ws.noise[:n]
        np.multiply(draws[:, AFFINE_DRAWS:].reshape(n, 2, SIDE, SIDE), 2.0, out=noise)
        noise -= 1.0
        # One fixed-shape 28x28 product per digit (a stacked matmul), so batching never
        # changes a digit's arithmetic.
        np.matmul(smooth, noise, out=ws.half[:n])
        np.matmul(ws.half[:n], smooth.T, out=noise)
        noise *= params.elastic_alpha
        ws.x[:n] += noise[:, 0]
        ws.y[:n] += noise[:, 1]


def bilinear(images: np.ndarray, ws: Workspace, out: np.ndarray) -> None:
    """Sample images uint8 (n, 28, 28) at (ws.x, ws.y) into out uint8 (n, 28, 28); zero outside.

    Overwrites ws.x and ws.y.
    """
    n = len(images)
    side = SIDE + 2 * PAD
    ws.padded[:n, PAD:-PAD, PAD:-PAD] = images
    flat = ws.padded.reshape(-1)
    x, y, index, column = ws.x[:n], ws.y[:n], ws.index[:n], ws.column[:n]
    top, bottom, right, floor = ws.top[:n], ws.bottom[:n], ws.right[:n], ws.tmp[:n]
    # Positions beyond the one-pixel zero ring clip onto it, where every neighbour is zero.
    for coordinate, whole in ((y, index), (x, column)):
        np.clip(coordinate, -1.0, float(SIDE), out=coordinate)
        np.floor(coordinate, out=floor)
        coordinate -= floor  # now the fractional part
        np.copyto(whole, floor, casting="unsafe")
        whole += PAD
    index *= side
    index += column
    index += ws.offsets[:n]
    for target, shift in ((top, 0), (bottom, side)):
        index += shift
        np.take(flat, index, out=target, mode="clip")
        index += 1
        np.take(flat, index, out=right, mode="clip")
        index -= 1
        right -= target
        right *= x
        target += right
    bottom -= top
    bottom *= y
    top += bottom
    np.rint(top, out=top)
    np.clip(top, 0, 255, out=top)
    np.copyto(out, top, casting="unsafe")


def deform_digit(image: np.ndarray, draws: np.ndarray, params: DeformParams) -> np.ndarray:
    """One deformed digit, uint8 (784,), from image uint8 (784,) or (28, 28) and draws (1576,)."""
    return deform_batch(np.asarray(image).reshape(1, N_PIXELS), draws[None], params)[0]
