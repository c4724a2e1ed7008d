"""`python -m jobs.train`: the command line of `mnist_dist.cli.train` (also `mnist-dist train`)."""

from mnist_dist.cli.train import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
