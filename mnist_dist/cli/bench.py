"""Benchmark both predictors against the machine's matmul limit, the study's baselines, one
process and dask-ml: `python -m jobs.bench [--scheduler ADDRESS] [--history PATH]`.

Writes OUT/bench.json, OUT/bench.txt and OUT/bench.html. Exit code 1 when `--history` shows a
regression against earlier runs on the same machine.
"""

from __future__ import annotations

import argparse

from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_cluster_arguments,
    batch_sizes,
    cluster_spec,
    from_setting,
    int_list,
    path_arg,
    plain_name,
    run_job,
    setup_logging,
)

REGRESSION_EXIT = 1


def build_parser(prog: str = "python -m jobs.bench") -> JobArgumentParser:
    """The command line of `jobs.bench`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--store", type=path_arg, default=from_setting("store"),
                        help="Zarr store (default: %(default)s)")
    parser.add_argument("--models", type=path_arg, default=from_setting("models"),
                        help="model folder (default: %(default)s)")
    parser.add_argument("--out", type=path_arg, default=from_setting("bench.out"),
                        help="folder for bench.json, bench.txt, bench.html (default: %(default)s)")
    add_cluster_arguments(parser)
    parser.add_argument("--split", type=plain_name, default=from_setting("score.split"),
                        help="store group to score (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short timings: a smoke test for CI")
    parser.add_argument("--skip-baselines", action="store_true",
                        help="skip scikit-learn and Keras (needed when TensorFlow is absent)")
    parser.add_argument("--history", type=path_arg,
                        help="JSON-lines history: compare with earlier runs, then append this one")
    parser.add_argument("--batch-sizes", type=batch_sizes,
                        help="batch sizes of the sweep (default: the setting score.batch-sizes, "
                        f"{from_setting('score.batch-sizes')})")
    parser.add_argument("--partition-sizes", type=int_list,
                        help="partition rows of the end-to-end runs (default: 500,1000,3500 and "
                        "jobs.score's default)")
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.bench") -> argparse.Namespace:
    """Parse the command line of `jobs.bench`; a bad flag exits 2 with one `error:` line."""
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m jobs.bench") -> int:
    """Run the benchmark; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: bench(args), args)


def bench(args: argparse.Namespace) -> int:
    """Build the spec from the arguments, run it, print the table."""
    from mnist_dist.bench.render import table_text
    from mnist_dist.bench.run import BENCH_JSON, BenchSpec, run_bench

    spec = BenchSpec(
        store=args.store, models=args.models, out=args.out, split=args.split,
        cluster=cluster_spec(args),
        quick=args.quick, baselines=not args.skip_baselines, history=args.history,
        batch_sizes=args.batch_sizes, partition_sizes=args.partition_sizes,
    )
    document = run_bench(spec)
    print(table_text(document))
    print(f"bench: {spec.out / BENCH_JSON}")
    return REGRESSION_EXIT if document["regressions"] else 0

