"""Nightly history: one JSON line per bench run, the trailing median of earlier runs on the same
machine, and regressions beyond a noise-aware threshold."""

from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnist_dist.errors import SpecError, StoreExistsError

# Key figures compared run to run: path in bench.json → True when higher is better.
KEY_FIGURES: dict[str, bool] = {
    "figures.matmul_gflops_1thread": True,
    "figures.knn_images_per_second": True,
    "figures.knn_fraction_of_roofline": True,
    "figures.knn_over_sklearn": True,
    "figures.knn_worst_input_over_test": True,
    "figures.knn_over_faiss": True,
    "figures.knn_gemm_over_best_sgemm": True,
    "figures.knn_latency_p50_ms_batch1": False,
    "figures.knn_max_query_ms": False,
    "figures.mlp_images_per_second_batch1000": True,
    "figures.mlp_latency_p50_ms_batch1": False,
    "figures.end_to_end_images_per_second": True,
    "figures.dask_over_in_process": True,
    "figures.max_worker_peak_rss": False,
}
# The fields of a record the history reads, where present, and their JSON types.
RECORD_FIELDS: dict[str, type] = {"created": str, "machine": dict, "figures": dict}
WINDOW = 10
MIN_RUNS = 3
FLOOR = 0.10
MAD_FACTOR = 3.0


@dataclass(frozen=True)
class Regression:
    """A key figure worse than the trailing median of earlier runs by more than `allowed`."""

    figure: str
    value: float
    median: float
    allowed: float
    change: float  # relative, signed: negative is lower than the median


def lookup(record: dict[str, Any], path: str) -> float | None:
    """The number at dotted `path` in `record`, or None when absent or not a finite float."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return number if math.isfinite(number) else None


def machine_key(record: dict[str, Any]) -> str:
    """Runs are compared only on the same kind of machine: CPU model, cores, memory."""
    machine = record.get("machine")
    if not isinstance(machine, dict):
        machine = {}
    return f"{machine.get('cpu')}|{machine.get('cores')}|{machine.get('memory_bytes')}"


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every record of the JSON-lines history at `path` (none when it does not exist);
    SpecError naming the file and line of one that is no JSON object."""
    if not path.is_file():
        return []
    return [parse_record(line, f"{path}:{number}")
            for number, line in enumerate(path.read_bytes().splitlines(), start=1)
            if line.strip()]


def parse_record(line: str | bytes, where: str) -> dict[str, Any]:
    """The JSON object on one history line (`where` names it); SpecError if it is none."""
    try:
        record = json.loads(line)
    except RecursionError as exc:
        raise SpecError(f"{where}: not a JSON record (nested too deeply to read)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{where}: not a JSON record ({exc})") from exc
    except ValueError as exc:  # json's int parsing: more digits than Python converts
        raise SpecError(f"{where}: not a JSON record (a number of more than "
                        f"{sys.get_int_max_str_digits()} digits)") from exc
    if not isinstance(record, dict):
        raise SpecError(f"{where}: not a JSON object; got {type(record).__name__} instead")
    return record


def check_history(path: Path, schema: str) -> None:
    """StoreExistsError unless `path` is absent or a file of `schema` records, one per line:
    the bench appends only to its own history, never to anyone else's file or folder."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_file():
        raise StoreExistsError(f"--history {path} is not a file; expected a JSON-lines "
                               "history of jobs.bench (or no file there)")
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip() and not is_record(line, schema):
                raise StoreExistsError(
                    f"--history {path}:{number} is not a {schema} record; the bench appends "
                    "only to its own history: choose another --history"
                )


def is_record(line: bytes, schema: str) -> bool:
    """True when `line` is a JSON object of `schema` (a bench record) whose fields that the
    regression check and the trend plot read have their types."""
    try:
        record = parse_record(line, "a history line")
    except SpecError:
        return False
    return record.get("schema") == schema and all(
        isinstance(record[name], kind) for name, kind in RECORD_FIELDS.items() if name in record
    )


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append `record` as one line (append-only, so concurrent readers see whole lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")


def find_regressions(
    record: dict[str, Any], history: list[dict[str, Any]], window: int = WINDOW,
    min_runs: int = MIN_RUNS, floor: float = FLOOR, mad_factor: float = MAD_FACTOR,
) -> list[Regression]:
    """Key figures of `record` worse than the median of the last `window` runs on the same
    machine by more than max(floor·|median|, mad_factor·MAD); needs `min_runs` earlier runs."""
    same = [r for r in history if machine_key(r) == machine_key(record)][-window:]
    found = []
    for figure, higher_is_better in KEY_FIGURES.items():
        value = lookup(record, figure)
        past = [v for v in (lookup(r, figure) for r in same) if v is not None]
        if value is None or len(past) < min_runs:
            continue
        median = statistics.median(past)
        mad = statistics.median(abs(v - median) for v in past)
        allowed = max(floor * abs(median), mad_factor * mad)
        worse = median - value if higher_is_better else value - median
        if worse > allowed:
            change = (value - median) / abs(median) if median else float("inf")
            found.append(Regression(figure, value, median, allowed, change))
    return found


def regressions_as_dicts(regressions: list[Regression]) -> list[dict[str, Any]]:
    """JSON-ready regressions."""
    return [asdict(r) for r in regressions]
