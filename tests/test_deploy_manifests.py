"""Checks of the files in `deploy/docker` and `deploy/kubernetes`, object-storage variants included.

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

import dask.config
import pytest
import yaml
from dask.utils import parse_bytes

from jobs import score
from mnist_dist.settings import default_models, default_store, package_default

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "docker" / "compose.yaml"
COMPOSE_S3 = DEPLOY / "docker" / "compose.s3.yaml"
K8S = DEPLOY / "kubernetes"
K8S_S3 = K8S / "s3"
K8S_MONITORING = K8S / "monitoring"
MONITORING = DEPLOY / "monitoring"
COMPOSE_MONITORING = DEPLOY / "docker" / "compose.monitoring.yaml"
# The annotations a Prometheus that scrapes annotated pods reads (besides prometheus.io/port).
SCRAPED = {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics"}
DASK_API = "kubernetes.dask.org/v1"
SCORE_MODULE = ["python", "-m", "jobs.score"]
# Variables the Dask operator injects into the pods it creates.
OPERATOR_ENV = {"DASK_SCHEDULER_ADDRESS", "DASK_WORKER_NAME"}
# What a process needs to reach the object storage (botocore reads these).
CREDENTIAL_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
S3_VARS = {"AWS_ENDPOINT_URL"} | CREDENTIAL_VARS
# Stand-ins for the values compose.s3.yaml requires from the environment.
S3_ENV = {"AWS_ENDPOINT_URL": "http://s3.test:8333", "AWS_ACCESS_KEY_ID": "test-id",
          "AWS_SECRET_ACCESS_KEY": "test-secret"}
# How a value in a template that is not a credential starts (secret.example.yaml).
PLACEHOLDER = "REPLACE-WITH-"


# ---------------------------------------------------------------- helpers

def load_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of `path`."""
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


COMPOSE_VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose-style interpolation, recursively: `${VAR:-default}` / `${VAR-default}` replaced
    by the default, `${VAR:?message}` / `${VAR?message}` by `env[VAR]`; a required variable
    missing from `env` fails as `docker compose` does."""
    env = env or {}
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, operator, word = match.groups()
            if operator is None:
                raise AssertionError(f"${{{name}}} has no default in {value!r}")
            if operator.endswith("?"):
                if name not in env:
                    raise AssertionError(f"required variable {name} is missing a value: {word}")
                return env[name]
            return word
        return COMPOSE_VARIABLE.sub(substitute, value).replace("$$", "$")
    return value


def required_variables(text: str) -> set[str]:
    """The variables a Compose file requires (`${VAR:?message}`)."""
    return {name for name, operator, _ in COMPOSE_VARIABLE.findall(text)
            if operator.endswith("?")}


def dockerfile_extras() -> set[str]:
    """The extras of the project the Dockerfile installs (`pip install ... ".[a,b]"`)."""
    installs = re.findall(r'pip install --no-cache-dir "?\.(?:\[([\w,-]*)\])?"?(?=\s|$)',
                          DOCKERFILE.read_text(), re.MULTILINE)
    assert len(installs) == 1, f"expected one `pip install` of the project, got {installs}"
    return {extra.strip() for extra in installs[0].split(",") if extra.strip()}


def credential_values(node: Any) -> list[tuple[str, Any]]:
    """(variable, value) of every credential variable given a value anywhere in a YAML tree:
    Compose environment mappings and `VAR=value` lists, Kubernetes `env` entries with
    `value`, Secret `stringData`."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        if node.get("name") in CREDENTIAL_VARS and "value" in node:
            found.append((node["name"], node["value"]))
        for key, item in node.items():
            if key in CREDENTIAL_VARS and not isinstance(item, (dict, list)):
                found.append((key, item))
            found += credential_values(item)
    elif isinstance(node, list):
        for item in node:
            found += credential_values(item)
    elif isinstance(node, str) and "=" in node:
        name, value = node.split("=", 1)
        if name in CREDENTIAL_VARS:
            found.append((name, value))
    return found


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


def env_entries(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Kubernetes container's `env` entries by variable name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def without(node: Any, keys: set[str]) -> Any:
    """`node` with every mapping entry named in `keys` removed, recursively."""
    if isinstance(node, dict):
        return {k: without(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [without(item, keys) for item in node]
    return node


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


@pytest.fixture(scope="module")
def compose_s3_raw() -> dict[str, Any]:
    """The object-storage Compose file as written (variables not replaced)."""
    (doc,) = load_docs(COMPOSE_S3)
    return doc


@pytest.fixture(scope="module")
def compose_s3(compose_s3_raw: dict[str, Any]) -> dict[str, Any]:
    """The object-storage Compose file, with stand-ins for the required S3 variables."""
    return interpolate(compose_s3_raw, S3_ENV)


@pytest.fixture(scope="module")
def s3_cluster() -> dict[str, Any]:
    """The object-storage DaskCluster resource."""
    (doc,) = load_docs(K8S_S3 / "daskcluster.yaml")
    return doc


@pytest.fixture(scope="module")
def s3_daskjob() -> dict[str, Any]:
    """The object-storage DaskJob resource."""
    (doc,) = load_docs(K8S_S3 / "daskjob.yaml")
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
            "kubernetes/storage.yaml", "kubernetes/kustomization.yaml",
            "docker/compose.s3.yaml", "kubernetes/s3/daskcluster.yaml",
            "kubernetes/s3/daskjob.yaml", "kubernetes/s3/config.yaml", "kubernetes/s3/runs.yaml",
            "kubernetes/s3/secret.example.yaml", "kubernetes/s3/kustomization.yaml"} <= names
    for path in files:
        docs = load_docs(path)
        assert docs, f"{path}: no YAML document"
        assert all(isinstance(doc, dict) for doc in docs), f"{path}: a document is not a mapping"


def test_no_credentials_written_in_deploy_files() -> None:
    # A credential variable gets its value from the environment (`${VAR:?...}`, Compose) or
    # from a Secret (`valueFrom`, Kubernetes); only the Secret template names one, and only
    # as a placeholder.
    files = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
    seen = set()
    for path in files:
        for doc in load_docs(path):
            assert not (doc.get("kind") == "Secret" and doc.get("data")), \
                f"{path}: a Secret with data (base64 values): use stringData placeholders"
            for name, value in credential_values(doc):
                seen.add(name)
                reference = re.fullmatch(rf"\$\{{{name}:?\?[^}}]*\}}", str(value))
                placeholder = str(value).startswith(PLACEHOLDER)
                assert reference or placeholder, f"{path}: {name} has a literal value"
    assert seen == CREDENTIAL_VARS, "the object-storage variants name both credentials"


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile_installs_the_s3_extra_and_not_training() -> None:
    text = DOCKERFILE.read_text()
    first_from = next(line.strip() for line in text.splitlines() if line.startswith("FROM "))
    assert first_from == "FROM python:3.11-slim"
    # Workers of the object-storage variants need s3fs; none may get TensorFlow.
    assert dockerfile_extras() == {"s3"}
    instructions = " ".join(line for line in text.lower().splitlines()
                            if not line.lstrip().startswith("#"))
    assert "train" not in instructions and "tensorflow" not in instructions
    for source in ("pyproject.toml", "README.md", "jobs", "mnist_dist"):
        copied = re.search(rf"^COPY\s.*\b{re.escape(source)}\b", text, re.MULTILINE)
        assert copied, f"{source} not copied"


def test_image_dependencies_exclude_training() -> None:
    # The image installs `.` and its extras: TensorFlow must stay in the `train` extra, out of
    # the base dependencies and of every extra the image installs (no `mnist-dist[train]` either).
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert dockerfile_extras() <= set(extras), "the image installs an extra pyproject lacks"
    installed = [*project["dependencies"], *(d for e in dockerfile_extras() for d in extras[e])]
    text = " ".join(installed).lower()
    assert "tensorflow" not in text and "tf2onnx" not in text and "train" not in text
    assert any("s3fs" in dep for dep in extras["s3"])
    assert any("tensorflow" in dep for dep in extras["train"])


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
    # By default the data home's store and models (where jobs.train writes them) are mounted.
    home = Path(package_default("home")).expanduser()
    with dask.config.set({"mnist-dist.home": str(home)}):
        assert Path(job["/data"][0]).expanduser() / default_store().name == default_store()
        assert Path(job["/models"][0]).expanduser() == default_models()


# ---------------------------------------------------------------- Compose, object storage

def test_compose_s3_requires_the_s3_variables(compose_s3_raw: dict[str, Any]) -> None:
    # `${VAR:?message}`: Compose refuses to start without them instead of running unsigned.
    assert required_variables(COMPOSE_S3.read_text()) == S3_VARS
    for name in S3_VARS:
        env = {k: v for k, v in S3_ENV.items() if k != name}
        with pytest.raises(AssertionError, match=f"required variable {name} is missing"):
            interpolate(compose_s3_raw, env)


def test_compose_s3_credentials_from_the_environment_only_where_s3_is_read(
    compose_s3_raw: dict[str, Any],
) -> None:
    services = compose_s3_raw["services"]
    for name in ("worker", "job"):
        environment = services[name]["environment"]
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for var in S3_VARS:
            assert var in environment, f"{name} lacks {var}"
            assert re.fullmatch(rf"\$\{{{var}:\?[^}}]+\}}", environment[var]), \
                f"{name}: {var} must come from the environment, got {environment[var]!r}"
        assert "env_file" not in services[name]
    # The scheduler never reads the bucket: it gets no credentials.
    assert not S3_VARS & set(services["scheduler"].get("environment", {}))


def test_compose_s3_job_reads_and_writes_s3(compose_s3: dict[str, Any]) -> None:
    args = score_args(compose_s3["services"]["job"]["command"])
    assert args.scheduler == "tcp://scheduler:8786"
    assert args.progress is False
    for flag_name, url in (("--store", args.store), ("--models", args.models),
                           ("--predictions", args.predictions)):
        assert url.startswith("s3://"), f"{flag_name} {url} is not on object storage"
    assert args.store.endswith(f"/{default_store().name}")
    # Each run has its own predictions store, named after its run folder.
    assert f"/{args.out.name}/" in args.predictions
    assert str(args.out).startswith("/runs/")


def test_compose_s3_workers_mount_nothing(compose_s3: dict[str, Any]) -> None:
    services = compose_s3["services"]
    assert "volumes" not in services["worker"], "workers share nothing but object storage"
    job = compose_mounts(services["job"])
    assert set(job) == {"/runs"}, "the job mounts only its run folder"
    assert not job["/runs"][1], "the run folder must be writable"
    args = score_args(services["job"]["command"])
    assert under(str(args.out), set(job))


def test_compose_s3_repeats_compose_except_storage(
    compose: dict[str, Any], compose_s3: dict[str, Any]
) -> None:
    plain, s3 = compose["services"], compose_s3["services"]
    assert compose_s3["name"] != compose["name"], "both variants can run side by side"
    assert s3["scheduler"] == plain["scheduler"]
    assert without(s3["worker"], {"environment"}) == without(plain["worker"], {"volumes"})
    assert without(s3["job"], {"environment", "command", "volumes"}) == \
        without(plain["job"], {"command", "volumes"})
    assert compose_mounts(s3["job"])["/runs"] == compose_mounts(plain["job"])["/runs"]
    assert {s["image"] for s in s3.values()} == {plain["scheduler"]["image"]}


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
    assert kinds == {("PersistentVolumeClaim", "mnist-dist-shared"), ("DaskCluster", "mnist-dist"),
                     ("DaskAutoscaler", "mnist-dist")}


# ---------------------------------------------------------------- Kubernetes, object storage

def s3_pods(s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod spec of the object-storage variant, by where it is."""
    embedded = s3_daskjob["spec"]["cluster"]["spec"]
    return {"daskcluster worker": s3_cluster["spec"]["worker"]["spec"],
            "daskcluster scheduler": s3_cluster["spec"]["scheduler"]["spec"],
            "daskjob job": s3_daskjob["spec"]["job"]["spec"],
            "daskjob worker": embedded["worker"]["spec"],
            "daskjob scheduler": embedded["scheduler"]["spec"]}


def test_kubernetes_s3_kinds(s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any]) -> None:
    assert (s3_cluster["apiVersion"], s3_cluster["kind"]) == (DASK_API, "DaskCluster")
    assert (s3_daskjob["apiVersion"], s3_daskjob["kind"]) == (DASK_API, "DaskJob")
    (config,) = load_docs(K8S_S3 / "config.yaml")
    assert (config["apiVersion"], config["kind"]) == ("v1", "ConfigMap")
    assert re.fullmatch(r"https?://\S+", config["data"]["AWS_ENDPOINT_URL"])
    (secret,) = load_docs(K8S_S3 / "secret.example.yaml")
    assert (secret["apiVersion"], secret["kind"], secret["type"]) == ("v1", "Secret", "Opaque")
    (claim,) = load_docs(K8S_S3 / "runs.yaml")
    assert (claim["apiVersion"], claim["kind"]) == ("v1", "PersistentVolumeClaim")
    (shared,) = load_docs(K8S / "storage.yaml")
    assert claim["metadata"]["name"] != shared["metadata"]["name"]
    # Distinct names: the variant does not replace the shared-volume cluster and job.
    (cluster,) = load_docs(K8S / "daskcluster.yaml")
    (daskjob,) = load_docs(K8S / "daskjob.yaml")
    assert s3_cluster["metadata"]["name"] != cluster["metadata"]["name"]
    assert s3_daskjob["metadata"]["name"] != daskjob["metadata"]["name"]


def test_kubernetes_s3_secret_template_holds_placeholders_only() -> None:
    (secret,) = load_docs(K8S_S3 / "secret.example.yaml")
    assert "data" not in secret, "base64 `data` would hide real values; use stringData"
    assert set(secret["stringData"]) == CREDENTIAL_VARS
    for name, value in secret["stringData"].items():
        assert str(value).startswith(PLACEHOLDER), f"{name} is not a placeholder: {value!r}"
    (kustomization,) = load_docs(K8S_S3 / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"], \
        "apply -k would replace the real credentials with the placeholders"


def test_kubernetes_s3_containers_get_endpoint_and_credentials_by_reference(
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any]
) -> None:
    (config,) = load_docs(K8S_S3 / "config.yaml")
    (secret,) = load_docs(K8S_S3 / "secret.example.yaml")
    for where, pod in s3_pods(s3_cluster, s3_daskjob).items():
        for container in pod["containers"]:
            env = env_entries(container)
            assert "envFrom" not in container, f"{where}: name each variable in env"
            if container["name"] == "scheduler":
                # The scheduler never reads the bucket: no credentials.
                assert not S3_VARS & set(env), f"{where}: the scheduler gets S3 variables"
                continue
            assert S3_VARS <= set(env), f"{where}: missing {sorted(S3_VARS - set(env))}"
            endpoint = env["AWS_ENDPOINT_URL"]["valueFrom"]["configMapKeyRef"]
            assert endpoint["name"] == config["metadata"]["name"]
            assert endpoint["key"] in config["data"]
            for var in CREDENTIAL_VARS:
                assert "value" not in env[var], f"{where}: {var} written in the manifest"
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"], f"{where}: {var}"
                assert ref["key"] in secret["stringData"], f"{where}: {var} key {ref['key']}"
                assert not ref.get("optional"), f"{where}: {var} must not be optional"


def test_kubernetes_s3_daskjob_reads_and_writes_s3(s3_daskjob: dict[str, Any]) -> None:
    pod = s3_daskjob["spec"]["job"]["spec"]
    job = containers(pod)["job"]
    args = score_args(job["args"])
    assert args.scheduler == "$(DASK_SCHEDULER_ADDRESS)"
    assert args.progress is False
    for flag_name, url in (("--store", args.store), ("--models", args.models),
                           ("--predictions", args.predictions)):
        assert url.startswith("s3://"), f"{flag_name} {url} is not on object storage"
    assert args.store.endswith(f"/{default_store().name}")
    assert "$(RUN_NAME)" in args.predictions and str(args.out).endswith("$(RUN_NAME)"), \
        "each run writes its own predictions store and run folder"
    defined = OPERATOR_ENV | set(env_entries(job))
    for var in re.findall(r"\$\((\w+)\)", " ".join(job["args"])):
        assert var in defined, f"$({var}) is neither set by the operator nor in the job's env"
    assert pod["restartPolicy"] == "Never"


def test_kubernetes_s3_no_shared_volume(
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any]
) -> None:
    (claim,) = load_docs(K8S_S3 / "runs.yaml")
    for where, pod in s3_pods(s3_cluster, s3_daskjob).items():
        if where == "daskjob job":
            continue
        assert not pod.get("volumes"), f"{where} has volumes: workers share only object storage"
        for container in pod["containers"]:
            assert not container.get("volumeMounts"), f"{where} mounts a volume"
    job_pod = s3_daskjob["spec"]["job"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in job_pod["volumes"]}
    assert claims == {"runs": claim["metadata"]["name"]}
    job = containers(job_pod)["job"]
    assert mounts(job) == [("/runs", None, False)], "the job mounts only its run folder"
    assert under(str(score_args(job["args"]).out), {"/runs"})
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], "only the job pod mounts it"


def test_kubernetes_s3_repeats_the_shared_volume_variant(
    cluster: dict[str, Any], daskjob: dict[str, Any],
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any],
) -> None:
    # Same sizing, images and probes: only the volumes give way to the S3 variables.
    storage = {"volumes", "volumeMounts", "env"}
    for plain, s3 in ((cluster["spec"], s3_cluster["spec"]),
                      (daskjob["spec"]["cluster"]["spec"], s3_daskjob["spec"]["cluster"]["spec"])):
        assert without(s3["worker"], storage) == without(plain["worker"], storage)
        assert without(s3["scheduler"], {"selector"}) == without(plain["scheduler"], {"selector"})
    plain_job = without(daskjob["spec"]["job"], storage | {"args"})
    assert without(s3_daskjob["spec"]["job"], storage | {"args"}) == plain_job
    # The DaskJob's own cluster repeats the standing one, as in the shared-volume variant.
    embedded = s3_daskjob["spec"]["cluster"]["spec"]
    assert embedded["worker"] == s3_cluster["spec"]["worker"]
    assert without(embedded["scheduler"], {"selector"}) == \
        without(s3_cluster["spec"]["scheduler"], {"selector"})
    for name, spec in scheduler_specs(s3_cluster, s3_daskjob).items():
        assert spec["service"]["selector"] == {
            "dask.org/cluster-name": name, "dask.org/component": "scheduler"}


def test_kubernetes_s3_kustomization_lists_existing_manifests_and_images(
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any]
) -> None:
    (kustomization,) = load_docs(K8S_S3 / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        path = (K8S_S3 / resource).resolve()
        # kustomize loads files only from its own folder or below.
        assert path.is_file() and path.is_relative_to(K8S_S3), f"{resource}: not a file here"
    assert {"config.yaml", "runs.yaml", "daskcluster.yaml"} <= set(kustomization["resources"])
    images = {c["image"] for pod in s3_pods(s3_cluster, s3_daskjob).values()
              for c in pod["containers"]}
    (base,) = load_docs(K8S / "kustomization.yaml")
    assert kustomization["images"] == base["images"]
    assert {image.split(":")[0] for image in images} == {i["name"] for i in base["images"]}
    assert len(images) == 1, f"one image for scheduler, workers and job; got {images}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_s3_builds() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S_S3)], check=False,
                           capture_output=True, text=True, timeout=30)
    assert built.returncode == 0, built.stderr
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(built.stdout)}
    assert kinds == {("ConfigMap", "mnist-dist-s3"), ("PersistentVolumeClaim", "mnist-dist-runs"),
                     ("DaskCluster", "mnist-dist-s3")}


# ---------------------------------------------------------------- metrics and autoscaling

def test_the_image_serves_metrics() -> None:
    # Dask's /metrics serve nothing without prometheus_client; the image installs the project
    # (`pip install .[extras]`), so a base dependency is in it.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"prometheus[-_]client\b", dep) for dep in project["dependencies"])
    assert dockerfile_extras() is not None  # exactly one `pip install` of the project


def dask_groups(*resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scheduler and worker specs of DaskClusters and DaskJobs, by where they are."""
    found = {}
    for resource in resources:
        spec = resource["spec"]["cluster"]["spec"] if resource["kind"] == "DaskJob" \
            else resource["spec"]
        for role in ("scheduler", "worker"):
            found[f"{resource['metadata']['name']} {role}"] = spec[role]
    return found


def dashboard_port(group: dict[str, Any], role: str) -> int:
    """The containerPort named http-dashboard of a scheduler or worker spec."""
    ports = {p["name"]: p["containerPort"] for p in containers(group["spec"])[role]["ports"]}
    return ports["http-dashboard"]


def test_kubernetes_schedulers_and_workers_announce_their_metrics(
    cluster: dict[str, Any], daskjob: dict[str, Any],
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any],
) -> None:
    # The operator copies spec.{scheduler,worker}.metadata onto the pods it creates.
    for where, group in dask_groups(cluster, daskjob, s3_cluster, s3_daskjob).items():
        role = where.rsplit(" ", 1)[1]
        port = dashboard_port(group, role)
        assert group["metadata"]["annotations"] == {**SCRAPED, "prometheus.io/port": str(port)}, \
            where
        args = containers(group["spec"])[role]["args"]
        if role == "worker":  # a worker's dashboard port is random unless given
            assert flag(args, "--dashboard-address") == str(port), where
        else:
            assert "--dashboard-address" not in args and port == 8787, where  # Dask's default


def test_autoscaler_scales_the_standing_cluster(cluster: dict[str, Any]) -> None:
    (scaler,) = load_docs(K8S / "autoscaler.yaml")
    assert (scaler["apiVersion"], scaler["kind"]) == (DASK_API, "DaskAutoscaler")
    spec = scaler["spec"]
    assert spec["cluster"] == cluster["metadata"]["name"]
    assert 1 <= spec["minimum"] <= cluster["spec"]["worker"]["replicas"] <= spec["maximum"]
    (kustomization,) = load_docs(K8S / "kustomization.yaml")
    assert "autoscaler.yaml" in kustomization["resources"]


def test_prometheus_operator_monitors_select_every_mnist_dist_scheduler_and_worker(
    cluster: dict[str, Any], daskjob: dict[str, Any],
    s3_cluster: dict[str, Any], s3_daskjob: dict[str, Any],
) -> None:
    (kustomization,) = load_docs(K8S_MONITORING / "kustomization.yaml")
    monitors = {doc["kind"]: doc for resource in kustomization["resources"]
                for doc in load_docs(K8S_MONITORING / resource)}
    assert set(monitors) == {"ServiceMonitor", "PodMonitor"}
    assert {m["apiVersion"] for m in monitors.values()} == {"monitoring.coreos.com/v1"}
    (service_endpoint,) = monitors["ServiceMonitor"]["spec"]["endpoints"]
    (pod_endpoint,) = monitors["PodMonitor"]["spec"]["podMetricsEndpoints"]
    assert service_endpoint["path"] == pod_endpoint["path"] == "/metrics"
    # The operator labels the scheduler Service and the worker pods with the resource's own
    # labels (a DaskJob's reach its cluster) and dask.org/component.
    for resource in (cluster, daskjob, s3_cluster, s3_daskjob):
        for kind, component in (("ServiceMonitor", "scheduler"), ("PodMonitor", "worker")):
            selector = monitors[kind]["spec"]["selector"]["matchLabels"]
            labels = {**resource["metadata"]["labels"], "dask.org/component": component}
            assert selector.items() <= labels.items(), f"{kind} misses {resource['kind']}"
    for name, spec in scheduler_specs(cluster, daskjob).items():
        ports = {p["name"]: p["targetPort"] for p in spec["service"]["ports"]}
        assert ports[service_endpoint["port"]] == "http-dashboard", name
    for where, group in dask_groups(cluster, daskjob).items():
        if where.endswith("worker"):
            ports = {p["name"] for p in containers(group["spec"])["worker"]["ports"]}
            assert pod_endpoint["port"] in ports, where


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_monitoring_builds() -> None:
    built = subprocess.run(["kubectl", "kustomize", str(K8S_MONITORING)], check=False,
                           capture_output=True, text=True, timeout=30)
    assert built.returncode == 0, built.stderr
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(built.stdout)}
    assert kinds == {("ServiceMonitor", "mnist-dist-scheduler"),
                     ("PodMonitor", "mnist-dist-workers")}


def test_prometheus_scrapes_the_compose_scheduler_and_every_worker(
    compose: dict[str, Any],
) -> None:
    (config,) = load_docs(MONITORING / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = compose["services"]
    port = {name: flag(services[name]["command"], "--dashboard-address").rsplit(":", 1)[1]
            for name in ("scheduler", "worker")}
    assert jobs["dask-scheduler"]["static_configs"] == [{"targets": [f"scheduler:{port['scheduler']}"]}]
    (workers,) = jobs["dask-workers"]["dns_sd_configs"]  # one address per worker container
    assert workers["names"] == ["worker"] and str(workers["port"]) == port["worker"]
    assert workers["type"] == "A"
    assert {job.get("metrics_path", "/metrics") for job in jobs.values()} == {"/metrics"}


def test_prometheus_kubernetes_job_keeps_the_annotated_dashboard_ports(
    cluster: dict[str, Any],
) -> None:
    (config,) = load_docs(MONITORING / "prometheus-kubernetes.yml")
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"]
            if rule.get("action") == "keep"}
    assert keep.pop("__meta_kubernetes_pod_label_app_kubernetes_io_name") == \
        cluster["metadata"]["labels"]["app.kubernetes.io/name"]
    assert keep.pop("__meta_kubernetes_pod_annotation_prometheus_io_scrape") == \
        SCRAPED["prometheus.io/scrape"]
    port_name = keep.pop("__meta_kubernetes_pod_container_port_name")
    assert not keep, f"unexpected filters: {keep}"
    for role in ("scheduler", "worker"):
        group = cluster["spec"][role]
        ports = {p["name"]: p["containerPort"] for p in containers(group["spec"])[role]["ports"]}
        assert str(ports[port_name]) == group["metadata"]["annotations"]["prometheus.io/port"]


def test_compose_monitoring_watches_the_compose_cluster(compose: dict[str, Any]) -> None:
    (doc,) = load_docs(COMPOSE_MONITORING)
    services = doc["services"]
    assert set(services) == {"prometheus", "grafana"} and not set(services) & set(compose["services"])
    for name, service in services.items():
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"]), name
        assert not service["image"].endswith(":latest") and ":" in service["image"], name
        assert set(service["depends_on"]) <= set(services) | set(compose["services"]), name

    def mounted(service: dict[str, Any]) -> dict[str, Path]:
        # Paths resolve against the first file's folder, deploy/docker, like compose.yaml's.
        pairs = (volume.split(":")[:2] for volume in service["volumes"])
        return {target: (COMPOSE.parent / source).resolve() for source, target in pairs}

    prometheus, grafana = mounted(services["prometheus"]), mounted(services["grafana"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == MONITORING / "prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    provisioning = grafana["/etc/grafana/provisioning"]
    (datasource,) = load_docs(provisioning / "datasources" / "prometheus.yaml")[0]["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    (provider,) = load_docs(provisioning / "dashboards" / "mnist-dist.yaml")[0]["providers"]
    folder = provider["options"]["path"]
    assert grafana[folder] == MONITORING / "grafana" / "dashboards"
    home = Path(services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.parent == Path(folder) and (grafana[folder] / home.name).is_file()
