"""Every location a score run writes in its run folder, read off a finished run (not a list kept
by hand), is refused when it holds a user's file, folder or link, and the user's thing is kept:
no case of data lost can come back through a file nobody listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr
from distributed import Client

from jobs import score as score_job
from tests.helpers import write_digit_pngs
from tests.test_nothing_lost import args, store
from tests.test_output_locations import KINDS, plant, refused_in_process

__all__ = ["args", "store"]  # fixtures used by this module's tests


def refuses_every_location(argv: list[str], finished: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run `jobs.score ARGV --out` on a fresh folder holding a user's thing at the name of each
    entry of the `finished` run's folder, of each kind; returns the names checked."""
    names = sorted(path.name for path in finished.iterdir())
    for name in names:
        for kind in KINDS:
            out = tmp_path / f"{name}-{kind}" / "run"
            planted = plant(kind, out / name, tmp_path / "elsewhere" / f"{name}-{kind}")
            refused_in_process(lambda out=out: score_job.main([*argv, "--out", str(out)]),
                               capsys, planted, named=out)
    return names


def test_every_location_of_a_score_run_folder_is_refused_when_a_user_holds_it(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [*args, "--performance-report"]
    finished = tmp_path / "finished"
    assert score_job.main([*argv, "--out", str(finished)]) == 0
    names = refuses_every_location(argv, finished, tmp_path, capsys)
    assert {"report.json", "report.html", "report.md", "run.json", "partitions",
            "predictions.zarr", "dask-performance.html"} <= set(names)


def test_every_location_of_an_images_run_folder_is_refused_when_a_user_holds_it(
    store: Path, small_models: Path, local_client: Client, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digits = zarr.open_group(str(store), mode="r")["test/images"][:4]
    scans = write_digit_pngs(tmp_path / "scans", digits, len(digits))
    argv = ["--images", str(scans), "--models", str(small_models),
            "--scheduler", local_client.scheduler.address]
    finished = tmp_path / "finished"
    assert score_job.main([*argv, "--out", str(finished)]) == 0
    names = refuses_every_location(argv, finished, tmp_path, capsys)
    assert {"report.json", "run.json", "images.zarr", "predictions.zarr"} <= set(names)
