"""Score the test digits with both models on Dask: `python -m jobs.score [--scheduler ADDRESS]`.

Builds the store and trains the models first when they are missing.
With `--images PATH...` it scores your own image files instead (see `mnist_dist.images`).
"""

from __future__ import annotations

import argparse
import sys

import mnist_dist as md
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_cluster_arguments,
    add_storage_options_argument,
    batch_sizes,
    cluster_spec,
    epoch_count,
    from_setting,
    non_empty,
    non_negative_seconds,
    path_arg,
    plain_name,
    positive_int,
    positive_mib,
    printable,
    run_job,
    setup_logging,
)
from mnist_dist.errors import ImageInputError, PartitionsFailedError, exit_code_for


def build_parser(prog: str = "python -m jobs.score") -> JobArgumentParser:
    """The command line of `jobs.score`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--store", type=non_empty, default=from_setting("store"),
                        help="Zarr store: path or fsspec URL the workers can read "
                        "(default: %(default)s)")
    parser.add_argument("--models", type=non_empty, default=from_setting("models"),
                        help="model directory: path or fsspec URL (sent to workers that "
                        "cannot read it; default: %(default)s)")
    parser.add_argument("--out", type=path_arg, help="run folder (default: runs/score-<time>)")
    parser.add_argument("--predictions", type=non_empty,
                        help="Zarr store the workers write (default: OUT/predictions.zarr)")
    add_storage_options_argument(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in --out: only missing or failed "
                        "partitions")
    parser.add_argument("--keep-going", action="store_true",
                        help="a partition that cannot be read or scored fails alone: the "
                        "others are scored and reported, the exit code is 17")
    parser.add_argument("--split", type=plain_name, default=from_setting("score.split"),
                        help="store group to score (default: %(default)s)")
    partitions = parser.add_mutually_exclusive_group()
    partitions.add_argument("--partition-mb", type=positive_mib, default=from_setting("score.partition-mb"),
                            help="memory target per partition in MiB, rounded down to whole "
                            "store chunks (default: %(default)s, i.e. 2,000 rows in the "
                            "default store)")
    partitions.add_argument("--partition-rows", type=positive_int,
                            help="rows per partition, instead of --partition-mb")
    add_cluster_arguments(parser)
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=None,
                        help="time both models per batch size for the report's throughput "
                        "table (default: only for a split with labels)")
    parser.add_argument("--batch-sizes", type=batch_sizes,
                        default=from_setting("score.batch-sizes"),
                        help="batch sizes of the throughput table (default: %(default)s)")
    parser.add_argument("--sweep-seconds", type=non_negative_seconds,
                        default=from_setting("score.sweep-seconds"),
                        help="minimum timing per batch size (default: %(default)s)")
    parser.add_argument("--epochs", type=epoch_count, default=from_setting("train.epochs"),
                        help="MLP epochs if the models must be trained first "
                        "(default: %(default)s)")
    parser.add_argument("--performance-report", action="store_true",
                        help="save Dask's performance report as OUT/dask-performance.html")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show the progress bar (default: when stdout is a terminal)")
    own = parser.add_argument_group("your own images (instead of the store's test split)")
    own.add_argument("--images", type=path_arg, nargs="+", metavar="PATH",
                     help="PNG/JPEG/BMP/TIFF files or folders to score")
    labels = own.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=path_arg, metavar="CSV",
                        help="true digits as a `file,digit` CSV: adds an accuracy report")
    labels.add_argument("--labels-from-names", action="store_true",
                        help="true digit = first character of the file name (7_anything.png)")
    own.add_argument("--save-preprocessed", type=path_arg, metavar="DIR",
                     help="write each 28x28 digit the models see as DIR/<name>.png")
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.score") -> argparse.Namespace:
    """Parse the command line of `jobs.score`; a bad flag exits 2 with one `error:` line."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.labels or args.labels_from_names or args.save_preprocessed) and not args.images:
        parser.error("--labels, --labels-from-names and --save-preprocessed need --images")
    if args.resume and not args.out:
        parser.error("--resume needs the --out of the run to continue")
    if args.sweep_seconds == 0:
        parser.error("--sweep-seconds 0 would still time every batch size once; use "
                     "--no-sweep to skip the throughput sweep")
    return args


def main(argv: list[str] | None = None, prog: str = "python -m jobs.score") -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: score_images(args) if args.images else score(args), args)


def score(args: argparse.Namespace) -> int:
    """Build the run spec from the arguments, run it, print the summary."""
    spec = md.ScoreSpec(
        store=args.store, models=args.models, split=args.split,
        predictions=args.predictions or "", resume=args.resume,
        partition_mb=args.partition_mb, partition_rows=args.partition_rows,
        cluster=cluster_spec(args),
        sweep=md.SweepSpec(batch_sizes=args.batch_sizes, min_seconds=args.sweep_seconds),
        throughput=args.sweep,
        train_epochs=args.epochs,
        show_progress=sys.stdout.isatty() if args.progress is None else args.progress,
        performance_report=args.performance_report, keep_going=args.keep_going,
        **({"out": args.out} if args.out else {}),
    )
    md.apply_storage_options(args.storage_options)
    result = md.score(spec)
    print(printable(result.summary()))
    print(f"report: {result.report_html}")
    failed = result.failed_partitions
    if failed:
        print(f"error: {len(failed)} of {result.report['dataset']['partitions']} partitions "
              f"could not be scored (see FAILED above and in report.json); "
              f"`python -m jobs.score --resume --out {spec.out} …` with the same flags retries "
              "them", file=sys.stderr)
        return exit_code_for(PartitionsFailedError())
    return 0


def score_images(args: argparse.Namespace) -> int:
    """Score image files; print the summary and the failures; exit code 12 when any failed."""
    spec = md.ImageScoreSpec(
        images=tuple(args.images), models=args.models, store=args.store,
        labels=args.labels, labels_from_names=args.labels_from_names,
        save_preprocessed=args.save_preprocessed, cluster=cluster_spec(args),
        train_epochs=args.epochs, resume=args.resume,
        **({"out": args.out} if args.out else {}),
    )
    md.apply_storage_options(args.storage_options)
    result = md.score_images(spec)
    print(result.summary())
    print("\n".join(result.failures()))
    print(f"report: {result.report_html}")
    print(f"predictions: {result.report['outputs']['predictions']} "
          f"(python -m jobs.export {spec.out} for a table)")
    if result.n_failed:
        print(f"error: {result.n_failed} of {result.report['images']['n_files']} image files "
              "could not be scored; see the failures above and in report.json", file=sys.stderr)
        return exit_code_for(ImageInputError())
    return 0
