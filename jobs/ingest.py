"""`python -m jobs.ingest`: the command line of `mnist_dist.cli.ingest` (also `mnist-dist ingest`)."""

from mnist_dist.cli.ingest import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
