"""Build the MNIST Zarr store: `python -m jobs.prepare [--source PATH | --download DIR]`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mnist_dist.data.sources import download, load_source
from mnist_dist.data.store import DEFAULT_CHUNK_ROWS, SPLITS, build_store, store_info
from mnist_dist.errors import MnistDistError, exit_code_for


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {value} instead")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of `jobs.prepare`."""
    parser = argparse.ArgumentParser(prog="python -m jobs.prepare", description=__doc__)
    origin = parser.add_mutually_exclusive_group()
    origin.add_argument("--source", type=Path, help="folder of IDX files or an .npz "
                        "(default: the vendored copy)")
    origin.add_argument("--download", type=Path, metavar="DIR",
                        help="download the IDX files into DIR, then use them")
    parser.add_argument("--split", choices=SPLITS, default="seed")
    parser.add_argument("--store", type=Path, default=Path("data/mnist.zarr"))
    parser.add_argument("--chunk-rows", type=positive_int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--force", action="store_true", help="rebuild an existing store")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        source = download(args.download) if args.download else args.source
        raw = load_source(source)
        path = build_store(raw, args.store, args.split, args.chunk_rows, args.force)
        info = store_info(path)
    except MnistDistError as err:
        print(f"error: {' '.join(str(err).splitlines())}", file=sys.stderr)
        return exit_code_for(err)
    print(f"store {path}: n_train={info['n_train']} n_test={info['n_test']} "
          f"split={info['split']['name']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
