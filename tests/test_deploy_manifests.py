"""Checks of the files in `deploy/docker` and `deploy/kubernetes`.

They are parsed and validated here, never run: the development machine has no container engine
and no Kubernetes cluster. The job command lines are parsed with `jobs.score.parse_args`, so a
renamed or removed flag breaks these tests instead of a deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dask.utils import parse_bytes

from jobs import score
from mnist_dist.settings import default_models, default_store

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
K8S = DEPLOY / "kubernetes"
DASK_API = "kubernetes.dask.org/v1"
SCORE_MODULE = ["python", "-m", "jobs.score"]
# Variables the Dask operator injects into the pods it creates.
OPERATOR_ENV = {"DASK_SCHEDULER_ADDRESS", "DASK_WORKER_NAME"}


# ---------------------------------------------------------------- helpers

def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of `path`."""
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def interpolate(value: Any) -> Any:
    """Compose-style `${VAR:-default}` / `${VAR-default}` replaced by the default, recursively."""
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, str):
        def default(match: re.Match[str]) -> str:
            if match.group(2) is None:
                raise AssertionError(f"${{{match.group(1)}}} has no default in {value!r}")
            return match.group(2)
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, value).replace("$$", "$")
    return value


def flag(argv: list[str], name: str) -> str:
    """The value following `name` in an argument list."""
    assert name in argv, f"{name} missing from {argv}"
    return argv[argv.index(name) + 1]


def score_flags() -> set[str]:
    """Every option string of `jobs.score`, read from its --help."""
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        score.parse_args(["--help"])
    return set(re.findall(r"--[a-z][a-z-]*", help_text.getvalue()))


def score_args(argv: list[str]) -> argparse.Namespace:
    """`argv` must run `python -m jobs.score`; its flags parsed by the job's own parser.

    Flags must be spelled out: argparse would accept an abbreviation that a later flag with
    the same prefix silently breaks.
    """
    assert argv[:3] == SCORE_MODULE, f"expected {SCORE_MODULE} ...; got {argv[:3]} instead"
    unknown = {a for a in argv[3:] if a.startswith("--")} - score_flags()
    assert not unknown, f"not flags of jobs.score: {sorted(unknown)}"
    return score.parse_args(argv[3:])


def quantity(text: str | float) -> float:
    """A Kubernetes resource quantity (`500m`, `1`, `1Gi`, `512Mi`) as a number."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    assert match, f"not a Kubernetes quantity: {text!r}"
    scale = {None: 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[match.group(2)]
    return float(match.group(1)) * scale


def compose_bytes(text: str) -> int:
    """A Compose memory size (`1536M`, `2g`): binary units."""
    match = re.fullmatch(r"([0-9]+)([bkmg]?)", text.lower())
    assert match, f"not a Compose memory size: {text!r}"
    return int(match.group(1)) * 1024 ** "bkmg".index(match.group(2) or "b")


def under(path: str, mounts: set[str]) -> bool:
    """True when `path` lies inside one of the mount points."""
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def containers(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The pod's containers by name."""
    return {c["name"]: c for c in pod_spec["containers"]}


def mounts(container: dict[str, Any]) -> list[tuple[str, str | None, bool]]:
    """(mountPath, subPath, readOnly) of each volume mount, sorted."""
    return sorted((m["mountPath"], m.get("subPath"), bool(m.get("readOnly")))
                  for m in container["volumeMounts"])


def compose_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (host source, read-only) of a Compose service's short-syntax volumes."""
    result = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        result[target] = (source, mode == ["ro"])
    return result


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The Compose file, variables replaced by their defaults."""
    (doc,) = load_docs(COMPOSE)
    return interpolate(doc)


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    """The DaskCluster resource."""
    (doc,) = load_docs(K8S / "daskcluster.yaml")
    return doc


@pytest.fixture(scope="module")
def daskjob() -> dict[str, Any]:
    """The DaskJob resource."""
    (doc,) = load_docs(K8S / "daskjob.yaml")
    return doc


def worker_specs(cluster: dict[str, Any], daskjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The worker group specs of both Kubernetes files."""
    return {"daskcluster": cluster["spec"]["worker"],
            "daskjob": daskjob["spec"]["cluster"]["spec"]["worker"]}


def scheduler_specs(cluster: dict[str, Any], daskjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scheduler specs of both Kubernetes files, with the cluster name each one gets."""
    return {cluster["metadata"]["name"]: cluster["spec"]["scheduler"],
            daskjob["metadata"]["name"]: daskjob["spec"]["cluster"]["spec"]["scheduler"]}


# ---------------------------------------------------------------- all files

def test_every_yaml_file_parses() -> None:
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    names = {f.relative_to(DEPLOY).as_posix() for f in files}
    assert {"docker/compose.yaml", "kubernetes/daskcluster.yaml", "kubernetes/daskjob.yaml",
            "kubernetes/storage.yaml", "kubernetes/kustomization.yaml"} <= names
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path}: no YAML document"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is not a mapping"


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_installs_base_dependencies_only() -> None:
    text = DOCKERFILE.read_text()
    first_from = next(line.strip() for line in text.splitlines() if line.startswith("FROM "))
    assert first_from == "FROM python:3.11-slim"
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text), "must pip install `.`"
    assert "[train]" not in text and "tensorflow" not in text.lower()
    for source in ("pyproject.toml", "README.md", "jobs", "mnist_dist"):
        copied = re.search(rf"^COPY\s.*\b{re.escape(source)}\b", text, re.MULTILINE)
        assert copied, f"{source} not copied"


def test_base_dependencies_exclude_training() -> None:
    # The image installs `.`: TensorFlow must stay in the `train` extra, out of the base deps.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "tensorflow" not in base and "tf2onnx" not in base
    assert any("tensorflow" in dep for dep in project["optional-dependencies"]["train"])


def test_dockerfile_runs_as_non_root_in_work_with_dask_worker_default() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}, "last USER must be non-root"
    workdirs = [line.split()[1] for line in lines if line.startswith("WORKDIR ")]
    assert workdirs[-1] == "/work"
    cmd = [line for line in lines if line.startswith("CMD ")]
    assert cmd and yaml.safe_load(cmd[-1][4:]) == ["dask", "worker"]


# ---------------------------------------------------------------- Compose

def test_compose_job_runs_score_with_valid_flags(compose: dict[str, Any]) -> None:
    job = compose["services"]["job"]
    args = score_args(job["command"])
    assert args.scheduler == "tcp://scheduler:8786"
    assert args.progress is False
    assert args.store == f"/data/{default_store().name}" and args.models == "/models"
    assert str(args.out).startswith("/runs/")


def test_compose_scheduler_and_dashboard_on_localhost(compose: dict[str, Any]) -> None:
    scheduler = compose["services"]["scheduler"]
    command = scheduler["command"]
    assert command[:2] == ["dask", "scheduler"]
    assert flag(command, "--port") == "8786" and flag(command, "--dashboard-address") == ":8787"
    assert scheduler["ports"] == ["127.0.0.1:8787:8787"]
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all hosts"


def test_compose_workers_single_threaded_within_their_limit(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:3] == ["dask", "worker", "tcp://scheduler:8786"]
    assert flag(command, "--nthreads") == "1" and flag(command, "--nworkers") == "1"
    limit = compose_bytes(worker["deploy"]["resources"]["limits"]["memory"])
    assert 2**30 <= parse_bytes(flag(command, "--memory-limit")) <= limit
    assert worker["deploy"]["replicas"] >= 1
    assert "container_name" not in worker, "a fixed container name prevents --scale"


def test_compose_services_share_one_built_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {s["image"] for s in services.values()} == {services["scheduler"]["image"]}
    build = services["scheduler"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == REPO and (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_volumes_identical_in_workers_and_job(compose: dict[str, Any]) -> None:
    worker = compose_mounts(compose["services"]["worker"])
    job = compose_mounts(compose["services"]["job"])
    assert worker == job
    args = score_args(compose["services"]["job"]["command"])
    for path in (args.store, args.models, str(args.out)):
        assert under(path, set(job)), f"{path} is not on a shared volume"
    assert not job["/runs"][1], "/runs must be writable: workers write predictions there"
    # By default the repository folders jobs.train writes are the ones mounted.
    assert (COMPOSE.parent / job["/data"][0]).resolve() == REPO / default_store().parent
    assert (COMPOSE.parent / job["/models"][0]).resolve() == REPO / default_models()


# ---------------------------------------------------------------- Kubernetes

def test_kubernetes_kinds(cluster: dict[str, Any], daskjob: dict[str, Any]) -> None:
    assert (cluster["apiVersion"], cluster["kind"]) == (DASK_API, "DaskCluster")
    assert (daskjob["apiVersion"], daskjob["kind"]) == (DASK_API, "DaskJob")
    (claim,) = load_docs(K8S / "storage.yaml")
    assert (claim["apiVersion"], claim["kind"]) == ("v1", "PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]


def test_daskjob_runs_score_against_operator_scheduler(daskjob: dict[str, Any]) -> None:
    pod = daskjob["spec"]["job"]["spec"]
    job = containers(pod)["job"]
    args = score_args(job["args"])
    # The operator's value already carries the scheme: `tcp://$(...)` would give tcp://tcp://.
    assert args.scheduler == "$(DASK_SCHEDULER_ADDRESS)"
    assert args.progress is False
    assert args.store == f"/data/{default_store().name}" and args.models == "/models"
    defined = OPERATOR_ENV | {env["name"] for env in job.get("env", [])}
    for var in re.findall(r"\$\((\w+)\)", " ".join(job["args"])):
        assert var in defined, f"$({var}) is neither set by the operator nor in the job's env"
    assert pod["restartPolicy"] == "Never"


@pytest.mark.parametrize("source", ["daskcluster", "daskjob"])
def test_kubernetes_workers_single_threaded_and_sized(
    source: str, cluster: dict[str, Any], daskjob: dict[str, Any]
) -> None:
    spec = worker_specs(cluster, daskjob)[source]
    worker = containers(spec["spec"])["worker"]
    args = worker["args"]
    assert args[:2] == ["dask", "worker"]
    assert flag(args, "--nthreads") == "1"
    assert flag(args, "--name") == "$(DASK_WORKER_NAME)"
    assert not any(a.startswith(("tcp://", "tls://")) for a in args), \
        "workers take the scheduler from the operator's DASK_SCHEDULER_ADDRESS"
    requests, limits = worker["resources"]["requests"], worker["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource
    assert quantity(requests["memory"]) >= 2**30
    assert parse_bytes(flag(args, "--memory-limit")) <= quantity(limits["memory"])
    assert spec["replicas"] >= 1


def test_kubernetes_schedulers(cluster: dict[str, Any], daskjob: dict[str, Any]) -> None:
    for name, spec in scheduler_specs(cluster, daskjob).items():
        scheduler = containers(spec["spec"])["scheduler"]
        assert scheduler["args"][:2] == ["dask", "scheduler"]
        ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
        assert ports == {"tcp-comm": 8786, "http-dashboard": 8787}
        requests, limits = scheduler["resources"]["requests"], scheduler["resources"]["limits"]
        for resource in ("cpu", "memory"):
            assert quantity(requests[resource]) <= quantity(limits[resource]), resource
        # The operator uses the service spec as given: it must select this cluster's scheduler.
        assert spec["service"]["selector"] == {
            "dask.org/cluster-name": name, "dask.org/component": "scheduler"}


def test_kubernetes_volumes_identical_in_workers_and_job(
    cluster: dict[str, Any], daskjob: dict[str, Any]
) -> None:
    (claim,) = load_docs(K8S / "storage.yaml")
    job_pod = daskjob["spec"]["job"]["spec"]
    job = containers(job_pod)["job"]
    pods = [job_pod] + [spec["spec"] for spec in worker_specs(cluster, daskjob).values()]
    for pod in pods:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert claims == {"shared": claim["metadata"]["name"]}
    for spec in worker_specs(cluster, daskjob).values():
        assert mounts(containers(spec["spec"])["worker"]) == mounts(job)
    paths = {path: read_only for path, _, read_only in mounts(job)}
    args = score_args(job["args"])
    for path in (args.store, args.models, str(args.out)):
        assert under(path, set(paths)), f"{path} is not on the shared volume"
    assert paths["/runs"] is False, "/runs must be writable: workers write predictions there"


def test_daskjob_cluster_repeats_daskcluster(
    cluster: dict[str, Any], daskjob: dict[str, Any]
) -> None:
    embedded = daskjob["spec"]["cluster"]["spec"]

    def without_selector(scheduler: dict[str, Any]) -> dict[str, Any]:
        service = {k: v for k, v in scheduler["service"].items() if k != "selector"}
        return {**scheduler, "service": service}

    assert embedded["worker"] == cluster["spec"]["worker"]
    assert without_selector(embedded["scheduler"]) == without_selector(cluster["spec"]["scheduler"])


def test_kubernetes_images_match(cluster: dict[str, Any], daskjob: dict[str, Any]) -> None:
    pods = [cluster["spec"]["worker"]["spec"], cluster["spec"]["scheduler"]["spec"],
            daskjob["spec"]["job"]["spec"], daskjob["spec"]["cluster"]["spec"]["worker"]["spec"],
            daskjob["spec"]["cluster"]["spec"]["scheduler"]["spec"]]
    images = {c["image"] for pod in pods for c in pod["containers"]}
    (kustomization,) = load_docs(K8S / "kustomization.yaml")
    assert {image.split(":")[0] for image in images} == {i["name"] for i in kustomization["images"]}
    assert len(images) == 1, f"one image for scheduler, workers and job; got {images}"


def test_kustomization_lists_existing_manifests() -> None:
    (kustomization,) = load_docs(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), f"{resource} listed but missing"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_builds() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S)], check=False, capture_output=True,
                           text=True, timeout=30)
    assert built.returncode == 0, built.stderr
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(built.stdout)}
    assert kinds == {("PersistentVolumeClaim", "mnist-dist-shared"), ("DaskCluster", "mnist-dist")}
