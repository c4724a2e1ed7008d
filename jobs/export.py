"""Export a scoring run's predictions: `python -m jobs.export RUN --format parquet|csv`.

`--out PATH` (default RUN/predictions.<format>). One row per image: id (or row index), both
models' digits, the MLP's probability of its digit, whether they agree, and the label when the
scored split has one.
"""

from __future__ import annotations

from mnist_dist.cli import (
    JobArgumentParser,
    from_setting,
    non_empty,
    path_arg,
    run_job,
    setup_logging,
)
from mnist_dist.export import FORMATS, ExportSpec, run_export
from mnist_dist.storage import storage_errors


def build_parser() -> JobArgumentParser:
    """The command line of `jobs.export`."""
    parser = JobArgumentParser(prog="python -m jobs.export", description=__doc__)
    parser.add_argument("run", type=path_arg, metavar="RUN", help="a jobs.score run folder")
    parser.add_argument("--format", type=non_empty, choices=FORMATS,
                        default=from_setting("export.format"),
                        help="parquet (a folder of part files) or csv (default: %(default)s)")
    parser.add_argument("--out", type=non_empty,
                        help="where to write: a path or a URL such as s3://bucket/key "
                        "(default: RUN/predictions.<format>)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the job; returns the process exit code."""
    args = build_parser().parse_args(argv)
    setup_logging()

    def export() -> int:
        spec = ExportSpec(run=args.run, format=args.format, out=args.out)
        with storage_errors(locations=(str(spec.target()),)):
            print(f"wrote {run_export(spec)}")
        return 0
    return run_job(export, args)


if __name__ == "__main__":
    raise SystemExit(main())
