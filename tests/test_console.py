"""What a user sees on the console: training without TensorFlow's C++ log lines."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
