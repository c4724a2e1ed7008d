"""A scoring run's state on disk, so an interrupted run can resume.

`OUT/run.json` records the run's identity (data and a stamp of its files, partitioning, model
checksums, outputs) and a random `run_id`; each finished partition leaves
`OUT/partitions/NNNNNN.json` (its rows, confusion counts, misclassified sample and timings, and
the `run_id`), written atomically after its predictions are in the Zarr store. A resumed run
recomputes only the partitions without a marker (a `--keep-going` run's failed partitions
have `NNNNNN.failed.json` instead, naming the cause); a marker of another run, of other rows, or a
file that is no marker of this run's partitions is refused, never counted. `OUT/run.lock` names the process running
in the folder (pid, host, start time): a second run on the same folder is refused while it
lives, and a lock whose process died on this host is taken over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mnist_dist.atomic import write_json_atomic, write_temporary
from mnist_dist.errors import DataError, StoreExistsError
from mnist_dist.provenance import differing_keys
from mnist_dist.report.schema import HTML_NAME, MARKDOWN_NAME, REPORT_NAME
from mnist_dist.settings import setting

RUN_FILE = "run.json"
PARTITIONS_DIR = "partitions"
LOCK_FILE = "run.lock"
PERFORMANCE_REPORT = "dask-performance.html"
# A `--images` run's own store and its staging store, made before run.json: an attempt stopped
# while ingesting leaves them, marked with IMAGES_RUN_ATTRIBUTE, for `--resume` to replace.
IMAGES_STORE = "images.zarr"
IMAGES_STAGING = "images-staging.zarr"
IMAGES_RUN_ATTRIBUTE = "mnist-dist-images-run"
# Files a run writes into its folder: each must be a file (or absent), never a folder.
RUN_FILES = (RUN_FILE, REPORT_NAME, HTML_NAME, MARKDOWN_NAME, LOCK_FILE, PERFORMANCE_REPORT)


def new_run_folder(kind: str) -> Path:
    """`RUNS/<kind>-<time>-<pid>` (setting `runs`): a folder of its own for each invocation, even
    for two started in the same second, so finished runs are never overwritten."""
    return Path(setting("runs")) / datetime.now().strftime(f"{kind}-%Y%m%d-%H%M%S-{os.getpid()}")


def marker_path(run_dir: Path, index: int) -> Path:
    """Where the marker of partition `index` lives."""
    return run_dir / PARTITIONS_DIR / f"{index:06d}.json"


def failure_path(run_dir: Path, index: int) -> Path:
    """Where a `--keep-going` run records why partition `index` failed (until it is scored)."""
    return run_dir / PARTITIONS_DIR / f"{index:06d}.failed.json"


def prepare_out(out: Path) -> bool:
    """Create the run folder; refuse one that already holds a finished report, or that cannot
    hold the run's files. True when this call created the folder."""
    check_run_folder(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file at or above `out`
        raise StoreExistsError(f"{out}: --out must be a folder; {exc.filename} is a file") from exc
    return created


def check_run_folder(out: Path) -> None:
    """StoreExistsError when `out` holds a finished run, a run file's name is taken by a
    folder, `out` (or a parent) is a file, or `out` holds what no run made and no run started
    there: a run never writes over a user's files."""
    for parent in (out, *out.parents):
        if parent.exists():
            if not parent.is_dir():
                raise StoreExistsError(f"{out}: --out must be a folder; {parent} is a file")
            break
    if (out / REPORT_NAME).exists():  # written last: its presence marks a finished run
        raise StoreExistsError(f"{out / REPORT_NAME} exists; choose a new --out for this run")
    for name in RUN_FILES:
        if (out / name).is_dir():
            raise StoreExistsError(
                f"{out / name} is a folder, where the run writes a file; "
                "remove it or choose a new --out"
            )
        if (out / name).exists() and not (out / name).is_file():
            raise StoreExistsError(
                f"{out / name} is not a regular file (a FIFO, socket or device), where the run "
                "writes a file; remove it or choose a new --out"
            )
    foreign = [] if run_started(out) or not out.is_dir() else foreign_files(out)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", …" if len(foreign) > 3 else "")
        raise StoreExistsError(
            f"{out} holds {len(foreign)} file(s) or folder(s) that no run created ({shown}); "
            "--out must be a new or empty folder, or the folder of an unfinished run "
            "(with --resume)"
        )


def foreign_files(out: Path) -> list[str]:
    """Names in the folder `out` of a run not yet started that its start did not leave: all
    but a run lock, an empty partitions folder, the temporary files of both, and the stores of
    a `--images` run stopped while it ingested its files."""
    def ours(entry: Path) -> bool:
        if entry.name == PARTITIONS_DIR:
            return entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir())
        if entry.name in (IMAGES_STORE, IMAGES_STAGING):
            return interrupted_ingest(out)
        return entry.name == LOCK_FILE or entry.name.startswith(
            (f".{RUN_FILE}.", f".{LOCK_FILE}.", f"{LOCK_FILE}.stale-"))
    return sorted(entry.name for entry in out.iterdir() if not ours(entry))


def interrupted_ingest(out: Path) -> bool:
    """True when `out` holds the store of a `--images` run stopped while it ingested its files
    (a folder marked with IMAGES_RUN_ATTRIBUTE when the run created it)."""
    store = out / IMAGES_STORE
    try:
        if store.is_symlink() or not store.is_dir():
            return False
        metadata = json.loads((store / "zarr.json").read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    attributes = metadata.get("attributes") if isinstance(metadata, dict) else None
    return isinstance(attributes, dict) and attributes.get(IMAGES_RUN_ATTRIBUTE) is True


@contextlib.contextmanager
def locked_run_folder(out: Path) -> Iterator[Path]:
    """The run folder `out`, created when missing and locked while the body runs. A folder
    this call created is removed again when the run fails before writing anything to it."""
    created = prepare_out(out)
    try:
        with run_lock(out):
            check_run_folder(out)  # again under the lock: another run may just have finished
            yield out
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when empty: a started run stays resumable
        raise


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[dict[str, Any]]:
    """Hold `run_dir/run.lock` while the body runs; StoreExistsError while another process
    holds it. Released at the end, error or not."""
    path = run_dir / LOCK_FILE
    owner = take_lock(path)
    try:
        yield owner
    finally:
        if read_lock(path) == owner:
            path.unlink(missing_ok=True)


def take_lock(path: Path) -> dict[str, Any]:
    """Create the lock file atomically with this process as its owner, taking over a stale one."""
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.now(UTC).isoformat()}
    data = (json.dumps(owner, indent=2) + "\n").encode()
    for _ in range(3):
        tmp = write_temporary(path, data)
        try:
            os.link(tmp, path)  # exclusive create (O_CREAT|O_EXCL) with the content whole
            return owner
        except FileExistsError:
            holder = read_lock(path)
        finally:
            tmp.unlink(missing_ok=True)
        if not lock_is_stale(holder):
            raise StoreExistsError(f"{path.parent} is in use by {describe_owner(holder)}; "
                                   "wait for it to finish or choose a new --out")
        remove_stale_lock(path, holder)
    raise StoreExistsError(f"{path}: could not take the run lock; try again")


def read_lock(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file; None when absent, unreadable or not a regular file
    (a FIFO would block the read)."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        owner = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def lock_is_stale(owner: dict[str, Any] | None) -> bool:
    """True when the lock's process is known dead: same host, no such pid."""
    if owner is None or owner.get("host") != socket.gethostname():
        return False  # unreadable, or another host's: we cannot tell, so it is held
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_lock(path: Path, stale: dict[str, Any] | None) -> None:
    """Remove the stale lock `stale`, unless another process replaced it in the meantime."""
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)  # atomic: only one taker moves a given lock file
    except FileNotFoundError:
        return
    if read_lock(aside) != stale:  # a live lock taken in between: put it back
        with contextlib.suppress(OSError):
            os.link(aside, path)
    aside.unlink(missing_ok=True)


def describe_owner(owner: dict[str, Any] | None) -> str:
    """`process 123 on host h since 2026-…` or, for an unreadable lock, what to do."""
    if owner is None:
        return "another run (its run.lock is unreadable; remove it if no run is using this folder)"
    return (f"process {owner.get('pid')} on {owner.get('host')} "
            f"since {owner.get('started')} (run.lock)")


def run_started(run_dir: Path) -> bool:
    """True when `run_dir` holds a run that was started (finished or not)."""
    return (run_dir / RUN_FILE).exists()


@dataclass(frozen=True)
class RunRecord:
    """A started run: its random id and the markers of its finished partitions by index."""

    run_id: str
    done: dict[int, dict[str, Any]]


def start_run(
    run_dir: Path, identity: dict[str, Any], resume: bool, ranges: Sequence[tuple[int, int]]
) -> RunRecord:
    """Record a new run, or check a resumed one matches `identity`; `ranges` are the rows
    (start, stop) of each partition, which its markers must name."""
    run_file = run_dir / RUN_FILE
    if run_file.exists():
        if not resume:
            raise StoreExistsError(
                f"{run_dir} holds an unfinished run; pass --resume to continue it "
                "or choose a new --out"
            )
        recorded = read_run_file(run_file)
        check_same_run(run_file, recorded, identity)
        run_id = str(recorded["run_id"])
        return RunRecord(run_id, finished_partitions(run_dir, run_id, ranges))
    (run_dir / PARTITIONS_DIR).mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    write_json_atomic(run_file, {"run_id": run_id, **identity})
    return RunRecord(run_id, {})


def check_same_run(run_file: Path, recorded: dict[str, Any], identity: dict[str, Any]) -> None:
    """StoreExistsError naming what differs between a recorded run and the one asked for."""
    if not isinstance(recorded.get("run_id"), str):
        raise DataError(f"{run_file}: this run record has no run_id; it was written by another "
                        "version of mnist-dist: choose a new --out")
    changed = differing_keys(recorded, identity)
    if "split_stamp" in changed:
        raise StoreExistsError(
            f"{run_file}: cannot resume, the files of split {identity['split']!r} in "
            f"{identity['store']} changed since the run started (rewritten, replaced or "
            "lost); its finished partitions scored the old data: choose a new --out"
        )
    if changed:
        raise StoreExistsError(
            f"{run_file}: cannot resume, the run differs in {', '.join(sorted(changed))}; "
            "choose a new --out"
        )


def read_run_file(path: Path) -> dict[str, Any]:
    """The JSON object in a run record (`run.json` or a partition marker); DataError otherwise."""
    try:
        recorded = json.loads(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read this run record ({exc}); choose a new --out") from exc
    if not isinstance(recorded, dict):
        raise DataError(f"{path}: this run record is not a JSON object; choose a new --out")
    return recorded


def finished_partitions(
    run_dir: Path, run_id: str, ranges: Sequence[tuple[int, int]]
) -> dict[int, dict[str, Any]]:
    """Markers of the finished partitions of run `run_id`, keyed by partition index; DataError
    naming a file of the partitions folder that is not such a marker."""
    folder = run_dir / PARTITIONS_DIR
    names = sorted(path.name for path in folder.glob("*.json"))
    expected = {marker_path(run_dir, index).name: index for index in range(len(ranges))}
    failed = {failure_path(run_dir, index).name for index in range(len(ranges))}
    strays = [name for name in names if name not in expected and name not in failed]
    if strays:
        raise DataError(
            f"{folder} holds {len(strays)} file(s) that are no partition marker of this run "
            f"({', '.join(strays[:3])}{', …' if len(strays) > 3 else ''}); expected only "
            f"{marker_path(run_dir, 0).name} to {marker_path(run_dir, len(ranges) - 1).name}: "
            "remove them or choose a new --out"
        )
    markers = {}
    for name in (name for name in names if name in expected):  # failed ones are retried
        index = expected[name]
        markers[index] = check_marker(folder / name, run_id, index, ranges[index])
    return markers


def check_marker(path: Path, run_id: str, index: int, rows: tuple[int, int]) -> dict[str, Any]:
    """The marker at `path` once it names run `run_id`, partition `index` and its `rows`."""
    marker = read_run_file(path)
    found = (marker.get("run_id"), marker.get("index"), marker.get("start"), marker.get("stop"))
    if found != (run_id, index, *rows):
        raise DataError(
            f"{path}: not the marker of this run's partition {index} (expected run {run_id}, "
            f"rows {rows[0]}-{rows[1]}); remove it to score that partition again, or choose a "
            "new --out"
        )
    return marker


def write_marker(run_dir: Path, marker: dict[str, Any]) -> None:
    """Record one finished partition (no longer failed, if an earlier session failed it)."""
    index = int(marker["index"])
    write_json_atomic(marker_path(run_dir, index), marker)
    failure_path(run_dir, index).unlink(missing_ok=True)


def write_failure(run_dir: Path, failure: dict[str, Any]) -> None:
    """Record why one partition failed: its index, rows, cause and the run's id."""
    write_json_atomic(failure_path(run_dir, int(failure["index"])), failure)
