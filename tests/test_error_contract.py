"""The command-line error contract, read from every job's parser so new flags are covered.

A bad flag value gives one `error: …` line naming the flag, exit code `cli.USAGE_EXIT`, no
traceback, and no work started (nothing written in the working folder).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import jobs
from mnist_dist.bench.scale import ScaleSpec
from mnist_dist.cli import arguments as cli
from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.partitioning import partition_rows
from mnist_dist.errors import EXIT_CODES, SpecError
from mnist_dist.preparation.spec import ExpandSpec
from mnist_dist.scoring.sweep import SweepSpec

ROOT = Path(__file__).resolve().parent.parent
JOB_NAMES = sorted(m.name for m in pkgutil.iter_modules(jobs.__path__))
# Types of flags for which 0 is a meaningful value (seeds, "no minimum time").
ZERO_ALLOWED = {cli.non_negative_int, cli.seed_int, cli.non_negative_seconds}
TEXT_TYPES = {cli.non_empty, cli.path_arg, cli.plain_name, cli.bind_address}
BAD_NUMBERS = ("-1", "nan", "inf", "-inf", "1e300", str(10**30), "", "ten", " ")
BAD_LISTS = ("1,,3", "1,-2", "1,nan", "0", ",", "1,x")


def typed_flags(name: str) -> list[argparse.Action]:
    """Every option of job `name` that takes a typed value."""
    parser = importlib.import_module(f"jobs.{name}").build_parser()
    return [a for a in parser._actions if a.option_strings and a.type is not None]


def sweep_cases() -> list[tuple[str, str, str]]:
    """(job, flag, bad value) for every typed flag of every job."""
    cases = []
    for name in JOB_NAMES:
        for action in typed_flags(name):
            flag = action.option_strings[-1]
            if action.type in TEXT_TYPES:
                values: tuple[str, ...] = ("", " ")
            else:
                values = BAD_NUMBERS + (() if action.type in ZERO_ALLOWED else ("0",))
                if getattr(action.type, "__name__", "") in {"int_list", "batch_sizes", "sizes"}:
                    values += BAD_LISTS
            cases += [(name, flag, value) for value in values]
    return cases


def test_every_job_has_a_parser_of_the_contract() -> None:
    assert {"bench", "prepare", "report", "scale", "score", "train"} <= set(JOB_NAMES)
    for name in JOB_NAMES:
        module = importlib.import_module(f"jobs.{name}")
        assert isinstance(module.build_parser(), cli.JobArgumentParser), name


@pytest.mark.parametrize("name", JOB_NAMES)
def test_typed_flags_use_validating_types(name: str) -> None:
    """A plain `type=int`/`float`/`Path` would accept 0, NaN, inf or an empty value."""
    for action in typed_flags(name):
        assert action.type not in (int, float, str, Path), (name, action.option_strings)


@pytest.mark.parametrize(("name", "flag", "value"), sweep_cases())
def test_bad_flag_value_is_one_error_line(
    name: str, flag: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], data_home: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # default runs/ would land here (store and models: data home)
    main = importlib.import_module(f"jobs.{name}").main
    argv = [f"{flag}={value}"] + (["RUN"] if name == "report" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == cli.USAGE_EXIT
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {flag} "), err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir()), "work started on a bad flag value"
    assert not list(data_home.iterdir()), "work started on a bad flag value"


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs.score", "--partition-mb", "0"],
        ["jobs.score", "--dashboard-address", "garbage"],
        ["jobs.score", "--connect-timeout", "-1"],
        ["jobs.scale", "--seed", "-1"],
        ["jobs.prepare", "--expand", "100", "--partition-mb", "nan"],
        ["jobs.train", "--seed", "-1"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_bad_flag_as_users_run_it(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", *argv], cwd=tmp_path, env=env, check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == cli.USAGE_EXIT, done.stderr
    assert done.stderr.startswith(f"error: {argv[-2]} ") and len(done.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_usage_exit_is_no_project_exit_code() -> None:
    assert cli.USAGE_EXIT not in EXIT_CODES.values() and EXIT_CODES[SpecError] == 13


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClusterSpec(connect_timeout=math.nan),
        lambda: ClusterSpec(n_workers=0),
        lambda: ExpandSpec(store=Path("s"), n=10, partition_mb=0.0),
        lambda: ExpandSpec(store=Path("s"), n=10, seed=-1),
        lambda: ScaleSpec(store=Path("s"), models=Path("m"), work=Path("w"), seed=-1),
        lambda: ScaleSpec(store=Path("s"), models=Path("m"), work=Path("w"),
                          score_partition_mb=math.inf),
        lambda: SweepSpec(min_seconds=math.nan),
        lambda: SweepSpec(batch_sizes=(10, 0)),
        lambda: partition_rows(0.0, 10, 2000),
    ],
)
def test_spec_validation_raises_spec_error(build: object) -> None:
    with pytest.raises(SpecError):
        build()  # type: ignore[operator]
