"""Your own digit images → MNIST-style 28x28 uint8 digits, the way MNIST itself was made.

MNIST digits are white ink on a black background; each NIST digit was scaled, keeping its
aspect ratio, to fit a 20x20 box (anti-aliased, hence the grey edges) and then placed in a
28x28 field so that its centre of mass sits at the field's centre. `preprocess` repeats
that on an arbitrary image, one small named function per step:

1. `to_grayscale`     - one float channel 0..255; transparency is composited over white,
                        16-bit and float images are rescaled, and very large photos are first
                        shrunk to `WORKING_MAX_SIDE` pixels on their long side (speed only).
2. `fix_polarity`     - MNIST ink is bright on dark. The paper's brightness is a plane fitted
                        robustly to the image border (`background`: lighting falls off across a
                        photo); when the pixel farthest from that plane is darker than it (dark
                        ink on light paper) the image is inverted.
3. `isolate_ink`      - the background plane is subtracted and the ink level (99th percentile
                        of the ink pixels) becomes 255; pixels below a noise floor (10% of that,
                        or four times the border's noise, whichever is larger) become 0, which
                        removes paper texture, shading and JPEG noise. No pixel at least 40
                        grey levels above the paper (a blank image) → `ImageInputError`.
4. `drop_specks`      - ink blobs holding under 1% of all the ink (dust, paper grain, noise
                        spikes) are removed, so that they do not stretch the bounding box.
5. `trim_to_ink`      - crop to the bounding box of the remaining ink, plus a margin of
                        `MARGIN_FRACTION` of its long side (at least 2 px) so the resampling
                        filter sees background, not a cut edge, around the strokes.
6. `fit_box`          - resize (bicubic, keeping the aspect ratio) so that the ink's long side
                        is `BOX` = 20 px, then stretch the peak back to 255. NIST's scans were
                        bilevel and MNIST's grey levels come only from the anti-aliasing of
                        this downscale; so a source at least twice the box is first made
                        bilevel (`to_bilevel`: ink where >= 35% of the ink level, which keeps a
                        blurred stroke's full width), and strokes thinner than MNIST's (under
                        1.9 px once in the box; a ballpoint pen on a photo) are grown to its
                        median 2.7 px (`thicken_strokes`). Smaller sources are already
                        anti-aliased: they keep their grey levels and their strokes.
7. `centre_by_mass`   - paste into a 28x28 black canvas, shifted by whole pixels so that the
                        centre of mass lands on pixel (14, 14) (MNIST's own digits have their
                        centre of mass within half a pixel of (14, 14)); the shift is clamped
                        so the ink box never leaves the canvas.

An unmodified MNIST digit comes back nearly unchanged: its border is black, its ink already
fills 20 px and its centre of mass already sits at (14, 14). Only its faintest edge pixels
(under the 10% floor) become 0, and about 2 digits in 100, whose centre of mass lies almost
exactly between two pixels, move by one pixel.

`load_image` opens a file with the safety checks that a batch of strangers' files needs:
format allow-list (PNG, JPEG, BMP, TIFF), pixel-count cap checked from the header before any
decoding (decompression bombs), single-frame only (animations and multi-page TIFFs are
refused), and every decoder failure turned into `ImageInputError` with the file name.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from mnist_dist.errors import ImageInputError

SIDE = 28
BOX = 20
CENTRE = 14.0
FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
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
BILEVEL_MAX_SCALE = 0.5
BILEVEL_THRESHOLD = 0.35
SPECK_FRACTION = 0.01
STROKE_MIN = 1.9
STROKE_TARGET = 2.7


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
        handle = path.open("rb")
    except OSError as exc:  # permissions, a file gone since listing, an I/O error
        raise ImageInputError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    try:
        with handle, warnings.catch_warnings():
            # Pillow's own bomb check warns below 2x its limit; ours is stricter, so be quiet.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle, formats=FORMATS) as image:
                check_header(image, path, max_pixels)
                image.load()
                return ImageOps.exif_transpose(image)
    except ImageInputError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageInputError(f"{path}: not a readable PNG, JPEG, BMP or TIFF image") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(
            f"{path}: image must have at most {max_pixels:,} pixels; got far more instead "
            f"(possible decompression bomb: {exc})"
        ) from exc
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
    # A camera's multi-picture JPEG (MPO) is one photo plus previews; frame 0 is the photo.
    if frames > 1 and image.format != "MPO":
        raise ImageInputError(
            f"{path}: image must have one frame; got {frames} (animated or multi-page "
            f"{image.format}) instead; export the frame to score as its own file"
        )


def preprocess(image: Image.Image) -> np.ndarray:
    """MNIST-style digit, uint8 (28, 28), ink bright on black; ImageInputError when blank."""
    gray = to_grayscale(image)
    ink = isolate_ink(fix_polarity(gray))
    return centre_by_mass(fit_box(trim_to_ink(drop_specks(ink))))


def preprocess_array(pixels: np.ndarray) -> np.ndarray:
    """`preprocess` of one uint8 digit array (28, 28) or (784,), as if read from a grayscale
    PNG of it: uint8 (28, 28); ImageInputError when blank."""
    return preprocess(Image.fromarray(np.ascontiguousarray(pixels, np.uint8).reshape(SIDE, SIDE)))


def to_grayscale(image: Image.Image) -> np.ndarray:
    """Luminance float64 (h, w) in 0..255, transparency over white, long side <= 2048."""
    if max(image.size) > WORKING_MAX_SIDE:
        image = image.copy()
        image.thumbnail((WORKING_MAX_SIDE, WORKING_MAX_SIDE), Image.Resampling.LANCZOS)
    if image.mode == "LAB":  # Pillow cannot convert LAB; its L channel is the lightness
        image = image.getchannel("L")
    if image.mode in DEEP_MODES:
        # Deep images: rescale their own range (a 16-bit scan rarely spans 0..65535).
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageInputError("image has NaN or infinite pixel values")
        low, high = float(values.min()), float(values.max())
        return (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    try:
        return np.asarray(image.convert("L"), dtype=np.float64)
    except ValueError as exc:  # a pixel mode Pillow decodes but cannot convert
        raise ImageInputError(f"pixel mode {image.mode} cannot be read as grey levels") from exc


def border_mask(shape: tuple[int, ...]) -> np.ndarray:
    """True on the outer `BORDER_FRACTION` band (at least one pixel wide): bool (h, w)."""
    band = max(1, round(BORDER_FRACTION * min(shape)))
    mask = np.ones(shape, dtype=bool)
    mask[band:-band, band:-band] = False
    return mask


def background(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's brightness as a plane fitted to the border, float64 (h, w), and its noise.

    A plane, not a constant, because a photo's lighting falls off across the page. Two robust
    passes: border pixels far from the first fit (ink touching the edge) are left out.
    """
    height, width = gray.shape
    mask = border_mask(gray.shape)
    ys, xs = np.nonzero(mask)
    design = np.column_stack([np.ones(ys.size), ys / height, xs / width])
    values = gray[mask]
    keep = np.ones(values.size, dtype=bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], values[keep], rcond=None)
        residual = values - design @ coef
        noise = 1.4826 * float(np.median(np.abs(residual[keep])))
        keep = np.abs(residual) <= max(3.0 * noise, 1.0)
    rows = np.arange(height)[:, None] / height
    cols = np.arange(width)[None, :] / width
    return coef[0] + coef[1] * rows + coef[2] * cols, noise


def fix_polarity(gray: np.ndarray) -> np.ndarray:
    """Ink bright on dark, float64 (h, w): inverted when the ink is darker than the paper."""
    plane, _ = background(gray)
    residual = gray - plane
    # Extremes, not percentiles: a thin "1" on a big page is well under 1% of the pixels.
    return 255.0 - gray if -residual.min() > residual.max() else gray


def isolate_ink(gray: np.ndarray) -> np.ndarray:
    """Background 0, ink 255, noise below the floor 0: float64 (h, w) in 0..255.

    Raises ImageInputError when nothing stands out from the background (a blank image).
    """
    plane, noise = background(gray)
    residual = gray - plane
    above = residual[residual > max(MIN_CONTRAST, NOISE_SIGMAS * noise)]
    if above.size == 0:
        raise ImageInputError(
            "image is blank: no ink stands out from the background by at least "
            f"{MIN_CONTRAST:g} grey levels; crop or re-photograph it with more contrast"
        )
    span = float(np.percentile(above, INK_PERCENTILE))
    levelled = np.clip(residual * (255.0 / span), 0.0, 255.0)
    floor = max(NOISE_FLOOR_FRACTION * 255.0, NOISE_SIGMAS * noise * 255.0 / span)
    levelled[levelled < floor] = 0.0
    return levelled


def drop_specks(ink: np.ndarray) -> np.ndarray:
    """`ink` without the blobs holding under `SPECK_FRACTION` of all ink: float64 (h, w).

    Dust, paper grain and noise spikes are small, separate blobs; one of them far from the
    digit would otherwise stretch its bounding box.
    """
    blobs, count = ndimage.label(ink > 0, structure=np.ones((3, 3)))
    if count <= 1:
        return ink
    mass = ndimage.sum_labels(ink, blobs, index=np.arange(1, count + 1))
    small = np.flatnonzero(mass < SPECK_FRACTION * mass.sum()) + 1
    cleaned = ink.copy()
    cleaned[np.isin(blobs, small)] = 0.0
    return cleaned


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
    """Resize so the ink's long side is BOX px (aspect kept), peak 255: float64 (~24, <=~24).

    A source at least twice the box is first made bilevel, like NIST's scans, and strokes
    thinner than MNIST's are thickened (`to_bilevel`, `thicken_strokes`).
    """
    scale = BOX / ink_side(trimmed)
    if scale <= BILEVEL_MAX_SCALE:
        trimmed = thicken_strokes(to_bilevel(trimmed), scale)
        scale = BOX / ink_side(trimmed)
    height, width = trimmed.shape
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Pillow widens the kernel when shrinking, so a downscale is also the anti-aliasing.
    resized = Image.fromarray(trimmed.astype(np.float32)).resize(size, Image.Resampling.BICUBIC)
    # Bicubic overshoots slightly below 0 and above the peak; MNIST has neither.
    out = np.clip(np.asarray(resized, dtype=np.float64), 0.0, None)
    peak = out.max()
    return out * (255.0 / peak) if peak > 0 else out


def ink_side(ink: np.ndarray) -> int:
    """The long side, in pixels, of the bounding box of the non-zero pixels of `ink`."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return int(max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def to_bilevel(ink: np.ndarray) -> np.ndarray:
    """Ink 255 where at least `BILEVEL_THRESHOLD` of the ink level, else 0: float64 (h, w).

    The low threshold keeps a blurred stroke's full width, as thick as MNIST's strokes.
    """
    return np.where(ink >= BILEVEL_THRESHOLD * 255.0, 255.0, 0.0)


def stroke_width(bilevel: np.ndarray) -> float:
    """Mean stroke width in pixels of a bilevel image: 2 x area / perimeter.

    The perimeter is the count of ink/paper pixel edges times pi/4, which corrects the
    staircase of slanted strokes on average over all directions.
    """
    ink = bilevel > 0
    edges = np.count_nonzero(ink[1:] != ink[:-1]) + np.count_nonzero(ink[:, 1:] != ink[:, :-1])
    return 8.0 * np.count_nonzero(ink) / (np.pi * edges) if edges else 0.0


def thicken_strokes(bilevel: np.ndarray, scale: float) -> np.ndarray:
    """Strokes thinner than `STROKE_MIN` box pixels grown to `STROKE_TARGET`: float64 (h', w').

    A ballpoint pen on a photo is far thinner, relative to the digit, than MNIST's strokes
    (median 2.7 px in the 20 px box; 5% are under 1.9 px); a model trained on MNIST reads
    such hairlines poorly. Growth is a dilation by a disc; the image is padded to fit it.
    """
    width = stroke_width(bilevel) * scale
    if width >= STROKE_MIN:
        return bilevel
    radius = (STROKE_TARGET - width) / (2.0 * scale)
    padded = np.pad(bilevel, int(np.ceil(radius)) + 1)
    grown = ndimage.distance_transform_edt(padded == 0) <= radius
    return np.where(grown, 255.0, 0.0)


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
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
