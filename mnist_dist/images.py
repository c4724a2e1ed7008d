"""Your own digit images → MNIST-style 28x28 uint8 digits, the way MNIST itself was made.

MNIST digits are white ink on a black background; each NIST digit was scaled, keeping its
aspect ratio, to fit a 20x20 box (anti-aliased, hence the grey edges) and then placed in a
28x28 field so that its centre of mass sits at the field's centre. `preprocess` repeats
that on an arbitrary image, one small named function per step:

1. `to_grayscale`     - one float channel 0..255; transparency is composited over white,
                        16-bit and float images are rescaled, and very large photos are first
                        shrunk to `WORKING_MAX_SIDE` pixels on their long side (speed only).
2. `fix_polarity`     - MNIST ink is bright on dark. The background is the median of the
                        image border; when it is lighter than mid-way between the darkest and
                        the lightest pixel (dark ink on light paper) the image is inverted.
3. `isolate_ink`      - the border median becomes 0 and the ink level (99th percentile of the
                        ink pixels) 255; pixels below a noise floor (10% of that range, or four
                        times the border's noise, whichever is larger) become 0, which removes
                        paper texture, shading and JPEG noise. No ink left → `ImageInputError`.
4. `trim_to_ink`      - crop to the bounding box of the remaining ink, plus a margin of
                        `MARGIN_FRACTION` of its long side (at least 2 px) so the resampling
                        filter sees background, not a cut edge, around the strokes.
5. `fit_box`          - resize (Lanczos, keeping the aspect ratio) so that the ink's long side
                        is `BOX` = 20 px, then stretch the peak back to 255: a thin pen on a big
                        photo otherwise turns into faint grey strokes MNIST never had.
6. `centre_by_mass`   - paste into a 28x28 black canvas, shifted by whole pixels so that the
                        centre of mass lands on pixel (14, 14) (MNIST's own digits have their
                        centre of mass within half a pixel of (14, 14)); the shift is clamped
                        so the ink box never leaves the canvas.

An unmodified MNIST digit passes through unchanged up to a few grey levels: its border is
black, its ink already fills 20 px, and its centre of mass already sits at (14, 14).

`load_image` opens a file with the safety checks that a batch of strangers' files needs:
format allow-list (PNG, JPEG, BMP, TIFF), pixel-count cap checked from the header before any
decoding (decompression bombs), single-frame only (animations and multi-page TIFFs are
refused), and every decoder failure turned into `ImageInputError` with the file name.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mnist_dist.errors import ImageInputError

SIDE = 28
BOX = 20
CENTRE = 14.0
FORMATS = ("PNG", "JPEG", "MPO", "BMP", "TIFF")  # MPO: camera JPEGs; their frame 0 is the photo
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_PIXELS = 50_000_000
WORKING_MAX_SIDE = 2048
BORDER_FRACTION = 0.03
MIN_CONTRAST = 40.0
NOISE_FLOOR_FRACTION = 0.10
NOISE_SIGMAS = 4.0
INK_PERCENTILE = 99.0
MARGIN_FRACTION = 0.1
MIN_MARGIN = 2


def load_image(path: Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open, check and decode one image file; ImageInputError says why one cannot be used.

    Checks, in order: a readable file; a PNG/JPEG/BMP/TIFF header; at most `max_pixels`
    pixels (read from the header, before decoding); one frame; a clean decode. The camera's
    EXIF orientation is applied, so a photo taken sideways arrives upright.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns below 2x its limit; ours is stricter, so be quiet.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as image:
                check_header(image, path, max_pixels)
                image.load()
                return ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageInputError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"{path}: too many pixels ({exc})") from exc
    # Pillow's decoders raise many types (OSError, SyntaxError, struct.error, ...) on corrupt
    # data; any of them means this one file cannot be scored.
    except Exception as exc:
        raise ImageInputError(
            f"{path}: cannot decode the image ({type(exc).__name__}: {exc})"
        ) from exc


def check_header(image: Image.Image, path: Path, max_pixels: int) -> None:
    """Refuse, from the header alone, images too large or with more than one frame."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError(f"{path}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageInputError(
            f"{path}: image must have at most {max_pixels:,} pixels; got {width}x{height} "
            f"= {width * height:,} instead (possible decompression bomb); downscale it first"
        )
    frames = getattr(image, "n_frames", 1)
    if frames > 1 and image.format != "MPO":
        raise ImageInputError(
            f"{path}: image must have one frame; got {frames} (animated or multi-page "
            f"{image.format}) instead; export the frame to score as its own file"
        )


def preprocess(image: Image.Image) -> np.ndarray:
    """MNIST-style digit, uint8 (28, 28), ink bright on black; ImageInputError when blank."""
    gray = to_grayscale(image)
    ink = isolate_ink(fix_polarity(gray))
    return centre_by_mass(fit_box(trim_to_ink(ink)))


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Luminance float64 (h, w) in 0..255; transparency over white; long side <= WORKING_MAX_SIDE."""
    if max(image.size) > WORKING_MAX_SIDE:
        image = image.copy()
        image.thumbnail((WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.Resampling.LANCZOS)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # Deep images: rescale their own range (a 16-bit scan rarely spans 0..65535).
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return np.asarray(image.convert("L"), dtype=np.float64)


def border_pixels(gray: np.ndarray) -> np.ndarray:
    """The pixels of the outer `BORDER_FRACTION` band (at least one pixel wide), flattened."""
    band = max(1, round(BORDER_FRACTION * min(gray.shape)))
    mask = np.ones(gray.shape, dtype=bool)
    mask[band:-band, band:-band] = False
    return gray[mask]


def fix_polarity(gray: np.ndarray) -> np.ndarray:
    """Ink bright on dark, float64 (h, w): inverted when the background is the lighter side."""
    background = float(np.median(border_pixels(gray)))
    # Extremes, not percentiles: a thin "1" on a big page is well under 1% of the pixels.
    return 255.0 - gray if background > (gray.min() + gray.max()) / 2 else gray


def isolate_ink(gray: np.ndarray) -> np.ndarray:
    """Background 0, ink 255, noise below the floor 0: float64 (h, w) in 0..255.

    Raises ImageInputError when nothing stands out from the background (a blank image).
    """
    border = border_pixels(gray)
    background = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - background)))
    above = gray[gray > background + max(MIN_CONTRAST, NOISE_SIGMAS * noise)]
    if above.size == 0:
        raise ImageInputError(
            "image is blank: no ink stands out from the background by at least "
            f"{MIN_CONTRAST:g} grey levels; crop or re-photograph it with more contrast"
        )
    ink = float(np.percentile(above, INK_PERCENTILE))
    span = ink - background
    levelled = np.clip((gray - background) * (255.0 / span), 0.0, 255.0)
    floor = max(NOISE_FLOOR_FRACTION * 255.0, NOISE_SIGMAS * noise * 255.0 / span)
    levelled[levelled < floor] = 0.0
    return levelled


def trim_to_ink(ink: np.ndarray) -> np.ndarray:
    """The ink's bounding box plus a black margin, float64 (h', w'); needs some ink (> 0)."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise ImageInputError("image is blank: no ink left after removing the background")
    box = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    margin = max(MIN_MARGIN, round(MARGIN_FRACTION * max(box.shape)))
    return np.pad(box, margin)


def fit_box(trimmed: np.ndarray) -> np.ndarray:
    """Resize so the ink's long side is BOX px (aspect kept), peak 255: float64 (<=~24, <=~24)."""
    rows = np.flatnonzero(trimmed.any(axis=1))
    cols = np.flatnonzero(trimmed.any(axis=0))
    ink_side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    scale = BOX / ink_side
    height, width = trimmed.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(trimmed.astype(np.float32)).resize(
        size, Image.Resampling.LANCZOS
    )
    # Lanczos rings slightly below 0 and above the peak; MNIST has neither.
    out = np.clip(np.asarray(resized, dtype=np.float64), 0.0, None)
    peak = out.max()
    return out * (255.0 / peak) if peak > 0 else out


def centre_by_mass(digit: np.ndarray) -> np.ndarray:
    """Paste `digit` into a 28x28 canvas with its centre of mass at (14, 14): uint8 (28, 28)."""
    mass = digit.sum()
    rows, cols = np.indices(digit.shape)
    centre = ((rows * digit).sum() / mass, (cols * digit).sum() / mass)
    ink_rows = np.flatnonzero(digit.max(axis=1) >= 0.5)
    ink_cols = np.flatnonzero(digit.max(axis=0) >= 0.5)
    canvas = np.zeros((SIDE, SIDE), dtype=np.float64)
    offsets = []
    for axis, ink in enumerate((ink_rows, ink_cols)):
        shift = round(CENTRE - centre[axis])
        # Keep the ink inside the canvas even for a lopsided digit (a "7" is top-heavy).
        shift = min(max(shift, -int(ink[0])), SIDE - 1 - int(ink[-1]))
        offsets.append(shift)
    paste(canvas, digit, offsets[0], offsets[1])
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, image: np.ndarray, top: int, left: int) -> None:
    """Copy `image` into `canvas` at (top, left), dropping whatever falls outside."""
    height, width = image.shape
    t0, l0 = max(0, top), max(0, left)
    t1, l1 = min(canvas.shape[0], top + height), min(canvas.shape[1], left + width)
    if t1 > t0 and l1 > l0:
        canvas[t0:t1, l0:l1] = image[t0 - top : t1 - top, l0 - left : l1 - left]


def to_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (h, w) grayscale array."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail_png(image: Image.Image, side: int = 96) -> bytes:
    """PNG bytes of a small copy of `image` (long side <= `side`), for contact sheets."""
    import io

    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = Image.fromarray(np.rint(to_grayscale(image)).astype(np.uint8))
    small = image.convert("RGBA") if image.mode not in ("L", "RGB", "RGBA") else image.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return buffer.getvalue()
