"""Helpers shared by the `jobs/` entry points: argument types, logging, errors to exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from mnist_dist.cluster import ClusterSpec, TlsFiles
from mnist_dist.errors import ClusterError, MnistDistError, exit_code_for

log = logging.getLogger("mnist_dist")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value} instead")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value} instead")
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


def add_cluster_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags that choose the Dask cluster, shared by every job that runs on one."""
    parser.add_argument("--scheduler", help="address of a running Dask scheduler, tcp:// or "
                        "tls:// (default: start a LocalCluster sized to this machine)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the scheduler (default: 30)")
    parser.add_argument("--tls-ca", help="CA certificate (PEM) for a tls:// scheduler")
    parser.add_argument("--tls-cert", help="client certificate (PEM)")
    parser.add_argument("--tls-key", help="client private key (PEM)")
    parser.add_argument("--workers", type=positive_int, help="LocalCluster worker processes")
    parser.add_argument("--threads-per-worker", type=positive_int, default=1,
                        help="LocalCluster threads per worker (default: 1)")
    parser.add_argument("--dashboard-address", default="127.0.0.1:0",
                        help="LocalCluster dashboard bind address (default: 127.0.0.1, any port)")


def cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    """The cluster chosen by `add_cluster_arguments`' flags."""
    tls = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        raise ClusterError("--tls-ca, --tls-cert and --tls-key go together; got only some")
    return ClusterSpec(
        scheduler=args.scheduler, n_workers=args.workers,
        threads_per_worker=args.threads_per_worker, connect_timeout=args.connect_timeout,
        dashboard_address=args.dashboard_address,
        tls=TlsFiles(args.tls_ca, args.tls_cert, args.tls_key) if all(tls) else None,
    )


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
