"""A scoring run's state on disk, so an interrupted run can resume.

`OUT/run.json` records the run's identity (data, partitioning, model checksums, outputs); each
finished partition leaves `OUT/partitions/NNNNNN.json` (its confusion counts, misclassified
sample and timings), written atomically after its predictions are in the Zarr store. A resumed
run recomputes only the partitions without a marker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_json_atomic
from mnist_dist.errors import DataError, StoreExistsError
from mnist_dist.provenance import differing_keys
from mnist_dist.report.schema import REPORT_NAME

RUN_FILE = "run.json"
PARTITIONS_DIR = "partitions"


def marker_path(run_dir: Path, index: int) -> Path:
    """Where the marker of partition `index` lives."""
    return run_dir / PARTITIONS_DIR / f"{index:06d}.json"


def prepare_out(out: Path) -> None:
    """Create the run folder; refuse one that already holds a finished report."""
    if (out / REPORT_NAME).exists():  # written last: its presence marks a finished run
        raise StoreExistsError(f"{out / REPORT_NAME} exists; choose a new --out for this run")
    out.mkdir(parents=True, exist_ok=True)


def run_started(run_dir: Path) -> bool:
    """True when `run_dir` holds a run that was started (finished or not)."""
    return (run_dir / RUN_FILE).exists()


def start_run(run_dir: Path, identity: dict[str, Any], resume: bool) -> dict[int, dict[str, Any]]:
    """Record a new run, or check a resumed one matches; returns the finished partitions."""
    run_file = run_dir / RUN_FILE
    if run_file.exists():
        if not resume:
            raise StoreExistsError(
                f"{run_dir} holds an unfinished run; pass --resume to continue it "
                "or choose a new --out"
            )
        recorded = read_run_file(run_file)
        if recorded != identity:
            changed = sorted(differing_keys(recorded, identity))
            raise StoreExistsError(
                f"{run_file}: cannot resume, the run differs in {', '.join(changed)}; "
                "choose a new --out"
            )
        return finished_partitions(run_dir)
    (run_dir / PARTITIONS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, identity)
    return {}


def read_run_file(path: Path) -> dict[str, Any]:
    """The JSON object in a run record (`run.json` or a partition marker); DataError otherwise."""
    try:
        recorded = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read this run record ({exc}); choose a new --out") from exc
    if not isinstance(recorded, dict):
        raise DataError(f"{path}: this run record is not a JSON object; choose a new --out")
    return recorded


def finished_partitions(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Markers of the finished partitions, keyed by partition index."""
    markers = {}
    for path in sorted((run_dir / PARTITIONS_DIR).glob("*.json")):
        marker = read_run_file(path)
        markers[int(marker["index"])] = marker
    return markers


def write_marker(run_dir: Path, marker: dict[str, Any]) -> None:
    """Record one finished partition."""
    write_json_atomic(marker_path(run_dir, int(marker["index"])), marker)
