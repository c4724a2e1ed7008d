"""Build the MNIST Zarr store: `python -m jobs.prepare [--source PATH | --download DIR]`.

With `--expand N` it then writes N deformed test digits as group `expanded`, generated on Dask
workers (see `mnist_dist.data.expand`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_dist.cli import (
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
from mnist_dist.data.expand_graph import ExpandSpec, check_group_target
from mnist_dist.data.sources import download, load_source
from mnist_dist.data.store import SPLITS, STORE_FORMAT, build_store, open_root, store_info
from mnist_dist.errors import SpecError, StoreExistsError, StoreNotFoundError
from mnist_dist.expand_job import run_expand, summary_line
from mnist_dist.locations import is_url
from mnist_dist.publish import exists
from mnist_dist.storage import object_storage


def build_parser() -> JobArgumentParser:
    """The command line of `jobs.prepare`."""
    parser = JobArgumentParser(prog="python -m jobs.prepare", description=__doc__)
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of `jobs.prepare`; a bad flag exits 2 with one `error:` line."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    setup_logging()
    return run_job(lambda: prepare(args), args)


def prepare(args: argparse.Namespace) -> int:
    """Load the source and build the store (then the expanded split)."""
    # Every setting is checked before the download or the store build starts.
    if args.expand and is_url(args.store):
        raise SpecError(f"--expand needs a local --store (the expanded split is built beside "
                        f"it on disk); got {args.store} instead")
    expand = ExpandSpec(store=Path(args.store), n=args.expand, seed=args.seed,
                        partition_mb=args.partition_mb, force=args.force) if args.expand else None
    cluster = cluster_spec(args)
    if expand:
        check_group_target(expand)
    with object_storage(args.storage_options, {"--store": args.store}):
        check_store_target(args.store)
    source = download(args.download) if args.download else args.source
    raw = load_source(source)
    with object_storage(args.storage_options, {"--store": args.store}):
        path = build_store(raw, args.store, args.split, args.chunk_rows, args.force)
        info = store_info(path)
    print(f"store {path}: n_train={info['n_train']} n_test={info['n_test']} "
          f"split={info['split']['name']}")
    if expand:
        print(summary_line(run_expand(expand, cluster)))
    return 0


def check_store_target(store: str) -> None:
    """StoreExistsError when `store` holds something that is not a mnist-dist store (a file,
    anyone else's folder), with or without --force: --force rebuilds a store, never other data."""
    if not exists(store):
        return
    try:
        open_root(store)
    except StoreNotFoundError:
        raise StoreExistsError(
            f"{store} exists and is not a mnist-dist store (no {STORE_FORMAT} zarr.json); "
            "--force replaces only a store: move it away or choose another --store"
        ) from None


if __name__ == "__main__":
    raise SystemExit(main())
