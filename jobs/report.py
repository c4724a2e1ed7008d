"""`python -m jobs.report`: the command line of `mnist_dist.cli.report` (also `mnist-dist report`)."""

from mnist_dist.cli.report import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
