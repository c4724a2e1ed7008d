"""Bring your own digits into the store as a split: `python -m jobs.ingest SOURCE... --split NAME`.

SOURCE: `.npy` of (N, 28, 28) or (N, 784) pixels, `.npz` (`--key`), a Zarr array (path or URL),
or PNG/JPEG/BMP/TIFF files and folders (preprocessed MNIST-style on the Dask workers, paths kept
in NAME/ids; arrays too with --preprocess). Exit code 12 when some image files could not be used
(they are listed in NAME/failures).
"""

from __future__ import annotations

import argparse
import sys

import mnist_dist as md
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_cluster_arguments,
    add_storage_options_argument,
    cluster_spec,
    from_setting,
    non_empty,
    path_arg,
    plain_name,
    positive_int,
    run_job,
    setup_logging,
)
from mnist_dist.errors import ImageInputError, exit_code_for


def build_parser(prog: str = "python -m jobs.ingest") -> JobArgumentParser:
    """The command line of `jobs.ingest`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("sources", type=non_empty, nargs="+", metavar="SOURCE",
                        help=".npy/.npz file, Zarr array path or URL, image files or folders")
    parser.add_argument("--store", type=non_empty, default=from_setting("store"),
                        help="Zarr store to add the split to, path or URL (s3://…) "
                        "(default: %(default)s)")
    parser.add_argument("--split", type=plain_name, required=True,
                        help="name of the new split (train and test are refused)")
    parser.add_argument("--key", type=non_empty, help="array of an .npz holding the images")
    parser.add_argument("--pixel-range", type=positive_int, choices=(1, 255),
                        help="float pixels run 0-1 or 0-255 (required for float sources)")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=path_arg, metavar="FILE",
                        help="true digits: .npy of N integers, or a `file,digit` CSV for images")
    labels.add_argument("--labels-from-names", action="store_true",
                        help="true digit = first character of each image file's name")
    parser.add_argument("--preprocess", action="store_true",
                        help="give array digits the same MNIST-style preprocessing as image "
                        "files get (grayscale, dark ink on light paper inverted, cropped to "
                        "the ink, fit to 20x20, centred by mass in 28x28), for arrays not "
                        "already MNIST-like: dark ink on white, not centred, digits of other "
                        "sizes; a row with no digit then refuses the ingest")
    parser.add_argument("--force", action="store_true", help="replace an existing split NAME")
    parser.add_argument("--partition-files", type=positive_int,
                        default=from_setting("ingest.partition-files"),
                        help="image files per preprocessing task (default: %(default)s)")
    add_storage_options_argument(parser)
    add_cluster_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m jobs.ingest") -> int:
    """Run the job; returns the process exit code."""
    args = build_parser(prog).parse_args(argv)
    setup_logging()
    return run_job(lambda: ingest(args), args)


def ingest(args: argparse.Namespace) -> int:
    """Ingest, print the summary; exit code 12 when some image files failed."""
    spec = md.IngestSpec(
        sources=tuple(args.sources), split=args.split, store=args.store, key=args.key,
        pixel_range=args.pixel_range, labels=args.labels,
        labels_from_names=args.labels_from_names, force=args.force,
        partition_files=args.partition_files, cluster=cluster_spec(args),
        preprocess=args.preprocess,
    )
    md.apply_storage_options(args.storage_options)
    result = md.ingest(spec)
    print(f"ingested {result.n_images} images into {result.location} "
          f"({result.images_per_second:,.0f} images/s)")
    if result.n_failed:
        for file, reason in result.failures:
            print(f"failed: {file}: {reason}")
        print(f"error: {result.n_failed} of {result.n_images + result.n_failed} image files "
              f"could not be ingested; all are listed in {result.location}/failures",
              file=sys.stderr)
        return exit_code_for(ImageInputError())
    return 0

