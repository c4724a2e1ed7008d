"""`python -m jobs.bench`: the command line of `mnist_dist.cli.bench` (also `mnist-dist bench`)."""

from mnist_dist.cli.bench import build_parser, main, parse_args

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
