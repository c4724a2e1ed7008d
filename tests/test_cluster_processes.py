"""Real clusters: `dask scheduler` + `dask worker` processes on 127.0.0.1 started by
deploy/local/, and `python -m jobs.score --scheduler …` run against them as users run it."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import score as score_job
from mnist_dist.data.sources import RawMnist
from mnist_dist.data.store import build_store
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.scoring.graph import score_in_process
from mnist_dist.scoring.spec import ScoreJob
from mnist_dist.training.run import run as train
from mnist_dist.training.spec import TrainSpec

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
START, STOP = REPO / "deploy/local/start-cluster.sh", REPO / "deploy/local/stop-cluster.sh"
FAST = ["--no-progress", "--batch-sizes", "1,10", "--sweep-seconds", "0.02"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def process_cluster(state: Path, n_workers: int = 2, **env: str) -> Iterator[str]:
    """Scheduler + workers as separate processes via deploy/local; yields the address."""
    environ = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), **env}
    started = subprocess.run(
        ["bash", str(START), str(state), str(n_workers), str(free_port())],
        env=environ, capture_output=True, text=True, timeout=180, check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(STOP), str(state)], timeout=60, check=False)


def job_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.score", *args]


def run_job(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(job_command(*args), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def start_job(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(job_command(*args), cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_markers(run: Path, count: int, job: subprocess.Popen[str], deadline: float = 180):
    """Poll until `count` partitions of `run` are finished; returns their names."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        markers = sorted(p.name for p in (run / "partitions").glob("*.json"))
        if len(markers) >= count:
            return markers
        assert job.poll() is None, job.communicate()[1][-3000:]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} partitions finished within {deadline}s")


def report_of(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())


def predictions_of(run: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(run / "predictions.zarr"), mode="r")
    return {name: group[name][:] for name in ("knn", "mlp")}


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory, vendored: RawMnist) -> tuple[Path, Path]:
    """All 10,000 canonical test digits and a 20,000-reference KNN: seconds of real work."""
    root = tmp_path_factory.mktemp("medium")
    store = build_store(vendored, root / "mnist.zarr", split="canonical", chunk_rows=200)
    models = root / "models"
    train(TrainSpec(store=store, models=models, epochs=1, train_limit=20_000))
    return store, models


@pytest.fixture(scope="module")
def medium_reference(medium: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """Predictions of the medium run computed in one process: the ground truth."""
    store, models = medium
    job = ScoreJob(store=str(store), run_dir=tmp_path_factory.mktemp("ref"),
                   models=ModelRef.from_directory(models), partition_rows=200)
    return score_in_process(job)


def assert_same_scores(run: Path, reference: dict[str, np.ndarray], labels: np.ndarray) -> None:
    """Predictions equal the reference; the report's confusion matrices are theirs."""
    written, report = predictions_of(run), report_of(run)
    for name, expected in reference.items():
        np.testing.assert_array_equal(written[name], expected)
        confusion = np.zeros((10, 10), dtype=int)
        np.add.at(confusion, (labels, expected), 1)
        assert report["models"][name]["confusion"] == confusion.tolist()


def test_remote_cluster_gives_the_same_report_as_a_local_run(
    small_store: Path, small_models: Path, tmp_path: Path
) -> None:
    data = ["--store", str(small_store), "--models", str(small_models),
            "--partition-rows", "100", *FAST]
    local = run_job(*data, "--workers", "2", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    with process_cluster(tmp_path / "cluster") as address:
        remote = run_job(*data, "--scheduler", address, "--out", str(tmp_path / "remote"))
    assert remote.returncode == 0, remote.stderr[-3000:]
    ours, theirs = report_of(tmp_path / "remote"), report_of(tmp_path / "local")
    assert ours["cluster"]["scheduler"] == address
    assert ours["cluster"]["workers"] == 2 and not ours["cluster"]["models_shipped"]
    for name in ("knn", "mlp"):
        for field in ("accuracy", "per_class_accuracy", "confusion"):
            assert ours["models"][name][field] == theirs["models"][name][field]
    assert ours["dataset"]["n_images"] == theirs["dataset"]["n_images"] == 600
    for name, values in predictions_of(tmp_path / "local").items():
        np.testing.assert_array_equal(predictions_of(tmp_path / "remote")[name], values)


# Stimuli of the scheduler's worker removal: the nanny reporting its dead worker, or the
# worker's closed stream, whichever comes first.
WORKER_LOSS = ("nanny-close-", "handle-worker-cleanup-")


def scheduler_transitions(dask_scheduler: Any) -> list[tuple[str, str, str, str]]:
    """The scheduler's transition log as (key, start, finish, stimulus) tuples."""
    return [(str(t.key), t.start, t.finish, t.stimulus_id) for t in dask_scheduler.transition_log]


def tasks_lost_with_a_worker_and_recomputed(transitions: list[tuple[str, str, str, str]]
                                            ) -> set[str]:
    """Keys taken from a departed worker (processing or in memory there) that were later
    computed to memory again, i.e. on another worker."""
    lost_at: dict[str, int] = {}
    recomputed = set()
    for index, (key, start, finish, stimulus) in enumerate(transitions):
        if stimulus.startswith(WORKER_LOSS) and start in ("processing", "memory"):
            lost_at.setdefault(key, index)
        elif key in lost_at and (start, finish) == ("processing", "memory"):
            recomputed.add(key)
    return recomputed


def test_a_worker_killed_mid_run_changes_nothing(
    medium: tuple[Path, Path], medium_reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    store, models = medium
    run = tmp_path / "run"
    with process_cluster(tmp_path / "cluster") as address:
        job = start_job("--scheduler", address, "--store", str(store), "--models", str(models),
                        "--partition-rows", "200", "--out", str(run), *FAST)
        done_before = wait_for_markers(run, 3, job)
        with Client(address, timeout=30) as client:
            victim_address, victim_pid = min(client.run(os.getpid).items())
        os.kill(victim_pid, signal.SIGKILL)
        _, stderr = job.communicate(timeout=300)
        with Client(address, timeout=30) as client:
            transitions = client.run_on_scheduler(scheduler_transitions)
    assert job.returncode == 0, stderr[-3000:]
    assert len(done_before) < 50, "the run finished before the worker was killed"
    assert tasks_lost_with_a_worker_and_recomputed(transitions), "no task was lost and rerun"
    labels = zarr.open_group(str(store), mode="r")["test/labels"][:]
    assert_same_scores(run, medium_reference, labels)
    assert report_of(run)["dataset"]["partitions"] == 50
    assert victim_address.startswith("tcp://127.0.0.1:")


def test_an_interrupted_run_resumes_without_recomputing_finished_partitions(
    medium: tuple[Path, Path], medium_reference: dict[str, np.ndarray], tmp_path: Path
) -> None:
    store, models = medium
    run = tmp_path / "run"
    args = ["--store", str(store), "--models", str(models), "--partition-rows", "200",
            "--out", str(run), "--workers", "2", *FAST]
    job = start_job(*args)
    wait_for_markers(run, 3, job)
    job.send_signal(signal.SIGKILL)  # the client dies: no clean shutdown at all
    job.wait(timeout=60)
    finished = {p.name: p.stat().st_mtime_ns for p in (run / "partitions").glob("*.json")}
    assert 3 <= len(finished) < 50
    refused = run_job(*args)
    assert refused.returncode == 5 and "pass --resume" in refused.stderr
    resumed = run_job(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = {p.name: p.stat().st_mtime_ns for p in (run / "partitions").glob("*.json")}
    assert {name: after[name] for name in finished} == finished
    report = report_of(run)
    assert report["dataset"]["partitions"] == 50
    assert report["dataset"]["partitions_computed"] == 50 - len(finished)
    labels = zarr.open_group(str(store), mode="r")["test/labels"][:]
    assert_same_scores(run, medium_reference, labels)


def write_tls_files(folder: Path, name: str) -> tuple[str, str, str]:
    """A CA and a certificate it signs for 127.0.0.1/localhost; returns (ca, cert, key) paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=7))

    def build(subject: str, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey | None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(valid[0]).not_valid_after(valid[1]))
        if issuer is None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        else:
            import ipaddress
            san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), False)
        return key, builder.sign(signer or key, hashes.SHA256()), name

    ca_key, ca_cert, ca_name = build(f"{name} CA", None, None)
    key, cert, _ = build(f"{name} node", ca_name, ca_key)
    paths = tuple(str(folder / f"{name}-{part}.pem") for part in ("ca", "cert", "key"))
    pem = serialization.Encoding.PEM
    Path(paths[0]).write_bytes(ca_cert.public_bytes(pem))
    Path(paths[1]).write_bytes(cert.public_bytes(pem))
    Path(paths[2]).write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


def test_tls_cluster_serves_clients_with_certificates_and_refuses_others(
    small_store: Path, small_models: Path, tmp_path: Path
) -> None:
    ca, cert, key = write_tls_files(tmp_path, "ours")
    other_ca, other_cert, other_key = write_tls_files(tmp_path, "theirs")
    data = ["--store", str(small_store), "--models", str(small_models), *FAST]
    with process_cluster(tmp_path / "cluster", DASK_TLS_CA=ca, DASK_TLS_CERT=cert,
                         DASK_TLS_KEY=key) as address:
        assert address.startswith("tls://")
        served = run_job(*data, "--scheduler", address, "--out", str(tmp_path / "ok"),
                         "--tls-ca", ca, "--tls-cert", cert, "--tls-key", key)
        started = time.monotonic()
        plain = run_job(*data, "--scheduler", address, "--out", str(tmp_path / "plain"),
                        "--connect-timeout", "5", timeout=120)
        stranger = run_job(*data, "--scheduler", address, "--out", str(tmp_path / "stranger"),
                           "--connect-timeout", "5", "--tls-ca", other_ca,
                           "--tls-cert", other_cert, "--tls-key", other_key, timeout=120)
        elapsed = time.monotonic() - started
    assert served.returncode == 0, served.stderr[-3000:]
    assert report_of(tmp_path / "ok")["cluster"]["scheduler"] == address
    for name, refused in (("plain", plain), ("stranger", stranger)):
        assert refused.returncode == 9, refused.stderr[-3000:]
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "cannot reach Dask scheduler" in errors[0]
        assert not (tmp_path / name / "report.json").exists()
    assert elapsed < 100


def copy_to_memory(local: Path, url: str) -> None:
    """Copy a local folder tree into this process's in-memory fsspec filesystem."""
    fs = fsspec.filesystem("memory")
    for path in local.rglob("*"):
        if path.is_file():
            fs.pipe(f"{url}/{path.relative_to(local).as_posix()}", path.read_bytes())


def test_models_only_on_the_client_are_sent_to_each_worker_once(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_to_memory(small_models, "memory://client-only-models")  # workers cannot see this
    with process_cluster(tmp_path / "cluster") as address:
        code = score_job.main(["--scheduler", address, "--store", str(small_store),
                               "--models", "memory://client-only-models",
                               "--out", str(tmp_path / "run"), "--partition-rows", "50", *FAST])
        with Client(address, timeout=30) as client:
            loads = client.run(lambda: __import__("mnist_dist.models.cache",
                                                  fromlist=["load_count"]).load_count)
    assert code == 0, capsys.readouterr().err[-3000:]
    report = report_of(tmp_path / "run")
    assert report["cluster"]["models_shipped"] is True
    assert set(loads.values()) == {1}, loads
    assert report["dataset"]["partitions"] == 12


def test_a_store_the_workers_cannot_read_fails_early_with_one_line(
    small_store: Path, small_models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy_to_memory(small_store, "memory://client-only-store")
    with process_cluster(tmp_path / "cluster") as address:
        started = time.monotonic()
        code = score_job.main(["--scheduler", address, "--store", "memory://client-only-store",
                               "--models", str(small_models), "--out", str(tmp_path / "run"),
                               *FAST])
        elapsed = time.monotonic() - started
    errors = capsys.readouterr().err.strip().splitlines()
    assert code == 9
    assert len(errors) == 1
    assert "cannot read store memory://client-only-store" in errors[0]
    assert elapsed < 60
    assert not (tmp_path / "run" / "report.json").exists()
