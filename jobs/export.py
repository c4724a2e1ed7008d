"""`python -m jobs.export`: the command line of `mnist_dist.cli.export` (also `mnist-dist export`)."""

from mnist_dist.cli.export import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
