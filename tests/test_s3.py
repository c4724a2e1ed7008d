"""Object storage end to end against a real SeaweedFS S3 server (tests/conftest_s3.py): store,
models and predictions on s3://, credentials from the environment, faults, isolated workers."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from jobs import score as score_job
from mnist_dist.data.store import zarr_array
from mnist_dist.errors import EXIT_CODES, ClusterError, StorageError
from tests.conftest_s3 import S3Server
from tests.test_cluster_processes import process_cluster, start_job, wait_for_markers

REPO = Path(__file__).resolve().parents[1]
FAST = ["--no-progress", "--batch-sizes", "1,10", "--sweep-seconds", "0.02",
        "--partition-rows", "100"]
STORAGE_EXIT = EXIT_CODES[StorageError]


def run_score(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m jobs.score ARGS` as a user runs it (this process's environment by default)."""
    environ = {**(os.environ if env is None else env), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "jobs.score", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=300, check=False)


def predictions_at(location: str) -> dict[str, np.ndarray]:
    return {name: np.asarray(zarr_array(location, name)[:]) for name in ("knn", "mlp")}


def report_of(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def assert_same_scores(ours: Path, theirs: Path) -> None:
    """Two runs' reports agree on every model's accuracy, per-class accuracy and confusion."""
    a, b = report_of(ours), report_of(theirs)
    assert a["dataset"]["n_images"] == b["dataset"]["n_images"] == 600
    for name in ("knn", "mlp"):
        for field in ("accuracy", "per_class_accuracy", "confusion"):
            assert a["models"][name][field] == b["models"][name][field], (name, field)


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr[-3000:]
    assert lines[-1].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[-1], lines[-1]


def secret_free(server: S3Server, *texts: str, folder: Path | None = None) -> None:
    """Neither the secret key nor the access key id appears in `texts` or any file of `folder`."""
    leaks = [server.env["AWS_SECRET_ACCESS_KEY"], server.env["AWS_ACCESS_KEY_ID"]]
    files = [p for p in folder.rglob("*") if p.is_file()] if folder else []
    for leak in leaks:
        assert not any(leak in text for text in texts)
        assert not [p for p in files if leak.encode() in p.read_bytes()]


def long_s3_run(s3_inputs: tuple[str, str], run: Path) -> tuple[str, list[str]]:
    """(predictions URL, jobs.score arguments) of a run on S3 in 60 partitions of 10 rows, still
    going when a fault is injected after its first partitions."""
    store, models = s3_inputs
    predictions = f"s3://mnist/runs/{secrets.token_hex(4)}/predictions.zarr"
    return predictions, ["--store", store, "--models", models, "--predictions", predictions,
                         "--out", str(run), "--workers", "2", *FAST[:-2], "--partition-rows", "10"]


@pytest.fixture(scope="module")
def local_run(small_store: Path, small_models: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Path:
    """The small test split scored from local files: the reference of every S3 run."""
    run = tmp_path_factory.mktemp("local") / "run"
    done = run_score("--store", str(small_store), "--models", str(small_models),
                     "--workers", "2", "--out", str(run), *FAST)
    assert done.returncode == 0, done.stderr[-3000:]
    return run


@pytest.mark.parametrize("value", ["{", "[1, 2]", '"text"', "1e300",
                                   '{"secret": "x"}', '{"config_kwargs": {"aws_session_token": "x"}}'])
def test_storage_options_must_be_a_json_object_without_credentials(
    value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        score_job.main(["--storage-options", value, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and err[0].startswith("error: --storage-options")
    assert not (tmp_path / "run").exists()
    if '"x"' in value:
        assert "credentials" in err[0] and '"x"' not in err[0]


def test_score_on_s3_gives_the_local_report_and_leaks_no_secret(
    s3_server: S3Server, s3_inputs: tuple[str, str], local_run: Path, tmp_path: Path
) -> None:
    store, models = s3_inputs
    predictions = f"s3://mnist/runs/{secrets.token_hex(4)}/predictions.zarr"
    run = tmp_path / "run"
    # The endpoint only via --storage-options: the LocalCluster's workers must get it too.
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    options = json.dumps({"endpoint_url": s3_server.endpoint})
    done = run_score("--store", store, "--models", models, "--predictions", predictions,
                     "--storage-options", options, "--workers", "2", "--out", str(run), *FAST,
                     env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_scores(run, local_run)
    ours = predictions_at(predictions)
    for name, values in predictions_at(str(local_run / "predictions.zarr")).items():
        np.testing.assert_array_equal(ours[name], values)
    report = report_of(run)
    assert report["outputs"]["predictions"] == predictions and report["dataset"]["store"] == store
    rendered = subprocess.run([sys.executable, "-m", "jobs.report", str(run)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    secret_free(s3_server, done.stdout, done.stderr, rendered.stderr, folder=run)


@pytest.mark.parametrize("fault", ["missing bucket", "wrong credentials", "unreachable endpoint"])
def test_a_storage_fault_is_one_error_line(
    fault: str, s3_server: S3Server, tmp_path: Path
) -> None:
    store, models = "s3://mnist/small.zarr", "s3://mnist/models"
    env = dict(os.environ)
    if fault == "missing bucket":
        store = "s3://no-such-bucket/small.zarr"
    elif fault == "wrong credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "wrong-" + secrets.token_hex(8)
    else:
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    done = run_score("--store", store, "--models", models, "--out", str(tmp_path / "run"),
                     *FAST, env=env)
    expected = {"missing bucket": "does not exist", "wrong credentials": "access refused",
                "unreachable endpoint": "cannot reach"}[fault]
    assert_one_error_line(done, STORAGE_EXIT, "--store", expected)
    secret_free(s3_server, done.stdout, done.stderr)
    assert env["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()


# Python in its own mount namespace with a private tmpfs over each folder of $HIDE: a worker
# that shares no file system with the client, though it runs on the same machine.
ISOLATED_PYTHON = """#!/bin/sh
exec unshare --mount --propagation private -- sh -c \\
    'for d in $HIDE; do mount -t tmpfs none "$d" || exit 1; done; exec "$0" "$@"' \\
    {python} "$@"
"""


@pytest.fixture(scope="module")
def isolated_cluster(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[str]:
    """Scheduler + 2 workers (deploy/local) that cannot see any of the tests' temporary folders."""
    outside = Path(tempfile.mkdtemp(prefix="mnist-s3-cluster-"))
    try:
        wrapper = outside / "python"
        wrapper.write_text(ISOLATED_PYTHON.format(python=sys.executable))
        wrapper.chmod(0o755)
        hidden = str(tmp_path_factory.getbasetemp())
        with process_cluster(outside / "state", PYTHON=str(wrapper), HIDE=hidden) as address:
            with Client(address, timeout=30) as client:
                seen = client.run(os.listdir, hidden)
            assert seen and not any(seen.values()), seen  # an empty tmpfs: truly isolated
            yield address
    finally:
        shutil.rmtree(outside, ignore_errors=True)


@pytest.mark.cluster
def test_workers_sharing_no_files_with_the_client_score_from_s3(
    isolated_cluster: str, s3_inputs: tuple[str, str], small_store: Path, small_models: Path,
    local_run: Path, tmp_path: Path,
) -> None:
    store, models = s3_inputs
    remote = ["--scheduler", isolated_cluster, *FAST]
    prefix = f"s3://mnist/runs/{secrets.token_hex(4)}"
    done = run_score("--store", store, "--models", models, "--predictions",
                     f"{prefix}/all.zarr", "--out", str(tmp_path / "s3"), *remote)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_scores(tmp_path / "s3", local_run)
    assert not report_of(tmp_path / "s3")["cluster"]["models_shipped"]
    # Models only on the client's disk are sent to the workers once.
    shipped = run_score("--store", store, "--models", str(small_models), "--predictions",
                        f"{prefix}/shipped.zarr", "--out", str(tmp_path / "shipped"), *remote)
    assert shipped.returncode == 0, shipped.stderr[-3000:]
    assert report_of(tmp_path / "shipped")["cluster"]["models_shipped"]
    reference = predictions_at(str(local_run / "predictions.zarr"))
    for location in (f"{prefix}/all.zarr", f"{prefix}/shipped.zarr"):
        for name, values in predictions_at(location).items():
            np.testing.assert_array_equal(values, reference[name])
    # A local store the workers cannot see: refused before any work, naming it.
    unseen = run_score("--store", str(small_store), "--models", models, "--predictions",
                       f"{prefix}/unseen.zarr", "--out", str(tmp_path / "unseen"), *remote)
    assert_one_error_line(unseen, EXIT_CODES[ClusterError], "cannot read store",
                          str(small_store))


@pytest.mark.cluster
def test_the_s3_server_stopped_mid_run_is_one_error_line_and_resume_completes(
    s3_server: S3Server, s3_inputs: tuple[str, str], local_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    predictions, args = long_s3_run(s3_inputs, run)
    job = start_job(*args)
    try:
        before = wait_for_markers(run, 2, job)
        s3_server.stop()
        _, stderr = job.communicate(timeout=240)
    finally:
        s3_server.start()  # same data and ports
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert job.returncode == STORAGE_EXIT, stderr[-3000:]
    # Dask's workers log the failed tasks; the job itself reports one line.
    assert len(errors) == 1 and "--resume once it is back" in errors[0], stderr[-3000:]
    secret_free(s3_server, stderr)
    assert len(before) < 60 and not (run / "report.json").exists()
    resumed = run_score(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_scores(run, local_run)
    reference = predictions_at(str(local_run / "predictions.zarr"))
    for name, values in predictions_at(predictions).items():
        np.testing.assert_array_equal(values, reference[name])


@pytest.mark.cluster
def test_the_s3_server_paused_mid_run_is_given_up_on_in_bounded_time_in_one_line(
    s3_server: S3Server, s3_inputs: tuple[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A server that accepts connections but never answers (SIGSTOP): only timeouts end the
    # wait. Short ones from the settings here; the defaults bound it the same way.
    for name, value in {"CONNECT_TIMEOUT": "1", "READ_TIMEOUT": "1", "ATTEMPTS": "1"}.items():
        monkeypatch.setenv(f"MNIST_DIST_STORAGE__{name}", value)
    run = tmp_path / "run"
    _, args = long_s3_run(s3_inputs, run)
    job = start_job(*args)
    group = int((s3_server.state / "weed.pid").read_text())
    try:
        wait_for_markers(run, 2, job)
        os.killpg(group, signal.SIGSTOP)
        paused = time.monotonic()
        _, stderr = job.communicate(timeout=150)
        waited = time.monotonic() - paused
    finally:
        os.killpg(group, signal.SIGCONT)
    assert job.returncode == STORAGE_EXIT, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--resume once it is back" in errors[0], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]  # nor a worker's
    # s3fs tries each request 5 times, each try waits a read timeout; a few requests in turn.
    assert waited < 40, waited
    print(f"gave up {waited:.1f} s after the pause")


UPLOAD_TO_A_PAUSED_SERVER = """
import os, signal, sys, time
import fsspec
from mnist_dist.storage_options import use_storage_defaults
use_storage_defaults()  # what every job does first
fs = fsspec.filesystem("s3")
fs.pipe_file("mnist/paused/warm", b"x")  # a pooled connection to the server
os.killpg(int(sys.argv[1]), signal.SIGSTOP)
started = time.monotonic()
try:
    fs.pipe_file("mnist/paused/upload", b"digits" * 1000)
except OSError as exc:
    print(type(exc).__name__, round(time.monotonic() - started, 1))
finally:
    os.killpg(int(sys.argv[1]), signal.SIGCONT)
"""


def test_an_upload_to_a_paused_s3_server_times_out_like_a_read(
    s3_server: S3Server, s3_inputs: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore sends every upload with `Expect: 100-continue`, whose wait has no timeout
    # under aiohttp: without the project's fix this upload never returns.
    for name, value in {"CONNECT_TIMEOUT": "1", "READ_TIMEOUT": "1", "ATTEMPTS": "1"}.items():
        monkeypatch.setenv(f"MNIST_DIST_STORAGE__{name}", value)
    group = (s3_server.state / "weed.pid").read_text().strip()
    try:
        done = subprocess.run([sys.executable, "-c", UPLOAD_TO_A_PAUSED_SERVER, group],
                              capture_output=True, text=True, timeout=90, check=False)
    finally:
        os.killpg(int(group), signal.SIGCONT)
    assert done.returncode == 0, done.stderr[-2000:]
    error, seconds = done.stdout.split()  # a timeout (an OSError), not a wait without end
    assert error == "ReadTimeoutError" and float(seconds) < 60  # 5 tries of a 1 s timeout


@pytest.mark.cluster
def test_a_worker_killed_mid_run_on_s3_changes_nothing(
    isolated_cluster: str, s3_inputs: tuple[str, str], local_run: Path, tmp_path: Path
) -> None:
    store, models = s3_inputs
    predictions = f"s3://mnist/runs/{secrets.token_hex(4)}/predictions.zarr"
    run = tmp_path / "run"
    job = start_job("--scheduler", isolated_cluster, "--store", store, "--models", models,
                    "--predictions", predictions, "--out", str(run), *FAST[:-2],
                    "--partition-rows", "10")
    before = wait_for_markers(run, 2, job)
    with Client(isolated_cluster, timeout=30) as client:
        _, victim = min(client.run(os.getpid).items())
    os.kill(victim, signal.SIGKILL)  # pid in the worker's namespace: the same here (no --pid)
    _, stderr = job.communicate(timeout=240)
    assert job.returncode == 0, stderr[-3000:]
    assert len(before) < 60, "the run finished before the worker was killed"
    assert_same_scores(run, local_run)
    reference = predictions_at(str(local_run / "predictions.zarr"))
    for name, values in predictions_at(predictions).items():
        np.testing.assert_array_equal(values, reference[name])


@pytest.mark.cluster
def test_the_client_killed_mid_run_on_s3_resumes_to_the_same_results(
    s3_inputs: tuple[str, str], local_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    predictions, args = long_s3_run(s3_inputs, run)
    job = start_job(*args)
    wait_for_markers(run, 2, job)
    job.send_signal(signal.SIGKILL)  # the client dies: no clean shutdown at all
    job.wait(timeout=60)
    finished = sorted(p.name for p in (run / "partitions").glob("*.json"))
    assert 2 <= len(finished) < 60, "the run finished before the client was killed"
    resumed = run_score(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = report_of(run)
    assert report["dataset"]["partitions_computed"] == 60 - len(finished)
    assert_same_scores(run, local_run)
    reference = predictions_at(str(local_run / "predictions.zarr"))
    for name, values in predictions_at(predictions).items():
        np.testing.assert_array_equal(values, reference[name])
