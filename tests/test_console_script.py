"""The `mnist-dist` console script: `mnist-dist <job> [flags]` runs the same command line as
`python -m jobs.<job>`, installed with the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mnist_dist.cli.main import JOBS

SCRIPT = Path(sys.executable).parent / "mnist-dist"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_script_is_installed_and_lists_every_job() -> None:
    assert SCRIPT.is_file(), "pip install -e . installs the mnist-dist script"
    done = run("--help")
    assert done.returncode == 0
    assert all(f"  {job} " in done.stdout for job in JOBS)
    jobs_folder = Path(__file__).resolve().parents[1] / "jobs"
    assert set(JOBS) == {p.stem for p in jobs_folder.glob("*.py")} - {"__init__"}


def test_an_unknown_job_or_none_is_one_error_line_and_exit_2() -> None:
    unknown = run("scoer")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: the job must be one of prepare, train, score")
    assert len(unknown.stderr.splitlines()) == 1
    assert run().returncode == 2


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_job_takes_the_same_flags_under_its_own_name(job: str) -> None:
    console = run(job, "--help")
    module = subprocess.run([sys.executable, "-m", f"jobs.{job}", "--help"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert console.returncode == module.returncode == 0
    assert console.stdout.startswith(f"usage: mnist-dist {job}")
    # After the usage block (wrapped to the program name's length): the same text.
    assert console.stdout.split("\n\n", 1)[1] == module.stdout.split("\n\n", 1)[1]


def test_a_bad_flag_is_the_jobs_own_error_line() -> None:
    done = run("score", "--partition-mb", "0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --partition-mb must be")
    assert "see mnist-dist score --help" in done.stderr
