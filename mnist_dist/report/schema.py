"""The score report's `report.json` schema: its name, its file name, its JSON Schema
(`report.schema.json`, shipped in the package: every report is checked against it before it is
written), and the checks the renderer relies on when it reads one (fields present and of the
right types), so a corrupt or hostile document is one ReportError naming the field, never a
traceback.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_dist.errors import ReportError
from mnist_dist.report.analysis import MODELS

SCHEMA = "mnist-dist-report/1"
# A run of a split without labels: its models carry no accuracy, confusion or misclassified
# gallery, and `predictions` (also in labelled runs, under SCHEMA) is required.
SCHEMA_UNLABELLED = "mnist-dist-report/2"
REPORT_NAME = "report.json"
SCHEMA_FILE = "report.schema.json"  # the JSON Schema of the document, beside this module
# The renderings beside it (the images report writes the same two names).
HTML_NAME = "report.html"
MARKDOWN_NAME = "report.md"
GALLERY_LIMIT = 12
PIXELS = 784
REQUIRED_UNLABELLED: tuple[tuple[str, ...], ...] = (
    ("dataset", "store"), ("dataset", "split"), ("dataset", "n_images"),
    ("cluster", "workers"), ("cluster", "threads"),
    ("timing", "wall_seconds"), ("timing", "images_per_second"),
) + tuple(("models", m) for m in MODELS)
REQUIRED = REQUIRED_UNLABELLED + tuple(
    ("models", m, f) for m in MODELS for f in ("accuracy", "per_class_accuracy", "confusion")
)


@cache
def document_validator() -> Any:
    """The JSON Schema validator of `report.schema.json` (jsonschema, draft 2020-12), whose
    numbers are JSON's: finite (Python's json reads and writes NaN and Infinity too)."""
    import jsonschema  # only where a report is written or checked: keeps --help fast

    text = resources.files("mnist_dist.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    base = jsonschema.Draft202012Validator
    types = base.TYPE_CHECKER.redefine("number", lambda checker, value: is_finite(value))
    return jsonschema.validators.extend(base, type_checker=types)(json.loads(text))


def check_document(report: dict[str, Any]) -> None:
    """ReportError naming the first field of `report` that `report.schema.json` refuses, and
    what it expected."""
    import jsonschema

    error = jsonschema.exceptions.best_match(document_validator().iter_errors(report))
    if error is not None:
        field = ".".join(map(str, error.absolute_path)) or "(the document)"
        message = short_message(error.message, error.instance)
        raise ReportError(f"report field {field} does not match {SCHEMA_FILE}: {message}")


def short_message(message: str, instance: Any, limit: int = 200) -> str:
    """A schema error's `message` of at most about `limit` characters: a long value it starts
    with (e.g. a number of 4,000 digits) is cut short, so what was expected still shows."""
    value = repr(instance)
    if len(value) > 40 and message.startswith(value):
        message = f"{value[:20]}… ({len(value):,} characters){message[len(value):]}"
    return message if len(message) <= limit else message[:limit] + " …"


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite(value: Any) -> bool:
    """A number, not NaN or infinite (an int of any size is finite)."""
    return is_integer(value) or (is_number(value) and math.isfinite(value))


def is_positive(value: Any) -> bool:
    """A number above zero."""
    return is_number(value) and value > 0


def is_text(value: Any) -> bool:
    """A string."""
    return isinstance(value, str)


def or_null(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """`test`, or the value is JSON null."""
    return lambda value: value is None or test(value)


# What the renderer formats: field → (what it must be, its test, may it be absent).
Kind = tuple[str, Callable[[Any], bool], bool]
ABSENT = object()  # what `lookup` finds where a field is missing
ANY: Kind = ("present", lambda v: True, False)
NUMBER: Kind = ("a number", is_number, False)
INTEGER: Kind = ("an integer", is_integer, False)
FINITE: Kind = ("a finite number", is_finite, False)
TEXT: Kind = ("a string", is_text, False)
OPTIONAL_TEXT: Kind = ("a string", is_text, True)
OPTIONAL_NUMBER: Kind = ("a number or null", or_null(is_number), True)
OPTIONAL_OBJECT: Kind = ("an object", lambda v: isinstance(v, dict), True)
OPTIONAL_LIST: Kind = ("a list", lambda v: isinstance(v, list), True)
TOP_FIELDS: dict[tuple[str, ...], Kind] = {
    ("dataset", "store"): TEXT, ("dataset", "split"): TEXT, ("dataset", "n_images"): INTEGER,
    ("cluster", "workers"): INTEGER, ("cluster", "threads"): INTEGER,
    ("cluster", "worker_rss_bytes"): OPTIONAL_OBJECT,
    ("timing", "wall_seconds"): NUMBER, ("timing", "images_per_second"): NUMBER,
    ("throughput",): OPTIONAL_LIST, ("outputs",): OPTIONAL_OBJECT, ("versions",): OPTIONAL_OBJECT,
    ("failed_partitions",): OPTIONAL_LIST, ("time",): OPTIONAL_OBJECT,
    ("startup",): OPTIONAL_OBJECT,
}
TIME_FIELDS: dict[str, Kind] = {
    "phases": ("an object", lambda v: isinstance(v, dict), False), "source": OPTIONAL_TEXT,
}
STARTUP_FIELDS: dict[str, Kind] = {
    "worker_seconds": ("an object", lambda v: isinstance(v, dict), False),
    "max_seconds": FINITE, "workers": INTEGER, "knn_kernels": OPTIONAL_OBJECT,
}
FAILED_FIELDS: dict[str, Kind] = {"index": INTEGER, "start": INTEGER, "stop": INTEGER,
                                  "cause": TEXT}
SPEED_FIELDS: dict[str, Kind] = {
    "task_seconds": OPTIONAL_NUMBER, "seconds": OPTIONAL_NUMBER,
    "images_per_second": OPTIONAL_NUMBER, "train_seconds": OPTIONAL_NUMBER,
    "artifacts": OPTIONAL_OBJECT,
}
MODEL_FIELDS: dict[str, Kind] = {
    "accuracy": NUMBER, **SPEED_FIELDS, "misclassified": OPTIONAL_LIST,
}
ARTIFACT_FIELDS: dict[str, Kind] = {"bytes": FINITE, "sha256": OPTIONAL_TEXT}
GALLERY_FIELDS: dict[str, Kind] = {"index": INTEGER, "true": ANY, "predicted": ANY,
                                   "id": OPTIONAL_TEXT}
DIGIT: Kind = ("a digit 0-9", lambda v: is_integer(v) and 0 <= v <= 9, True)
PREDICTION_FIELDS: dict[str, Kind] = {
    "counts": ("an object", lambda v: isinstance(v, dict), False),
    "agreement": ("an object or null", or_null(lambda v: isinstance(v, dict)), True),
    "confidence": ("an object or null", or_null(lambda v: isinstance(v, dict)), True),
    "least_confident": OPTIONAL_LIST, "disagreements": OPTIONAL_LIST,
}
CONFIDENCE_FIELDS: dict[str, Kind] = {
    "histogram": ("a list", lambda v: isinstance(v, list), False),
    "thresholds": ("a list", lambda v: isinstance(v, list), False),
}
THRESHOLD_FIELDS: dict[str, Kind] = {"below": FINITE, "count": INTEGER, "share": OPTIONAL_NUMBER}
SAMPLE_FIELDS: dict[str, Kind] = {
    "index": INTEGER, "true": DIGIT, "knn": DIGIT, "mlp": DIGIT, "probability": OPTIONAL_NUMBER,
    "neighbours": OPTIONAL_LIST, "id": OPTIONAL_TEXT,
}
NEIGHBOUR_FIELDS: dict[str, Kind] = {"row": INTEGER, "distance": OPTIONAL_NUMBER}
SWEEP_FIELDS: dict[str, Kind] = {
    "model": TEXT, "batch_size": ("a positive integer", lambda v: is_integer(v) and v > 0, False),
    "images_per_second": ("a positive number", is_positive, False),
    "ms_per_image": ("a positive number", is_positive, False),
    "repeats": ("an integer or null", or_null(is_integer), True),
}


def read_report(path: Path) -> dict[str, Any]:
    """Load and check a report.json: the fields the renderer needs, then `report.schema.json`;
    ReportError says what is missing or wrong."""
    report = load_report(path)
    check_report(report)
    check_document(report)
    return report


def load_report(path: Path) -> dict[str, Any]:
    """The JSON object in the file at `path`; ReportError naming the file unless it holds one."""
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would block the read
        raise ReportError(f"report {path} must be a regular file; got a folder, FIFO, socket "
                          "or device instead")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        message = f"report {path} does not exist; run `python -m jobs.score` first"
        raise ReportError(message) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"report {path} must be readable JSON; got {exc} instead") from exc
    except RecursionError as exc:
        raise ReportError(f"report {path} must be readable JSON; got arrays or objects nested "
                          "too deeply to read instead") from exc
    except ValueError as exc:  # json's int parsing: more digits than sys.get_int_max_str_digits
        raise ReportError(f"report {path} must be readable JSON; got a number of more than "
                          f"{sys.get_int_max_str_digits()} digits instead") from exc
    if not isinstance(report, dict):
        raise ReportError(f"report {path} must be a JSON object; got {type(report).__name__}")
    return report


def check_report(report: dict[str, Any]) -> None:
    """Raise ReportError unless `report` has the schema and the fields the renderer needs."""
    if report.get("schema") not in (SCHEMA, SCHEMA_UNLABELLED):
        raise ReportError(
            f"report schema must be {SCHEMA!r} (or {SCHEMA_UNLABELLED!r} for a split without "
            f"labels); got {report.get('schema')!r} instead"
        )
    labelled = is_labelled(report)
    for path in REQUIRED if labelled else (*REQUIRED_UNLABELLED, ("predictions",)):
        value = lookup(report, path)
        if value is None or value is ABSENT:
            raise ReportError(f"report field {'.'.join(path)} is missing")
    for path, kind in TOP_FIELDS.items():
        check_field(report, path, kind)
    for worker, rss in (report["cluster"].get("worker_rss_bytes") or {}).items():
        check_value(rss, f"cluster.worker_rss_bytes.{worker}", FINITE)
    for name in MODELS:
        if labelled:
            check_model(name, report["models"][name])
        else:
            check_object(report["models"][name], f"models.{name}", SPEED_FIELDS)
    if "predictions" in report:
        check_predictions(report["predictions"])
    for i, row in enumerate(report.get("throughput") or []):
        check_object(row, f"throughput.{i}", SWEEP_FIELDS)
    for i, row in enumerate(report.get("failed_partitions") or []):
        check_object(row, f"failed_partitions.{i}", FAILED_FIELDS)
    if "time" in report:
        check_object(report["time"], "time", TIME_FIELDS)
        for phase, seconds in report["time"]["phases"].items():
            check_value(seconds, f"time.phases.{phase}", FINITE)
    if "startup" in report:
        check_object(report["startup"], "startup", STARTUP_FIELDS)
        for worker, seconds in report["startup"]["worker_seconds"].items():
            check_value(seconds, f"startup.worker_seconds.{worker}", FINITE)


def is_labelled(report: dict[str, Any]) -> bool:
    """True when the report's run had labels (schema 1): accuracy sections are shown."""
    return report.get("schema") == SCHEMA


def lookup(document: Any, path: tuple[Any, ...]) -> Any:
    """The value at `path` (keys and list indices) in `document`, ABSENT if there is none.

    ReportError when a step of the path exists but is not an object (e.g. a number).
    """
    for depth, key in enumerate(path):
        if isinstance(key, str) and not isinstance(document, dict):
            where = ".".join(map(str, path[:depth]))
            raise ReportError(f"report field {where} must be an object; got {document!r} instead")
        try:
            document = document[key]
        except (KeyError, IndexError, TypeError):
            return ABSENT
    return document


def check_field(document: Any, path: tuple[str, ...], kind: Kind) -> None:
    """ReportError unless the value at `path` is of `kind` (or absent where allowed)."""
    check_value(lookup(document, path), ".".join(path), kind)


def check_object(value: Any, name: str, fields: dict[str, Kind]) -> None:
    """ReportError unless `value` is an object whose `fields` have their kinds."""
    if not isinstance(value, dict):
        raise ReportError(f"report field {name} must be an object; got {value!r:.80} instead")
    for field, kind in fields.items():
        check_value(value.get(field, ABSENT), f"{name}.{field}", kind)


def check_value(value: Any, name: str, kind: Kind) -> None:
    """ReportError naming field `name` unless `value` is of `kind`."""
    what, test, optional = kind
    if value is ABSENT:
        if optional:
            return
        raise ReportError(f"report field {name} is missing")
    if not test(value):
        raise ReportError(f"report field {name} must be {what}; got {value!r:.80} instead")


def check_model(name: str, model: Any) -> None:
    """Raise ReportError unless the model's fields have their types and shapes and its gallery
    pixels decode."""
    check_object(model, f"models.{name}", MODEL_FIELDS)
    for field, shape, kind in (("confusion", (10, 10), INTEGER),
                               ("per_class_accuracy", (10,), OPTIONAL_NUMBER)):
        check_grid(model[field], ("models", name, field), shape, kind)
    for file, artifact in (model.get("artifacts") or {}).items():
        check_object(artifact, f"models.{name}.artifacts.{file}", ARTIFACT_FIELDS)
    for i, item in enumerate((model.get("misclassified") or [])[:GALLERY_LIMIT]):
        check_object(item, f"models.{name}.misclassified.{i}", GALLERY_FIELDS)
        decode_pixels(item)


def check_grid(value: Any, path: tuple[str, ...], shape: tuple[int, ...], kind: Kind) -> None:
    """ReportError unless `value` is nested lists of `shape` whose members are of `kind`."""
    try:
        got = np.shape(value)
    except ValueError:  # ragged nested lists
        got = "ragged"
    if got != shape:
        raise ReportError(f"{'.'.join(path)} must have shape {shape}; got {got} instead")
    for index in np.ndindex(shape):
        check_value(lookup(value, index), ".".join(map(str, (*path, *index))), kind)


def check_predictions(section: Any) -> None:
    """ReportError unless the `predictions` section has the counts, rates and galleries the
    renderer shows, of their types and shapes, and every gallery image decodes."""
    check_object(section, "predictions", PREDICTION_FIELDS)
    for name, counts in section["counts"].items():
        check_grid(counts, ("predictions", "counts", str(name)), (10,), INTEGER)
    if section.get("agreement") is not None:
        check_object(section["agreement"], "predictions.agreement", {"rate": OPTIONAL_NUMBER})
        check_grid(section["agreement"].get("matrix"), ("predictions", "agreement", "matrix"),
                   (10, 10), INTEGER)
    if section.get("confidence") is not None:
        confidence = section["confidence"]
        check_object(confidence, "predictions.confidence", CONFIDENCE_FIELDS)
        for i, value in enumerate(confidence["histogram"]):
            check_value(value, f"predictions.confidence.histogram.{i}", INTEGER)
        for i, row in enumerate(confidence["thresholds"]):
            check_object(row, f"predictions.confidence.thresholds.{i}", THRESHOLD_FIELDS)
    for name in ("least_confident", "disagreements"):
        for i, item in enumerate((section.get(name) or [])[:GALLERY_LIMIT]):
            where = f"predictions.{name}.{i}"
            check_object(item, where, SAMPLE_FIELDS)
            decode_pixels(item, where)
            for j, neighbour in enumerate(item.get("neighbours") or []):
                check_object(neighbour, f"{where}.neighbours.{j}", NEIGHBOUR_FIELDS)
                decode_pixels(neighbour, f"{where}.neighbours.{j}")


def meta(report: dict[str, Any]) -> dict[str, Any]:
    """The document-level fields: schema, creation time, code version."""
    return {k: report.get(k) for k in ("schema", "created", "code_version")}


def decode_pixels(item: dict[str, Any], where: str | None = None) -> np.ndarray:
    """The (784,) uint8 pixels of a gallery entry (`where` names it; default its index);
    ReportError if they are not 784 bytes."""
    name = where or f"gallery entry {item.get('index')}"
    try:
        raw = base64.b64decode(item["pixels_b64"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ReportError(f"{name} has no valid pixels_b64") from exc
    if len(raw) != PIXELS:
        raise ReportError(f"{name} must hold 784 pixels; got {len(raw)} instead")
    return np.frombuffer(raw, dtype=np.uint8)
