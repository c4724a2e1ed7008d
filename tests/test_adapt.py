"""`--adapt MIN:MAX`: an adaptive LocalCluster starts MIN workers, grows under a job's load and
retires idle workers after it, with predictions bit-identical to a fixed cluster's; a bad range
or a flag it excludes is one error."""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr
from distributed import Client, SchedulerPlugin

import mnist_dist as md
from mnist_dist.cli.arguments import USAGE_EXIT, cluster_spec
from mnist_dist.cli.score import parse_args
from mnist_dist.cluster import ClusterSpec, connect, workers_info
from mnist_dist.errors import SpecError
from mnist_dist.models import cache

ARRAYS = ("knn", "mlp", "mlp_probabilities", "knn_neighbours", "knn_distances")
# 150 partitions of the 600 test digits: several seconds of tasks on one worker, longer than a
# new worker process takes to start.
ROWS = "4"
SHRINK_SECONDS = 30.0


class ScoredBy(SchedulerPlugin):
    """Records, on the scheduler, which worker finished each scoring partition."""

    name = "test-scored-by"

    def __init__(self) -> None:
        self.workers: set[str] = set()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory" and str(key).startswith("score-partition-") and "worker" in kwargs:
            self.workers.add(kwargs["worker"])


class Messages(logging.Handler):
    """Collects the messages of the records it handles (any thread: the scheduler's too)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def project_messages() -> Iterator[list[str]]:
    """The project's INFO messages logged inside the block, in order."""
    logger, handler = logging.getLogger("mnist_dist"), Messages()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def score_spec(store: Path, models: Path, out: Path, *cluster_flags: str) -> md.ScoreSpec:
    """The ScoreSpec of jobs.score's flags for the small store's test split in small
    partitions, no sweep, with `cluster_flags` (parsed by the job's own parser)."""
    args = parse_args(["--store", str(store), "--models", str(models), "--out", str(out),
                       "--partition-rows", ROWS, *cluster_flags])
    return md.ScoreSpec(store=args.store, models=args.models, out=args.out,
                        partition_rows=args.partition_rows, throughput=False,
                        show_progress=False, cluster=cluster_spec(args))


def predictions(out: Path) -> dict[str, np.ndarray]:
    """Every per-image array of the run folder `out`'s predictions.zarr."""
    store = str(out / "predictions.zarr")
    return {name: np.asarray(zarr.open_array(store, path=name, mode="r")[:]) for name in ARRAYS}


def wait_for_workers(client: Client, count: int, seconds: float) -> int:
    """Poll until the scheduler has `count` workers or `seconds` pass; the last count seen."""
    deadline = time.monotonic() + seconds
    while (seen := len(workers_info(client))) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def test_adapt_1_2_grows_to_two_workers_under_the_job_shrinks_after_it_same_predictions(
    small_store: Path, small_models: Path, tmp_path: Path,
) -> None:
    """The cluster `--adapt 1:2` asks for, connected as the job connects, scoring through the
    API so that the test watches it until after the job; then the job on `--workers 2`."""
    spec = score_spec(small_store, small_models, tmp_path / "adapt", "--adapt", "1:2")
    assert spec.cluster.adapt == (1, 2)
    with project_messages() as messages, connect(spec.cluster) as client:
        assert len(workers_info(client)) == 1, "an adaptive cluster starts with MIN workers"
        client.register_plugin(ScoredBy(), name=ScoredBy.name)
        plugin = client.cluster.scheduler.plugins[ScoredBy.name]  # the scheduler's, in-process
        report = md.score(spec, client=client).report
        assert wait_for_workers(client, 1, SHRINK_SECONDS) == 1, "idle workers were not retired"
        loads = client.run(lambda: cache.load_count)
    started = next(i for i, m in enumerate(messages) if m.startswith("scoring 600 images"))
    scored = next(i for i, m in enumerate(messages) if m.startswith("scored 600 images"))
    joined = [i for i, m in enumerate(messages) if m.startswith("worker joined: 2 workers")]
    assert joined and started < joined[0] < scored, "no second worker joined during the job"
    assert len(plugin.workers) == 2, f"partitions scored by {plugin.workers}, not two workers"
    assert list(loads.values()) == [1], f"models loaded {loads} times on the remaining worker"
    assert report["cluster"]["adapt"] == [1, 2]
    # The worker that joined under load is counted in the start-up, apart from the scoring.
    startup = report["startup"]
    assert startup["workers"] == len(startup["worker_seconds"]) == report["cluster"]["workers"]
    assert startup["max_seconds"] == max(startup["worker_seconds"].values()) > 0
    # Each worker measured its KNN GEMM kernels when it loaded the models.
    assert set(startup["knn_kernels"]) == set(startup["worker_seconds"])
    for kernels in startup["knn_kernels"].values():
        assert re.fullmatch(r"(numpy|onnxruntime) from 1 row(, (numpy|onnxruntime) from \d+ rows)*",
                            kernels["bound"]), kernels

    fixed = md.score(score_spec(small_store, small_models, tmp_path / "fixed", "--workers", "2"))
    fixed_report = fixed.report
    # Sized for MAX workers from the start: as many ORT threads as the fixed two-worker run.
    assert report["cluster"]["ort_threads"] == fixed_report["cluster"]["ort_threads"]
    assert "adapt" not in fixed_report["cluster"]
    ours, theirs = predictions(tmp_path / "adapt"), predictions(fixed.out)
    for name in ARRAYS:
        assert ours[name].dtype == theirs[name].dtype, name
        assert ours[name].tobytes() == theirs[name].tobytes(), f"{name} differs"


def test_a_worker_that_joins_later_fetches_the_models_the_client_shipped(
    small_store: Path, small_models: Path, tmp_path: Path,
) -> None:
    """Models only the client can read (in its memory) go to the workers present at the start
    as one scattered payload; the worker that joins under load fetches it from them."""
    fs = fsspec.filesystem("memory")
    for path in small_models.rglob("*"):
        if path.is_file():
            fs.pipe(f"memory://adapt-models/{path.relative_to(small_models).as_posix()}",
                    path.read_bytes())
    spec = replace(score_spec(small_store, small_models, tmp_path / "run", "--adapt", "1:2"),
                   models="memory://adapt-models")
    with connect(spec.cluster) as client:
        client.register_plugin(ScoredBy(), name=ScoredBy.name)
        plugin = client.cluster.scheduler.plugins[ScoredBy.name]
        report = md.score(spec, client=client).report
    assert report["cluster"]["models_shipped"] is True
    assert len(plugin.workers) == 2, f"partitions scored by {plugin.workers}, not two workers"
    assert report["dataset"]["n_images"] == 600


@pytest.mark.parametrize("flags, says", [
    (["--adapt", "0:2"], "--adapt must be MIN:MAX"),
    (["--adapt", "3:1"], "--adapt must be MIN:MAX"),
    (["--adapt", "a:b"], "--adapt must be MIN:MAX"),
    (["--adapt", "2"], "--adapt must be MIN:MAX"),
    (["--adapt", "1:2", "--workers", "2"], "--workers not allowed with argument --adapt"),
    (["--workers", "2", "--adapt", "1:2"], "--adapt not allowed with argument --workers"),
    (["--adapt", "1:2", "--scheduler", "tcp://127.0.0.1:8786"],
     "--scheduler not allowed with argument --adapt"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--adapt", "1:2"],
     "--adapt not allowed with argument --scheduler"),
])
def test_a_bad_adapt_flag_is_one_error_line_exit_2(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("jobs.score").main(flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == USAGE_EXIT
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {says}"), err


@pytest.mark.parametrize("job", ["prepare", "ingest", "bench", "scale"])
def test_every_job_on_a_cluster_takes_adapt(job: str, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    """The flag is one of the cluster flags: each job that runs on a cluster parses it."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"jobs.{job}").main(["--adapt", "3:1"])
    assert exit_info.value.code == USAGE_EXIT
    assert capsys.readouterr().err.startswith("error: --adapt must be MIN:MAX"), job


@pytest.mark.parametrize("kwargs, says", [
    ({"adapt": (0, 2)}, "1 <= MIN <= MAX"),
    ({"adapt": (3, 1)}, "1 <= MIN <= MAX"),
    ({"adapt": (1,)}, "two worker counts"),
    ({"adapt": ("1", "2")}, "two worker counts"),
    ({"adapt": (1.0, 2.0)}, "two worker counts"),
    ({"adapt": (True, 2)}, "two worker counts"),
    ({"adapt": 2}, "two worker counts"),
    ({"adapt": (1, 2), "scheduler": "tcp://127.0.0.1:8786"}, "adapts by its own means"),
    ({"adapt": (1, 2), "n_workers": 2}, "give one of them"),
])
def test_a_bad_adapt_spec_is_a_spec_error(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError, match=says):
        ClusterSpec(**kwargs)


def test_an_adapt_list_is_kept_as_a_tuple() -> None:
    assert ClusterSpec(adapt=[1, 3]).adapt == (1, 3)  # type: ignore[arg-type]
