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
from mnist_dist.errors import StoreExistsError

RUN_FILE = "run.json"
PARTITIONS_DIR = "partitions"


def marker_path(run_dir: Path, index: int) -> Path:
    """Where the marker of partition `index` lives."""
    return run_dir / PARTITIONS_DIR / f"{index:06d}.json"


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
        recorded = json.loads(run_file.read_text())
        if recorded != identity:
            changed = sorted(k for k in identity if recorded.get(k) != identity[k])
            raise StoreExistsError(
                f"{run_file}: cannot resume, the run differs in {', '.join(changed)}; "
                "choose a new --out"
            )
        return finished_partitions(run_dir)
    (run_dir / PARTITIONS_DIR).mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_file, identity)
    return {}


def finished_partitions(run_dir: Path) -> dict[int, dict[str, Any]]:
    """Markers of the finished partitions, keyed by partition index."""
    markers = {}
    for path in sorted((run_dir / PARTITIONS_DIR).glob("*.json")):
        marker = json.loads(path.read_text())
        markers[int(marker["index"])] = marker
    return markers


def write_marker(run_dir: Path, marker: dict[str, Any]) -> None:
    """Record one finished partition."""
    write_json_atomic(marker_path(run_dir, int(marker["index"])), marker)
