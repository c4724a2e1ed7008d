"""`python -m jobs.scale`: the command line of `mnist_dist.cli.scale` (also `mnist-dist scale`)."""

from mnist_dist.cli.scale import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
