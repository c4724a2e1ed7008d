"""Helpers shared by the `jobs/` entry points: argument types, logging, errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from mnist_dist.errors import MnistDistError, exit_code_for

log = logging.getLogger("mnist_dist")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value} instead")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive integers, e.g. `1,10,100`."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers; got {text!r}") from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be positive integers; got {text!r} instead")
    return values


def setup_logging(verbose: bool = False) -> None:
    """Concise INFO logging to stderr (DEBUG with `verbose`)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def run_job(job: Callable[[], int]) -> int:
    """Run `job`; an mnist-dist error becomes one `error: …` line on stderr and its exit code."""
    try:
        return job()
    except MnistDistError as err:
        print(f"error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
