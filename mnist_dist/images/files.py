"""The image files of a run: listing them, their labels (from names, a CSV or a .npy), output
names."""

from __future__ import annotations

import codecs
import csv
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mnist_dist.errors import DataError, ImageInputError
from mnist_dist.images.preprocess import EXTENSIONS

log = logging.getLogger(__name__)

NAME_LABEL = re.compile(r"^([0-9])(?![0-9])")


def list_image_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus image files found (recursively, sorted) in folders named.

    Raises ImageInputError for a path that does not exist or when no image file is found.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            candidates = images_in_folder(path)
        elif path.exists():
            candidates = [path]
        else:
            raise ImageInputError(f"{path}: no such file or folder")
        for candidate in candidates:
            key = resolved(candidate)
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    if not found:
        raise ImageInputError(
            f"no image files ({', '.join(EXTENSIONS)}) found in "
            f"{', '.join(str(p) for p in paths)}"
        )
    return found


def resolved(path: Path) -> Path:
    """`path` made absolute with its links followed; a link loop or a name the system refuses
    is left as written (absolute), so a hostile name never escapes as a traceback."""
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.abspath(path))


def images_in_folder(folder: Path) -> list[Path]:
    """The image files under `folder`, recursively and sorted, skipping hidden entries."""
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def label_from_name(path: Path) -> int | None:
    """The digit a file name starts with (`7_anything.png`, `7.png` → 7); None otherwise."""
    match = NAME_LABEL.match(path.name)
    return int(match.group(1)) if match else None


def read_labels_csv(path: Path) -> list[tuple[str, int]]:
    """(file, digit) rows of a labels CSV; a `file,digit` header and `#` comments are allowed.

    DataError names the file and line of a row that is not UTF-8, not `file,digit`, or that
    gives a file another digit than an earlier row (the same digit twice is fine).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the labels file ({exc})") from exc
    entries: list[tuple[str, int]] = []
    first_line: dict[str, tuple[int, int]] = {}  # file (as the CSV's folder sees it) -> line, digit
    for number, row in enumerate(csv.reader(decoded_lines(data, path)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{number}: a row must be `file,digit`; got {row!r} instead")
        name, digit = row[0].strip(), row[1].strip()
        if number == 1 and digit.lower() in ("digit", "label"):
            continue
        if digit not in tuple("0123456789"):
            raise DataError(f"{path}:{number}: digit must be 0-9; got {digit!r} instead")
        if "\0" in name:
            raise DataError(f"{path}:{number}: a file name must not contain NUL characters")
        key = os.path.normpath(path.parent / name)
        earlier = first_line.setdefault(key, (number, int(digit)))
        if earlier[1] != int(digit):
            raise DataError(
                f"{path}:{number}: {name} is labelled {digit} here but {earlier[1]} on line "
                f"{earlier[0]}; give each file one digit"
            )
        entries.append((name, int(digit)))
    return entries


def decoded_lines(data: bytes, path: Path) -> list[str]:
    """The lines of UTF-8 `data` (a BOM allowed); DataError names the line that is not UTF-8."""
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: the labels file must be UTF-8 text; got byte "
            f"0x{body[exc.start]:02x} instead"
        ) from exc


def match_labels(
    files: Sequence[Path], entries: Sequence[tuple[str, int]], base: Path
) -> list[int | None]:
    """The label of each file: by path (relative to `base`, the CSV's folder, or the current
    folder), else by file name when the CSV names that file name once."""
    by_path: dict[Path, int] = {}
    by_name: dict[str, int | None] = {}
    for name, digit in entries:
        entry = Path(name)
        for candidate in ([entry] if entry.is_absolute() else [base / entry, entry]):
            by_path[resolved(candidate)] = digit
        by_name[entry.name] = None if entry.name in by_name else digit  # None: ambiguous
    labels = [by_path.get(resolved(f), by_name.get(f.name)) for f in files]
    unmatched = len(entries) - sum(label is not None for label in labels)
    if unmatched > 0:
        log.warning("%d label rows matched no listed image (or were ambiguous)", unmatched)
    return labels


def file_labels(files: Sequence[Path], labels: Path | None = None, from_names: bool = False
                ) -> list[int] | None:
    """One digit per file from `labels` (a CSV or a .npy of ints (n,)) or, with `from_names`,
    the file names; None without either. DataError unless every file gets a digit 0-9."""
    if labels is None and not from_names:
        return None
    if from_names:
        found: list[int | None] = [label_from_name(f) for f in files]
    elif labels is not None and labels.suffix.lower() == ".npy":
        values = np.load(labels, allow_pickle=False)
        if values.shape != (len(files),) or values.dtype.kind not in "iu":
            raise DataError(f"{labels}: labels must be integers of shape ({len(files)},), "
                            f"one per file; got {values.dtype} {values.shape} instead")
        found = [int(v) if 0 <= v <= 9 else None for v in values]
    else:
        assert labels is not None
        found = match_labels(files, read_labels_csv(labels), labels.parent)
    missing = [f for f, label in zip(files, found, strict=True) if label is None]
    if missing:
        raise DataError(f"{labels or 'file names'}: every file needs a digit 0-9; "
                        f"{len(missing)} of {len(files)} have none (first: {missing[0]})")
    return [int(label) for label in found]  # type: ignore[arg-type]


def output_names(files: Sequence[Path]) -> list[str]:
    """A distinct PNG name per file for `--save-preprocessed`: its stem, suffixed if taken."""
    taken: set[str] = set()
    names = []
    for file in files:
        stem, n = file.stem, 1
        name = f"{stem}.png"
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}.png"
        taken.add(name.lower())
        names.append(name)
    return names
