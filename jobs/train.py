"""Train both models from the Zarr store: `python -m jobs.train [--store PATH] [--models DIR]`."""

from __future__ import annotations

import argparse

from mnist_dist.cli import (
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
from mnist_dist.ensure import ensure_store
from mnist_dist.storage import object_storage
from mnist_dist.training import TrainSpec, check_model_folder, check_models_target, train_models


def build_parser() -> JobArgumentParser:
    """The command line of `jobs.train`."""
    parser = JobArgumentParser(prog="python -m jobs.train", description=__doc__)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of `jobs.train`; a bad flag exits 2 with one `error:` line."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    setup_logging()
    return run_job(lambda: train(args), args)


def train(args: argparse.Namespace) -> int:
    """Train, export, verify and checksum both models."""
    spec = TrainSpec(
        store=args.store, models=args.models, epochs=args.epochs, seed=args.seed,
        train_limit=args.train_limit, force=args.force,
    )
    check_model_folder(spec)
    with object_storage(args.storage_options, {"--store": args.store, "--models": args.models}):
        check_models_target(spec)  # before a missing store is built
        ensure_store(args.store)
        manifest = train_models(spec)
    for name, facts in manifest["models"].items():
        print(f"{name}: test accuracy {facts['test_accuracy']:.4f}, "
              f"trained in {facts['train_seconds']:.1f} s")
    print(f"models: {args.models} (manifest.json lists every artifact's SHA-256)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
