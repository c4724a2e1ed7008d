"""Re-render a run's report: `python -m jobs.report RUN` writes RUN/report.html and RUN/report.md.

Reads only RUN/report.json (RUN may also be the JSON file itself): no cluster, no models.
"""

from __future__ import annotations

import argparse

import mnist_dist as md
from mnist_dist.cli.arguments import JobArgumentParser, path_arg, run_job, setup_logging


def build_parser(prog: str = "python -m jobs.report") -> JobArgumentParser:
    """The command line of `jobs.report`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("run", type=path_arg, metavar="RUN",
                        help="run folder holding report.json (or the report.json path)")
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.report") -> argparse.Namespace:
    """Parse the command line of `jobs.report`; a bad argument exits 2 with one `error:` line."""
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m jobs.report") -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: report(args), args)


def report(args: argparse.Namespace) -> int:
    """Render the run's HTML and Markdown and print their paths."""
    for path in md.render_report(args.run):
        print(f"report: {path}")
    return 0

