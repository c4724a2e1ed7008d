"""Train both models from the Zarr store: `python -m jobs.train [--store PATH] [--models DIR]`."""

from __future__ import annotations

import argparse

import mnist_dist as md
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_storage_options_argument,
    epoch_count,
    from_setting,
    non_empty,
    positive_int,
    run_job,
    seed_int,
    setup_logging,
)


def build_parser(prog: str = "python -m jobs.train") -> JobArgumentParser:
    """The command line of `jobs.train`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--store", type=non_empty, default=from_setting("store"),
                        help="Zarr store, path or URL (s3://…), built from the vendored MNIST "
                        "if missing (default: %(default)s)")
    parser.add_argument("--models", type=non_empty, default=from_setting("models"),
                        help="model folder to write, path or URL (default: %(default)s)")
    parser.add_argument("--epochs", type=epoch_count, default=from_setting("train.epochs"),
                        help="MLP epochs (default: %(default)s)")
    parser.add_argument("--seed", type=seed_int, default=from_setting("train.seed"),
                        help="MLP seed (default: %(default)s)")
    parser.add_argument("--train-limit", type=positive_int,
                        help="train on the first N training rows only (quick runs)")
    parser.add_argument("--force", action="store_true", help="replace existing models")
    add_storage_options_argument(parser)
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.train") -> argparse.Namespace:
    """Parse the command line of `jobs.train`; a bad flag exits 2 with one `error:` line."""
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m jobs.train") -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: train(args), args)


def train(args: argparse.Namespace) -> int:
    """Train, export, verify and checksum both models; print their test figures."""
    spec = md.TrainSpec(
        store=args.store, models=args.models, epochs=args.epochs, seed=args.seed,
        train_limit=args.train_limit, force=args.force,
    )
    md.apply_storage_options(args.storage_options)
    print(md.train(spec).summary_text())
    return 0

