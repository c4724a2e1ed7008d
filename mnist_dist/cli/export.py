"""Export a scoring run's predictions: `python -m jobs.export RUN --format parquet|csv`.

`--out PATH` (default RUN/predictions.<format>). One row per image: id (or row index), both
models' digits, the MLP's probability of its digit, whether they agree, and the label when the
scored split has one.
"""

from __future__ import annotations

import mnist_dist as md
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    from_setting,
    non_empty,
    path_arg,
    run_job,
    setup_logging,
)
from mnist_dist.exporting.spec import FORMATS


def build_parser(prog: str = "python -m jobs.export") -> JobArgumentParser:
    """The command line of `jobs.export`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("run", type=path_arg, metavar="RUN", help="a jobs.score run folder")
    parser.add_argument("--format", type=non_empty, choices=FORMATS,
                        default=from_setting("export.format"),
                        help="parquet (a folder of part files) or csv (default: %(default)s)")
    parser.add_argument("--out", type=non_empty,
                        help="where to write: a path or a URL such as s3://bucket/key "
                        "(default: RUN/predictions.<format>)")
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m jobs.export") -> int:
    """Run the job; returns the process exit code."""
    args = build_parser(prog).parse_args(argv)
    setup_logging()

    def export() -> int:
        spec = md.ExportSpec(run=args.run, format=args.format, out=args.out)
        print(f"wrote {md.export(spec).path}")
        return 0
    return run_job(export, args)

