"""Preprocessing of your own images (`mnist_dist.images.preprocess`): each step, safety checks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_dist.data.sources import RawMnist
from mnist_dist.errors import ImageInputError, MnistDistError, exit_code_for
from mnist_dist.images.preprocess import (
    centre_by_mass,
    fix_polarity,
    isolate_ink,
    load_image,
    preprocess,
)

N_DIGITS = 300
FLOOR = 26  # grey levels: pixels under the 10% noise floor (25.5) are the only ones zeroed


@pytest.fixture(scope="module")
def digits(vendored: RawMnist) -> np.ndarray:
    """The first 300 test digits, uint8 (300, 28, 28)."""
    return vendored.x_test[:N_DIGITS].reshape(-1, 28, 28)


def centre_of_mass(pixels: np.ndarray) -> np.ndarray:
    """(row, column) centre of mass of a 2-D array."""
    weights = pixels.astype(np.float64)
    return (np.indices(pixels.shape) * weights).reshape(2, -1).sum(axis=1) / weights.sum()


def ink_box(pixels: np.ndarray, level: int = 1) -> tuple[int, int]:
    """(height, width) of the bounding box of pixels >= `level`."""
    rows = np.flatnonzero((pixels >= level).any(axis=1))
    cols = np.flatnonzero((pixels >= level).any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def min_shifted_diff(a: np.ndarray, b: np.ndarray) -> int:
    """Largest |a - b| after the best whole-pixel shift of `a` by at most one pixel."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    return min(
        int(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).max())
        for dy in (-1, 0, 1) for dx in (-1, 0, 1)
    )


def test_unmodified_mnist_digit_saved_as_png_comes_back_nearly_the_same(
    digits: np.ndarray, tmp_path: Path
) -> None:
    diffs, max_diffs = [], []
    for i, digit in enumerate(digits):
        path = tmp_path / f"{i}.png"
        Image.fromarray(digit).save(path)
        out = preprocess(load_image(path))
        assert out.shape == (28, 28) and out.dtype == np.uint8
        diff = np.abs(out.astype(np.int64) - digit)
        diffs.append(diff.mean())
        max_diffs.append(diff.max())
        # At worst a one-pixel move (centre of mass exactly between two pixels) plus the floor.
        assert min_shifted_diff(out, digit) <= FLOOR, f"digit {i}"
    assert np.mean(diffs) < 1.0  # grey levels per pixel, averaged over all digits
    assert np.mean(np.array(max_diffs) <= FLOOR) >= 0.95


def test_dark_ink_on_light_paper_is_inverted(digits: np.ndarray) -> None:
    for digit in digits[:20]:
        straight = preprocess(Image.fromarray(digit))
        inverted = preprocess(Image.fromarray(255 - digit))
        np.testing.assert_array_equal(inverted, straight)


def test_fix_polarity_decides_by_the_ink_not_the_area() -> None:
    page = np.full((400, 300), 230.0)
    page[100:300, 148:152] = 20.0  # a thin dark "1": 0.7% of the pixels
    fixed = fix_polarity(page)
    assert fixed[0, 0] == pytest.approx(25.0) and fixed[200, 150] == pytest.approx(235.0)
    np.testing.assert_array_equal(fix_polarity(255.0 - page), 255.0 - page)


def test_lighting_gradient_and_noise_are_removed() -> None:
    rng = np.random.default_rng(0)
    cols = np.indices((300, 400))[1]
    page = 150.0 + 80.0 * cols / 400 + rng.normal(0.0, 4.0, (300, 400))
    page[60:240, 195:215] = 30.0  # a dark bar of ink
    ink = isolate_ink(fix_polarity(page))
    assert ink[100, 205] == pytest.approx(255.0, abs=20)
    assert np.count_nonzero(ink) == pytest.approx(180 * 20, rel=0.02)  # paper is 0 everywhere


def test_specks_do_not_stretch_the_bounding_box(digits: np.ndarray) -> None:
    page = np.zeros((300, 300), dtype=np.uint8)
    big = np.asarray(Image.fromarray(digits[0]).resize((112, 112), Image.Resampling.BICUBIC))
    page[40:152, 60:172] = big
    clean = preprocess(Image.fromarray(page))
    page[200:202, 250:252] = 255  # dust far from the digit
    np.testing.assert_array_equal(preprocess(Image.fromarray(page)), clean)


def test_long_side_fits_20_px_keeping_the_aspect_ratio() -> None:
    page = np.zeros((500, 600), dtype=np.uint8)
    page[100:150, 50:450] = 255  # 400 x 50: aspect 8:1
    out = preprocess(Image.fromarray(page))
    height, width = ink_box(out, level=128)
    assert width == 20 and 2 <= height <= 3
    np.testing.assert_allclose(centre_of_mass(out), (14.0, 14.0), atol=0.5)


def test_small_sources_are_scaled_up_to_the_box() -> None:
    page = np.zeros((40, 40), dtype=np.uint8)
    page[10:20, 18:22] = 255  # a 10 px tall bar
    height, _ = ink_box(preprocess(Image.fromarray(page)), level=128)
    assert height in (19, 20, 21)


def test_centre_of_mass_lands_on_14_14_wherever_the_digit_was(digits: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(digits[3]).resize((84, 84), Image.Resampling.BICUBIC))
    for top, left in ((0, 0), (300, 10), (17, 250)):
        page = np.zeros((400, 350), dtype=np.uint8)
        page[top : top + 84, left : left + 84] = big
        out = preprocess(Image.fromarray(page))
        np.testing.assert_allclose(centre_of_mass(out), (14.0, 14.0), atol=0.5)
        assert max(ink_box(out)) <= 22


def test_lopsided_ink_stays_inside_the_canvas() -> None:
    digit = np.zeros((20, 20))
    digit[:5, :5] = 255.0  # heavy corner: the centre of mass is far from the box centre
    digit[:, 19] = digit[19, :] = 30.0
    out = centre_by_mass(digit)
    assert out.sum() == pytest.approx(digit.sum(), rel=0.01)  # nothing was cut off


def test_hairline_strokes_are_thickened_to_mnist_width() -> None:
    page = np.full((600, 400), 255, dtype=np.uint8)
    page[100:500, 198:201] = 0  # a "1" drawn with a 3 px pen: 0.75% of its height
    out = preprocess(Image.fromarray(page))
    widths = (out[6:22] >= 128).sum(axis=1)
    assert 2 <= np.median(widths) <= 3


def test_blank_and_flat_images_are_refused() -> None:
    with pytest.raises(ImageInputError, match="blank"):
        preprocess(Image.new("L", (60, 40), 255))
    rng = np.random.default_rng(1)
    paper = np.clip(200 + rng.normal(0, 3, (80, 80)), 0, 255).astype(np.uint8)
    with pytest.raises(ImageInputError, match="blank"):
        preprocess(Image.fromarray(paper))


def test_transparent_and_16_bit_images(digits: np.ndarray) -> None:
    expected = preprocess(Image.fromarray(digits[1]))
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # black strokes on a transparent canvas
    rgba[..., 3] = digits[1]
    assert min_shifted_diff(preprocess(Image.fromarray(rgba)), expected) <= 2
    deep = Image.fromarray(digits[1].astype(np.uint16) * 257)
    assert deep.mode.startswith("I;16")
    assert min_shifted_diff(preprocess(deep), expected) <= 2


def test_exif_orientation_is_applied(digits: np.ndarray, tmp_path: Path) -> None:
    upright = Image.fromarray(digits[2]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    path = tmp_path / "sideways.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    loaded = load_image(path)
    np.testing.assert_array_equal(np.asarray(loaded), np.asarray(upright))


def png_with_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_huge_images_are_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_size(10_000, 10_000))
    with pytest.raises(ImageInputError, match=r"at most 50,000,000 pixels; got 10000x10000"):
        load_image(bomb)
    bomb.write_bytes(png_with_size(100_000, 100_000))  # Pillow's own limit refuses it first
    with pytest.raises(ImageInputError, match=r"at most 50,000,000 pixels; got far more"):
        load_image(bomb)
    modest = tmp_path / "modest.png"
    Image.new("L", (200, 100)).save(modest)
    with pytest.raises(ImageInputError, match="decompression bomb"):
        load_image(modest, max_pixels=10_000)


def test_animated_and_multi_page_files_are_refused(tmp_path: Path) -> None:
    frames = [Image.new("L", (30, 30), v) for v in (0, 255)]
    for name in ("anim.png", "pages.tif"):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageInputError, match="must have one frame; got 2"):
            load_image(tmp_path / name)


def test_unreadable_files_are_refused_with_their_name(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageInputError, match=r"garbage\.jpg: not a readable PNG, JPEG"):
        load_image(garbage)
    gif = tmp_path / "digit.png"
    Image.new("L", (20, 20)).save(gif, format="GIF")
    with pytest.raises(ImageInputError, match="not a readable"):
        load_image(gif)
    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(good)  # incompressible: 200 bytes hold a fraction of it
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageInputError, match=r"truncated\.png: cannot decode"):
        load_image(truncated)
    with pytest.raises(ImageInputError, match="not a file"):
        load_image(tmp_path)


def test_image_input_error_is_a_value_error_with_its_own_exit_code() -> None:
    error = ImageInputError("x")
    assert isinstance(error, MnistDistError) and isinstance(error, ValueError)
    assert exit_code_for(error) == 12
