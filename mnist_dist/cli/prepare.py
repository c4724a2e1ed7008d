"""Build the MNIST Zarr store: `python -m jobs.prepare [--source PATH | --download DIR]`.

With `--expand N` it then writes N deformed test digits as group `expanded`, generated on Dask
workers (see `mnist_dist.data.expand`).
"""

from __future__ import annotations

import argparse

import mnist_dist as md
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_cluster_arguments,
    add_storage_options_argument,
    cluster_spec,
    digit_count,
    from_setting,
    non_empty,
    path_arg,
    positive_int,
    positive_mib,
    run_job,
    seed_int,
    setup_logging,
)
from mnist_dist.preparation.spec import SPLITS


def build_parser(prog: str = "python -m jobs.prepare") -> JobArgumentParser:
    """The command line of `jobs.prepare`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    origin = parser.add_mutually_exclusive_group()
    origin.add_argument("--source", type=path_arg, help="folder of IDX files or an .npz "
                        "(default: the vendored copy)")
    origin.add_argument("--download", type=path_arg, metavar="DIR",
                        help="download the IDX files into DIR, then use them")
    parser.add_argument("--split", choices=SPLITS, default=from_setting("prepare.split"),
                        help="seed: the study's 80/20 split; canonical: 60k/10k "
                        "(default: %(default)s)")
    parser.add_argument("--store", type=non_empty, default=from_setting("store"),
                        help="Zarr store to write, path or URL (s3://…) (default: %(default)s)")
    parser.add_argument("--chunk-rows", type=positive_int,
                        default=from_setting("prepare.chunk-rows"),
                        help="rows per Zarr chunk (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rebuild an existing store")
    add_storage_options_argument(parser)
    expand = parser.add_argument_group("expanded test set (deformed digits, generated on Dask)")
    expand.add_argument("--expand", type=digit_count, metavar="N",
                        help="write N deformed test digits as group `expanded`")
    expand.add_argument("--seed", type=seed_int, default=from_setting("expand.seed"),
                        help="seed of the deformations (default: %(default)s)")
    expand.add_argument("--partition-mb", type=positive_mib, default=from_setting("expand.partition-mb"),
                        help="memory target per generation partition in MiB, rounded down to "
                        "whole chunks (default: %(default)s)")
    add_cluster_arguments(expand)
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.prepare") -> argparse.Namespace:
    """Parse the command line of `jobs.prepare`; a bad flag exits 2 with one `error:` line."""
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m jobs.prepare") -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: prepare(args), args)


def prepare(args: argparse.Namespace) -> int:
    """Build the store (then the expanded split) and print what was written."""
    # Every setting is checked (by the spec and the run) before the download or the build starts.
    spec = md.PrepareSpec(
        store=args.store, source=args.source, download=args.download, split=args.split,
        chunk_rows=args.chunk_rows, force=args.force, expand=args.expand, seed=args.seed,
        partition_mb=args.partition_mb, cluster=cluster_spec(args),
    )
    md.apply_storage_options(args.storage_options)
    print(md.prepare(spec).summary_text())
    return 0

