"""What a bench run writes (OUT/bench.json, bench.txt, bench.html; the --history lines) and the
check, before any measurement, that none of it would replace what an earlier run did not make."""

from __future__ import annotations

import json
from pathlib import Path

from mnist_dist.bench import history, render
from mnist_dist.errors import StoreExistsError

SCHEMA = "mnist-dist-bench/1"
BENCH_JSON = "bench.json"
OUTPUT_NAMES = (BENCH_JSON, render.TABLE_NAME, render.HTML_NAME)  # what a run writes in OUT


def check_outputs(out: Path, history_path: Path | None) -> None:
    """StoreExistsError unless `out` is absent or a folder whose bench.json, bench.txt and
    bench.html (where present) are an earlier run's: plain files beside a bench.json of this
    schema. The --history file is checked the same way."""
    if out.exists() and not out.is_dir():
        raise StoreExistsError(f"--out {out} is a file; expected a folder")
    if history_path is not None:
        history.check_history(history_path, SCHEMA)
    present = [out / name for name in OUTPUT_NAMES
               if (out / name).exists() or (out / name).is_symlink()]
    if not present:
        return
    foreign = next((p for p in present if p.is_symlink() or not p.is_file()), None)
    if foreign is None and not is_bench_document(out / BENCH_JSON):
        foreign = out / BENCH_JSON if out / BENCH_JSON in present else present[0]
    if foreign is not None:
        raise StoreExistsError(
            f"{foreign} exists and is not the output of an earlier jobs.bench run (expected a "
            f"file beside a {SCHEMA} {BENCH_JSON}); move it away or choose another --out"
        )


def is_bench_document(path: Path) -> bool:
    """True when `path` is a plain file holding a bench document of this schema."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("schema") == SCHEMA
