"""Workers ready before the work arrives: while a score job runs, a worker that joins the cluster
loads the models as it joins, before any task reaches it; a failure there leaves it running and
silent (its first task raises the error); the job's end removes the loader."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster

from mnist_dist.errors import ArtifactChecksumError
from mnist_dist.models import cache
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.reachability import workers_info
from mnist_dist.worker_plugins import ModelLoader, models_loaded_on_join, quiet_project_errors
from tests.helpers import write_model_dir

JOIN_SECONDS = 60.0  # a new worker process starting on a loaded machine


@contextlib.contextmanager
def one_worker() -> Iterator[Client]:
    """A client of a real LocalCluster of one single-threaded worker process on 127.0.0.1."""
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def client() -> Iterator[Client]:
    """`one_worker`'s client."""
    with one_worker() as client:
        yield client


def wait_until(check: Callable[[], Any], seconds: float = JOIN_SECONDS) -> Any:
    """Poll `check` until it returns something truthy or `seconds` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def loaded(ref: ModelRef) -> Callable[[], dict[str, Any]]:
    """On each worker: (load_count, seconds its load took) once the models of `ref` are in
    its cache, else None."""
    def on_worker() -> Any:
        seconds = cache.load_seconds(ref)
        return None if seconds is None else (cache.load_count, seconds)
    return on_worker


def test_a_worker_that_joins_while_the_job_runs_has_the_models_before_any_task(
    client: Client, tmp_path: Path,
) -> None:
    ref = ModelRef.from_directory(write_model_dir(tmp_path / "models"))
    (first,) = workers_info(client)
    with models_loaded_on_join(client, ref, 1, None):
        client.cluster.scale(2)
        assert wait_until(lambda: len(workers_info(client)) == 2), "no second worker joined"
        joined = time.monotonic()
        (new,) = set(workers_info(client)) - {first}
        ready = wait_until(lambda: client.run(loaded(ref), workers=[new])[new])
        waited = time.monotonic() - joined
        tasks = client.run(lambda dask_worker: len(dask_worker.state.tasks), workers=[new])
        registered = client.run_on_scheduler(lambda dask_scheduler: list(
            dask_scheduler.worker_plugins))
    assert ready, f"the worker that joined had no models after {waited:.1f} s"
    load_count, seconds = ready
    assert load_count == 1 and seconds > 0
    assert tasks == {new: 0}, "a task reached the new worker"
    assert ModelLoader.name in registered
    after = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert ModelLoader.name not in after, "the loader outlived the job"


def test_a_failed_load_on_joining_leaves_the_worker_running_and_silent(
    tmp_path: Path, capfd: pytest.CaptureFixture[str],
) -> None:
    models = write_model_dir(tmp_path / "models")
    ref = ModelRef.from_directory(models)
    (models / "knn.json").write_text("{}\n")  # no longer the file the checksums name
    # Started here, after capfd: the worker process writes to the captured stderr.
    with one_worker() as client, models_loaded_on_join(client, ref, 1, None):
        (worker,) = workers_info(client)
        error = wait_until(lambda: client.run(
            lambda dask_worker: dask_worker.plugins[ModelLoader.name].error)[worker])
        client.run(lambda: print("worker stderr reaches this test", file=sys.stderr,
                                 flush=True))
        alive = client.run(lambda dask_worker: dask_worker.status.name)
        err = capfd.readouterr().err
        assert error and error.startswith("ArtifactChecksumError: "), error
        assert alive == {worker: "running"}
        assert client.run(lambda: cache.load_count) == {worker: 0}
        assert "worker stderr reaches this test" in err  # so the next check can fail
        assert "Traceback" not in err and "Exception in thread" not in err, err
        quiet_project_errors(client)  # as the job does: the client reports the task's error
        with pytest.raises(ArtifactChecksumError):  # the task's own load: the typed error
            client.submit(cache.load_predictors, ref, pure=False).result()
