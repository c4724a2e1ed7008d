"""`python -m jobs.prepare`: the command line of `mnist_dist.cli.prepare` (also `mnist-dist prepare`)."""

from mnist_dist.cli.prepare import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
