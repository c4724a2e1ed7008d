"""Scale benchmark: `python -m jobs.scale [--mlp-sizes 70000,1000000,8100000] [--knn-sizes ...]`.

Generates deformed-digit splits of each size (when missing), scores each with one model on
fresh workers, and writes images/s and peak worker memory per size to WORK/scale.json.
"""

from __future__ import annotations

import argparse

from mnist_dist.bench.scale import (
    KNN_SIZES,
    MLP_SIZES,
    ScaleSpec,
    run_scale,
    summary_text,
)
from mnist_dist.cli.arguments import (
    JobArgumentParser,
    add_cluster_arguments,
    cluster_spec,
    from_setting,
    int_list,
    path_arg,
    positive_mib,
    run_job,
    seed_int,
    setup_logging,
)


def sizes(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated sizes, or `none` for no runs of that model."""
    return () if text.strip().lower() == "none" else int_list(text)


def build_parser(prog: str = "python -m jobs.scale") -> JobArgumentParser:
    """The command line of `jobs.scale`."""
    parser = JobArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--store", type=path_arg, default=from_setting("store"),
                        help="base store whose test split is deformed (default: %(default)s)")
    parser.add_argument("--models", type=path_arg, default=from_setting("models"),
                        help="model folder (default: %(default)s)")
    parser.add_argument("--work", type=path_arg, default=from_setting("scale.work"),
                        help="folder of the benchmark store and runs (default: %(default)s)")
    parser.add_argument("--out", type=path_arg, help="report path (default: WORK/scale.json)")
    parser.add_argument("--mlp-sizes", type=sizes, default=MLP_SIZES,
                        help="N scored with the MLP only, or `none` (default: 70000,1000000,"
                        "8100000)")
    parser.add_argument("--knn-sizes", type=sizes, default=KNN_SIZES,
                        help="N scored with the KNN only, or `none` (default: 14000,70000,140000)")
    parser.add_argument("--seed", type=seed_int, default=from_setting("expand.seed"),
                        help="seed of the deformations (default: %(default)s)")
    parser.add_argument("--generate-partition-mb", type=positive_mib,
                        default=from_setting("expand.partition-mb"),
                        help="memory target of a generation partition (default: %(default)s)")
    parser.add_argument("--partition-mb", type=positive_mib,
                        default=from_setting("scale.partition-mb"),
                        help="memory target of a scoring partition (default: %(default)s)")
    add_cluster_arguments(parser)
    parser.add_argument("--cleanup", action="store_true",
                        help="delete the benchmark store at the end")
    return parser


def parse_args(argv: list[str] | None, prog: str = "python -m jobs.scale") -> argparse.Namespace:
    """Parse the command line of `jobs.scale`; a bad flag exits 2 with one `error:` line."""
    return build_parser(prog).parse_args(argv)


def main(argv: list[str] | None = None, prog: str = "python -m jobs.scale") -> int:
    """Run the job; returns the process exit code."""
    args = parse_args(argv, prog)
    setup_logging()
    return run_job(lambda: scale(args), args)


def scale(args: argparse.Namespace) -> int:
    """Build the spec, run the benchmark, print the figures."""
    spec = ScaleSpec(
        store=args.store, models=args.models, work=args.work, out=args.out,
        mlp_sizes=args.mlp_sizes, knn_sizes=args.knn_sizes, seed=args.seed,
        generate_partition_mb=args.generate_partition_mb, score_partition_mb=args.partition_mb,
        cluster=cluster_spec(args),
        cleanup=args.cleanup,
    )
    report = run_scale(spec)
    print(summary_text(report))
    print(f"report: {spec.report_path}")
    return 0

