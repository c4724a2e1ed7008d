"""Score the test digits with both models on Dask: `python -m jobs.score [--scheduler ADDRESS]`.

Builds the store and trains the models first when they are missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_dist.cli import int_list, positive_int, run_job, setup_logging
from mnist_dist.cluster import ClusterSpec
from mnist_dist.data.store import DEFAULT_STORE
from mnist_dist.pipeline import DEFAULT_MODELS, DEFAULT_PARTITION_ROWS, ScoreRunSpec, run_score
from mnist_dist.report.document import summary_text
from mnist_dist.throughput import BATCH_SIZES, SweepSpec


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of `jobs.score`."""
    parser = argparse.ArgumentParser(prog="python -m jobs.score", description=__doc__)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--out", type=Path, help="run folder (default: runs/score-<time>)")
    parser.add_argument("--split", default="test", help="store group to score (default: test)")
    parser.add_argument("--partition-rows", type=positive_int, default=DEFAULT_PARTITION_ROWS)
    parser.add_argument("--scheduler", help="address of a running Dask scheduler "
                        "(default: start a LocalCluster sized to this machine)")
    parser.add_argument("--connect-timeout", type=float, default=30.0,
                        help="seconds to wait for the scheduler (default: 30)")
    parser.add_argument("--dashboard-address", default="127.0.0.1:0",
                        help="LocalCluster dashboard bind address (default: 127.0.0.1, any port)")
    parser.add_argument("--workers", type=positive_int, help="LocalCluster worker processes")
    parser.add_argument("--threads-per-worker", type=positive_int, default=1)
    parser.add_argument("--batch-sizes", type=int_list, default=BATCH_SIZES,
                        help="batch sizes of the throughput table (default: 1,10,100,1000,10000)")
    parser.add_argument("--sweep-seconds", type=float, default=1.0,
                        help="minimum timing per batch size (default: 1.0)")
    parser.add_argument("--epochs", type=positive_int, default=10,
                        help="MLP epochs if the models must be trained first")
    parser.add_argument("--performance-report", action="store_true",
                        help="save Dask's performance report as OUT/dask-performance.html")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show the progress bar (default: when stdout is a terminal)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    setup_logging()
    return run_job(lambda: score(args))


def score(args: argparse.Namespace) -> int:
    """Build the run spec from the arguments, run it, print the summary."""
    spec = ScoreRunSpec(
        store=args.store, models=args.models, split=args.split,
        partition_rows=args.partition_rows,
        cluster=ClusterSpec(scheduler=args.scheduler, n_workers=args.workers,
                            threads_per_worker=args.threads_per_worker,
                            connect_timeout=args.connect_timeout,
                            dashboard_address=args.dashboard_address),
        sweep=SweepSpec(batch_sizes=args.batch_sizes, min_seconds=args.sweep_seconds),
        train_epochs=args.epochs,
        show_progress=sys.stdout.isatty() if args.progress is None else args.progress,
        performance_report=args.performance_report,
        **({"out": args.out} if args.out else {}),
    )
    report = run_score(spec)
    print(summary_text(report))
    print(f"report: {spec.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
