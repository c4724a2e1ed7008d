"""The `mnist-dist` console script: `mnist-dist <job> [flags]` is `python -m jobs.<job> [flags]`."""

from __future__ import annotations

import importlib
import sys

from mnist_dist.cli.arguments import USAGE_EXIT

# Job name → what it does (the first line of `mnist-dist --help`).
JOBS = {
    "prepare": "build the Zarr store from the vendored MNIST (and grow a split with --expand)",
    "train": "fit the KNN and the MLP, export the MLP to ONNX",
    "score": "score a split (or your own image files) with both models on Dask",
    "ingest": "add your own digits to the store as a split",
    "export": "a run's predictions as Parquet or CSV",
    "report": "render a run's report.json as HTML and Markdown again",
    "bench": "the benchmarks",
    "scale": "the scaling benchmark",
}


def usage() -> str:
    """The text of `mnist-dist --help`."""
    width = max(map(len, JOBS))
    lines = [f"  {name:<{width}}  {text}" for name, text in JOBS.items()]
    return "\n".join(["usage: mnist-dist <job> [flags]   (mnist-dist <job> --help for its flags)",
                      "", "jobs:", *lines])


def main(argv: list[str] | None = None) -> int:
    """Run `mnist-dist <job> …`; returns the job's exit code (2 for an unknown job)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else USAGE_EXIT
    job, rest = args[0], args[1:]
    if job not in JOBS:
        print(f"error: the job must be one of {', '.join(JOBS)}; got {job!r} instead; "
              "see mnist-dist --help", file=sys.stderr)
        return USAGE_EXIT
    module = importlib.import_module(f"mnist_dist.cli.{job}")
    return int(module.main(rest, prog=f"mnist-dist {job}"))
