"""Score image files with both models on Dask: paths in, one small result row per file out.

The client only lists the files; partitions of paths go to the workers, which read,
preprocess (`mnist_dist.images`) and predict, and send back one `ImageRow` per file. Pixels
come back only for the contact sheet, in a second round over at most `sheet_limit` files;
`--save-preprocessed` PNGs are written by the workers themselves. So, like the image files
they read, the folder must be on storage the workers share.

A file that cannot be scored (unreadable, corrupt, blank, animated, too large) gets an
`error` in its row; the rest of the batch is scored regardless.
"""

from __future__ import annotations

import base64
import csv
import logging
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client

import mnist_dist
from mnist_dist import images as imaging
from mnist_dist.atomic import write_bytes_new, write_json_atomic
from mnist_dist.cluster import ClusterSpec, cluster_facts, connect, ort_threads_for
from mnist_dist.data.store import DEFAULT_STORE
from mnist_dist.errors import DataError, ImageInputError, SpecError, StoreExistsError
from mnist_dist.metrics import accuracy, confusion_matrix, per_class_accuracy
from mnist_dist.models.artifacts import ModelRef, load_predictors, read_manifest
from mnist_dist.pipeline import DEFAULT_MODELS, ensure_models, ensure_store, prepare_out
from mnist_dist.predict import MODEL_NAMES
from mnist_dist.report.images_render import write_renderings
from mnist_dist.training import models_exist

log = logging.getLogger(__name__)

SCHEMA = "mnist-dist-images-report/1"
REPORT_NAME = "report.json"
DEFAULT_PARTITION_FILES = 200
SHEET_LIMIT = 100
SHEET_PARTITION = 25
NAME_LABEL = re.compile(r"^([0-9])(?![0-9])")


def default_images_out() -> Path:
    """A new run folder per invocation, so finished runs are never overwritten."""
    return Path("runs") / datetime.now().strftime("images-%Y%m%d-%H%M%S")


@dataclass(frozen=True)
class ImageScoreSpec:
    """Everything `python -m jobs.score --images ...` needs.

    `images` are files or folders (searched recursively for `imaging.EXTENSIONS`); labels come
    from a `file,digit` CSV (`labels`) or from names like `7_anything.png`
    (`labels_from_names`), never both. `store` is used only to train missing models.
    """

    images: tuple[Path, ...]
    models: Path = DEFAULT_MODELS
    store: Path = DEFAULT_STORE
    out: Path = field(default_factory=default_images_out)
    labels: Path | None = None
    labels_from_names: bool = False
    save_preprocessed: Path | None = None
    partition_files: int = DEFAULT_PARTITION_FILES
    sheet_limit: int = SHEET_LIMIT
    max_pixels: int = imaging.MAX_PIXELS
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    train_epochs: int = 10

    def __post_init__(self) -> None:
        if not self.images:
            raise SpecError("images must name at least one file or folder; got none instead")
        if self.labels is not None and self.labels_from_names:
            raise SpecError("labels and labels_from_names exclude each other; choose one")
        if self.partition_files < 1:
            raise SpecError(f"partition_files must be >= 1; got {self.partition_files} instead")
        if self.sheet_limit < 0:
            raise SpecError(f"sheet_limit must be >= 0; got {self.sheet_limit} instead")


@dataclass(frozen=True)
class ImageTask:
    """One file as a task carries it: its row index, path, label and preprocessed PNG name."""

    index: int
    path: str
    label: int | None = None
    save_as: str | None = None


@dataclass(frozen=True)
class ImageRow:
    """The answer for one file: both models' digits and the MLP's top two, or an error."""

    index: int
    file: str
    label: int | None
    knn: int | None = None
    mlp: int | None = None
    mlp_probability: float | None = None
    runner_up: int | None = None
    runner_up_probability: float | None = None
    error: str | None = None


def list_image_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus image files found (recursively, sorted) in folders named.

    Raises ImageInputError for a path that does not exist or when no image file is found.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(
                p for p in path.rglob("*")
                if p.suffix.lower() in imaging.EXTENSIONS and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            candidates = [path]
        else:
            raise ImageInputError(f"{path}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    if not found:
        raise ImageInputError(
            f"no image files ({', '.join(imaging.EXTENSIONS)}) found in "
            f"{', '.join(str(p) for p in paths)}"
        )
    return found


def label_from_name(path: Path) -> int | None:
    """The digit a file name starts with (`7_anything.png`, `7.png` → 7); None otherwise."""
    match = NAME_LABEL.match(path.name)
    return int(match.group(1)) if match else None


def read_labels_csv(path: Path) -> list[tuple[str, int]]:
    """(file, digit) rows of a labels CSV; a `file,digit` header and `#` comments are allowed."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the labels file ({exc})") from exc
    entries = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise DataError(f"{path}:{number}: a row must be `file,digit`; got {row!r} instead")
        name, digit = row[0].strip(), row[1].strip()
        if number == 1 and digit.lower() in ("digit", "label"):
            continue
        if digit not in tuple("0123456789"):
            raise DataError(f"{path}:{number}: digit must be 0-9; got {digit!r} instead")
        entries.append((name, int(digit)))
    return entries


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
            by_path[candidate.resolve()] = digit
        by_name[entry.name] = None if entry.name in by_name else digit  # None: ambiguous
    labels = [by_path.get(f.resolve(), by_name.get(f.name)) for f in files]
    unmatched = len(entries) - sum(label is not None for label in labels)
    if unmatched > 0:
        log.warning("%d label rows matched no listed image (or were ambiguous)", unmatched)
    return labels


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


def partitions(items: Sequence[ImageTask], size: int) -> list[list[ImageTask]]:
    """`items` cut into consecutive lists of at most `size`."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def score_files(
    tasks: Sequence[ImageTask], ref: ModelRef, ort_threads: int = 1,
    save_dir: str | None = None, max_pixels: int = imaging.MAX_PIXELS,
) -> list[ImageRow]:
    """Read, preprocess and score one partition of files; runs on a worker, knows no Dask.

    Both models see the whole partition as one uint8 (n, 784) batch; a file that fails gets
    its error in its row. Preprocessed digits are written to `save_dir` when given.
    """
    digits: list[np.ndarray] = []
    scored: list[ImageTask] = []
    rows: dict[int, ImageRow] = {}
    for task in tasks:
        try:
            digit = imaging.preprocess(imaging.load_image(Path(task.path), max_pixels))
        except ImageInputError as exc:
            message = str(exc).removeprefix(f"{task.path}: ")  # the row names the file
            rows[task.index] = ImageRow(task.index, task.path, task.label, error=message)
            continue
        if save_dir is not None and task.save_as is not None:
            target = Path(save_dir) / task.save_as
            try:
                write_bytes_new(target, imaging.to_png(digit))
            except OSError as exc:  # includes an existing file this run did not write
                rows[task.index] = ImageRow(task.index, task.path, task.label,
                                            error=f"cannot save preprocessed {target} ({exc})")
                continue
        digits.append(digit.reshape(imaging.SIDE * imaging.SIDE))
        scored.append(task)
    if scored:
        batch = np.stack(digits)
        predictors = load_predictors(ref, ort_threads)
        knn = predictors.knn.predict(batch)
        proba = predictors.mlp.predict_proba(batch)
        top2 = np.argsort(-proba, axis=1, kind="stable")[:, :2]
        for k, task in enumerate(scored):
            first, second = int(top2[k, 0]), int(top2[k, 1])
            rows[task.index] = ImageRow(
                task.index, task.path, task.label, knn=int(knn[k]), mlp=first,
                mlp_probability=float(proba[k, first]), runner_up=second,
                runner_up_probability=float(proba[k, second]),
            )
    return [rows[task.index] for task in tasks]


def sheet_entries(
    tasks: Sequence[ImageTask], max_pixels: int = imaging.MAX_PIXELS
) -> list[dict[str, Any]]:
    """Contact-sheet material of a few files: PNG thumbnails of the original and the 28x28."""
    entries = []
    for task in tasks:
        try:
            image = imaging.load_image(Path(task.path), max_pixels)
            digit = imaging.preprocess(image)
        except ImageInputError:
            continue  # changed since it was scored; the sheet simply omits it
        entries.append({
            "index": task.index,
            "original_png": imaging.thumbnail_png(image),
            "preprocessed_png": imaging.to_png(digit),
        })
    return entries


def choose_sheet(rows: Sequence[ImageRow], limit: int) -> list[int]:
    """Row indices for the contact sheet: mistakes first, then disagreements, then the rest."""
    def priority(row: ImageRow) -> int:
        if row.label is not None and (row.knn != row.label or row.mlp != row.label):
            return 0
        return 1 if row.knn != row.mlp else 2

    scored = [row for row in rows if row.error is None]
    return [row.index for row in sorted(scored, key=lambda r: (priority(r), r.index))[:limit]]


def score_on_cluster(
    client: Client, tasks: Sequence[ImageTask], spec: ImageScoreSpec, ref: ModelRef,
    ort_threads: int,
) -> tuple[list[ImageRow], int]:
    """Every file's row, in order, and the number of partitions the files were cut into."""
    threads = max(1, sum(client.nthreads().values()))
    # Small batches still spread over every thread; large ones use `partition_files`.
    size = max(1, min(spec.partition_files, math.ceil(len(tasks) / threads)))
    parts = partitions(tasks, size)
    save_dir = str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None
    futures = client.map(
        score_files, parts, ref=ref, ort_threads=ort_threads, save_dir=save_dir,
        max_pixels=spec.max_pixels, pure=False,
    )
    rows = [row for part in client.gather(futures) for row in part]
    return rows, len(parts)


def sheet_on_cluster(
    client: Client, tasks: Sequence[ImageTask], chosen: Sequence[int], max_pixels: int
) -> list[dict[str, Any]]:
    """Contact-sheet entries of the `chosen` rows, read by the workers, in `chosen` order."""
    wanted = [tasks[i] for i in chosen]
    if not wanted:
        return []
    futures = client.map(
        sheet_entries, partitions(wanted, SHEET_PARTITION), max_pixels=max_pixels, pure=False
    )
    entries = [entry for part in client.gather(futures) for entry in part]
    position = {index: k for k, index in enumerate(chosen)}
    return sorted(entries, key=lambda entry: position[entry["index"]])


def model_accuracy(rows: Sequence[ImageRow]) -> dict[str, dict[str, Any]] | None:
    """Accuracy, per-class accuracy and confusion of both models on the labelled, scored rows."""
    labelled = [row for row in rows if row.label is not None and row.error is None]
    if not labelled:
        return None
    labels = np.array([row.label for row in labelled], dtype=np.uint8)
    sections = {}
    for name in MODEL_NAMES:
        predicted = np.array([getattr(row, name) for row in labelled], dtype=np.uint8)
        confusion = confusion_matrix(labels, predicted)
        sections[name] = {
            "accuracy": accuracy(confusion),
            "per_class_accuracy": per_class_accuracy(confusion),
            "confusion": confusion.astype(np.int64).tolist(),
            "n_images": len(labelled),
        }
    return sections


def build_tasks(files: Sequence[Path], spec: ImageScoreSpec) -> list[ImageTask]:
    """One task per file, with its label (if any) and its preprocessed PNG name."""
    if spec.labels is not None:
        labels = match_labels(files, read_labels_csv(spec.labels), spec.labels.parent)
    elif spec.labels_from_names:
        labels = [label_from_name(f) for f in files]
    else:
        labels = [None] * len(files)
    names = output_names(files) if spec.save_preprocessed else [None] * len(files)
    return [
        ImageTask(i, str(f), label, name)
        for i, (f, label, name) in enumerate(zip(files, labels, names))
    ]


def labels_source(spec: ImageScoreSpec) -> dict[str, Any]:
    """Where the labels came from, for the report."""
    if spec.labels is not None:
        return {"source": "csv", "path": str(spec.labels)}
    if spec.labels_from_names:
        return {"source": "names", "path": None}
    return {"source": None, "path": None}


def preprocessing_facts(spec: ImageScoreSpec) -> dict[str, Any]:
    """The preprocessing steps and their parameters, for the report."""
    return {
        "steps": ["to_grayscale", "fix_polarity", "isolate_ink", "drop_specks", "trim_to_ink",
                  "fit_box", "centre_by_mass"],
        "side": imaging.SIDE, "box": imaging.BOX, "centre": imaging.CENTRE,
        "noise_floor_fraction": imaging.NOISE_FLOOR_FRACTION,
        "bilevel_threshold": imaging.BILEVEL_THRESHOLD,
        "bilevel_max_scale": imaging.BILEVEL_MAX_SCALE,
        "max_pixels": spec.max_pixels, "formats": list(imaging.FORMATS),
    }


def build_images_report(
    spec: ImageScoreSpec, rows: Sequence[ImageRow], sheet: Sequence[dict[str, Any]],
    cluster: dict[str, Any], manifest: dict[str, Any], wall_seconds: float,
) -> dict[str, Any]:
    """The whole `report.json` document (schema `SCHEMA`) of one image-scoring run."""
    failed = sum(row.error is not None for row in rows)
    out = spec.out.resolve()
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "code_version": mnist_dist.__version__,
        "inputs": {
            "paths": [str(p) for p in spec.images],
            "n_files": len(rows), "n_scored": len(rows) - failed, "n_failed": failed,
            "labels": {**labels_source(spec),
                       "n_labelled": sum(row.label is not None for row in rows)},
        },
        "preprocessing": preprocessing_facts(spec),
        "models": {
            "directory": str(spec.models.resolve()),
            **{name: {"test_accuracy_at_training": manifest["models"][name]["test_accuracy"]}
               for name in MODEL_NAMES},
        },
        "cluster": cluster,
        "timing": {
            "wall_seconds": wall_seconds,
            "files_per_second": len(rows) / wall_seconds if wall_seconds > 0 else None,
        },
        "accuracy": model_accuracy(rows),
        "files": [asdict(row) for row in rows],
        "sheet": [
            {"index": entry["index"], "file": rows[entry["index"]].file,
             "original_png_b64": base64.b64encode(entry["original_png"]).decode("ascii"),
             "preprocessed_png_b64": base64.b64encode(entry["preprocessed_png"]).decode("ascii")}
            for entry in sheet
        ],
        "outputs": {
            "report_json": str(out / REPORT_NAME),
            "report_md": str(out / "report.md"),
            "report_html": str(out / "report.html"),
            "preprocessed": (
                str(spec.save_preprocessed.resolve()) if spec.save_preprocessed else None
            ),
        },
    }


def check_save_folder(folder: Path, tasks: Sequence[ImageTask]) -> None:
    """StoreExistsError unless `folder` is a folder (or absent) holding none of the PNG names
    the run will write: --save-preprocessed never replaces a file the run did not create."""
    if folder.exists() and not folder.is_dir():
        raise StoreExistsError(f"--save-preprocessed {folder} is a file; expected a folder")
    taken = sorted(t.save_as for t in tasks if t.save_as and (folder / t.save_as).exists())
    if taken:
        shown = ", ".join(taken[:5]) + (f" and {len(taken) - 5} more" if len(taken) > 5 else "")
        raise StoreExistsError(
            f"--save-preprocessed {folder} already holds {shown}; expected a new or empty "
            "folder (the run never overwrites files it did not create)"
        )


def run_image_scoring(spec: ImageScoreSpec) -> dict[str, Any]:
    """Score the image files of `spec`; returns the report (also written as report.json,
    report.md and report.html in `spec.out`). Per-file failures are rows, not exceptions."""
    files = list_image_files(spec.images)
    tasks = build_tasks(files, spec)
    if spec.save_preprocessed is not None:  # before anything is built, trained or written
        check_save_folder(spec.save_preprocessed, tasks)
    if not models_exist(spec.models):
        ensure_store(spec.store)
        ensure_models(spec.models, spec.store, spec.train_epochs)
    ref = ModelRef.from_directory(spec.models)
    manifest = read_manifest(spec.models)
    prepare_out(spec.out)
    if spec.save_preprocessed is not None:
        spec.save_preprocessed.mkdir(parents=True, exist_ok=True)
    log.info("scoring %d image files", len(tasks))
    with connect(spec.cluster) as client:
        ort_threads = ort_threads_for(client)
        started = time.perf_counter()
        rows, n_parts = score_on_cluster(client, tasks, spec, ref, ort_threads)
        wall = time.perf_counter() - started
        sheet = sheet_on_cluster(client, tasks, choose_sheet(rows, spec.sheet_limit),
                                 spec.max_pixels)
        cluster = {**cluster_facts(client), "ort_threads": ort_threads, "partitions": n_parts}
    report = build_images_report(spec, rows, sheet, cluster, manifest, wall)
    write_json_atomic(spec.out / REPORT_NAME, report)
    write_renderings(report, spec.out)
    return report
