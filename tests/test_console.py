"""What a user sees on the console: training without TensorFlow's C++ log lines, a progress
line with its rate and the time left, a LocalCluster closed without the nanny's kill warning."""

from __future__ import annotations

import atexit
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnist_dist.cluster import ClusterSpec, connect
from mnist_dist.scoring.graph import progress_text

# absl/TensorFlow C++ log lines: "I0000 00:00:… file.cc:123] …", "E0000 …", the absl preamble,
# oneDNN and CPU-feature notices.
TF_NOISE = re.compile(r"^[IWEF]\d{4} |absl::|oneDNN|cpu_feature_guard|NodeDef mentions", re.MULTILINE)


def test_training_prints_no_tensorflow_log_lines(small_store: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobs.train", "--store", str(small_store),
         "--models", str(tmp_path / "one-epoch"), "--epochs", "1"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "mlp: test accuracy" in done.stdout  # it did train
    assert not TF_NOISE.search(done.stderr), TF_NOISE.findall(done.stderr)


def test_the_progress_line_shows_rows_per_second_and_the_time_left() -> None:
    assert progress_text(3, 7, 6000, 8000, 2.0) == (
        f"[{'#' * 12}{' ' * 18}] 3/7 partitions · 3,000 rows/s · 3 s left")
    assert progress_text(7, 7, 14000, 0, 4.0).endswith("7/7 partitions · 3,500 rows/s · done")
    assert progress_text(0, 7, 0, 14000, 0.0).endswith("0/7 partitions")  # no rate yet


def exit_slowly(seconds: float, proof: str) -> None:
    """In a worker process: take `seconds` to exit, as a loaded machine's interpreter teardown
    of numba, onnxruntime and scipy can, then write `proof` (a killed process never does)."""
    def finish() -> None:
        time.sleep(seconds)
        Path(proof).write_text("exited")

    atexit.register(finish)


@pytest.mark.cluster
def test_a_worker_slow_to_exit_is_not_killed_on_a_normal_close(
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    proof = tmp_path / "exited"
    with caplog.at_level(logging.WARNING, logger="distributed"), connect(
            ClusterSpec(n_workers=1)) as client:
        client.run(exit_slowly, 6.0, str(proof))
    assert proof.read_text() == "exited"  # the worker process ended on its own
    assert not [r.getMessage() for r in caplog.records if "still alive" in r.getMessage()]
