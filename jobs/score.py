"""`python -m jobs.score`: the command line of `mnist_dist.cli.score` (also `mnist-dist score`)."""

from mnist_dist.cli.score import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
