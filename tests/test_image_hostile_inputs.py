"""Hostile inputs to `jobs.score --images`: each is one `error:` line before any work,
or, for a file that cannot be scored, a per-file failure with its reason; never a traceback."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs import score as score_job
from mnist_dist.errors import EXIT_CODES, DataError, ImageInputError, StoreExistsError
from mnist_dist.images.files import list_image_files, match_labels, read_labels_csv
from mnist_dist.images.preprocess import load_image, preprocess
from mnist_dist.images.tasks import preprocess_files


def digit_png(path: Path) -> Path:
    pixels = np.zeros((40, 40), np.uint8)
    pixels[8:32, 18:22] = 255
    Image.fromarray(pixels).save(path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, with no image data (a bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def main_one_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run jobs.score; return the exit code and its only stderr line."""
    code = score_job.main(args)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return code, lines[0]


# --- labels CSV --------------------------------------------------------------------------------


def test_a_labels_csv_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbffile,digit\na.png,1\nb\xe9.png,2\n")
    with pytest.raises(DataError, match=rf"^{labels}:3: the labels file must be UTF-8 text; "
                       r"got byte 0xe9 instead$"):
        read_labels_csv(labels)


def test_conflicting_duplicate_labels_name_both_lines(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("a.png,1\nb.png,2\na.png,1\n./sub/../a.png,7\n")
    with pytest.raises(DataError, match=rf"^{labels}:4: ./sub/../a.png is labelled 7 here but "
                       r"1 on line 1; give each file one digit$"):
        read_labels_csv(labels)
    labels.write_text("a.png,1\nb.png,2\na.png,1\n")  # the same digit twice is no conflict
    assert read_labels_csv(labels) == [("a.png", 1), ("b.png", 2), ("a.png", 1)]


def test_hostile_names_in_a_labels_csv_are_refused_or_left_unmatched(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("ok.png,1\nbad\0name.png,2\n")
    with pytest.raises(DataError, match=rf"^{labels}:2: a file name must not contain NUL"):
        read_labels_csv(labels)
    os.symlink("loop-b.png", tmp_path / "loop-a.png")
    os.symlink("loop-a.png", tmp_path / "loop-b.png")
    labels.write_text("loop-a.png,3\nok.png,1\n")
    files = [digit_png(tmp_path / "ok.png")]
    assert match_labels(files, read_labels_csv(labels), tmp_path) == [1]


def test_cli_labels_errors_are_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digit_png(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_bytes(b"a.png,1\n\xff\xfe,2\n")
    code, line = main_one_line(
        ["--images", str(tmp_path / "a.png"), "--labels", str(tmp_path / "labels.csv"),
         "--models", str(tmp_path / "models"), "--out", str(tmp_path / "run")], capsys)
    assert code == EXIT_CODES[DataError]
    assert line.startswith(f"error: {tmp_path / 'labels.csv'}:2: the labels file must be UTF-8")
    assert not (tmp_path / "models").exists() and not (tmp_path / "run").exists()


# --- paths -------------------------------------------------------------------------------------


def test_save_preprocessed_under_a_file_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digit_png(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("mine")
    code, line = main_one_line(
        ["--images", str(tmp_path / "a.png"),
         "--save-preprocessed", str(tmp_path / "notes.txt" / "digits"),
         "--models", str(tmp_path / "models"), "--out", str(tmp_path / "run")], capsys)
    assert code == EXIT_CODES[StoreExistsError]
    assert line == (f"error: --save-preprocessed {tmp_path / 'notes.txt' / 'digits'} lies under "
                    f"{tmp_path / 'notes.txt'}, which is a file; expected a folder")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "notes.txt"]


@pytest.mark.parametrize("case", ["empty-folder", "folder-named-png", "symlink-loop", "missing"])
def test_paths_with_nothing_to_score_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    target = tmp_path / {"empty-folder": "empty", "folder-named-png": "7.png",
                         "symlink-loop": "loop.png", "missing": "gone.png"}[case]
    if case in ("empty-folder", "folder-named-png"):
        target.mkdir()
        (target / "notes.txt").write_text("no images here")
    elif case == "symlink-loop":
        os.symlink("loop.png", target)
    code, line = main_one_line(["--images", str(target), "--models", str(tmp_path / "models"),
                                "--out", str(tmp_path / "run")], capsys)
    assert code == EXIT_CODES[ImageInputError]
    assert line.startswith("error: ") and str(target) in line
    assert not (tmp_path / "models").exists() and not (tmp_path / "run").exists()


def test_links_that_loop_inside_a_folder_are_skipped(tmp_path: Path) -> None:
    digit_png(tmp_path / "1.png")
    os.symlink("2.png", tmp_path / "3.png")
    os.symlink("3.png", tmp_path / "2.png")
    (tmp_path / "sub").mkdir()
    os.symlink("..", tmp_path / "sub" / "up")  # a folder link back up: no endless walk
    assert list_image_files([tmp_path]) == [tmp_path / "1.png"]


# --- files that cannot be scored: per-file failures --------------------------------------------


def test_files_that_cannot_be_scored_get_their_reason_per_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "dir.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    nan = np.full((30, 30), 255.0, np.float32)
    nan[10:20, 14:16] = 0.0
    nan[0, 0] = np.nan
    Image.fromarray(nan).save(tmp_path / "nan.tif")
    locked = digit_png(tmp_path / "locked.png")
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        # Tests run as root, where chmod 000 still reads: refuse this one file by hand.
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    names = ["zero.png", "dir.png", "fifo.png", "bomb.png", "nan.tif", "locked.png"]
    # The workers' task of --images and jobs.ingest: reasons are recorded, never raised.
    _, ok, reasons = preprocess_files([str(tmp_path / name) for name in names])
    assert not ok.any()
    errors = dict(zip(names, map(str, reasons), strict=True))
    assert all(error and "\n" not in error for error in errors.values()), errors
    assert errors["zero.png"] == "not a readable PNG, JPEG, BMP or TIFF image"
    assert errors["dir.png"] == errors["fifo.png"] == "not a file"
    assert "possible decompression bomb" in errors["bomb.png"]
    assert errors["nan.tif"] == "image has NaN or infinite pixel values"
    assert errors["locked.png"] == "cannot read the file (Permission denied)"
    with pytest.raises(ImageInputError, match=r"locked\.png: cannot read the file"):
        load_image(locked)


MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F",
         "I;16", "RGBX", "La", "RGBa")


def test_every_pixel_mode_the_formats_hold_is_scored_or_refused_per_file(tmp_path: Path) -> None:
    pixels = np.full((30, 30), 255, np.uint8)
    pixels[10:20, 14:16] = 0
    written = 0
    for mode in MODES:
        for fmt, ext in (("PNG", "png"), ("TIFF", "tif"), ("BMP", "bmp"), ("JPEG", "jpg")):
            path = tmp_path / f"{mode.replace(';', '_')}.{ext}"
            try:
                Image.fromarray(pixels).convert(mode).save(path, format=fmt)
            except (OSError, ValueError, KeyError):
                continue  # this format cannot hold this mode
            written += 1
            try:
                digit = preprocess(load_image(path))
            except ImageInputError as exc:
                assert "blank" not in str(exc), (mode, fmt, exc)  # a clear digit is no blank
                continue
            assert digit.shape == (28, 28) and digit.max() == 255, (mode, fmt)
    assert written >= 20
