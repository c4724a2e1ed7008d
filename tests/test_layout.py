"""The code's shape: which layer may import which, and no module or function a reader must wade
through. Imports are read from the source (ast), so a new module is covered automatically."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Functions allowed past MAX_FUNCTION_LINES, each with the reason (none today).
LONG_FUNCTIONS: dict[str, str] = {}

# (folder or module prefix, imports it must not make, why)
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("mnist_dist.data", ("distributed", "mnist_dist.cluster", "mnist_dist.scoring",
                         "mnist_dist.report", "mnist_dist.bench",
                         "mnist_dist.images", "mnist_dist.models", "mnist_dist.preparation"),
     "data/ reads and writes the store; it never starts or uses a cluster"),
    ("mnist_dist.models", ("dask", "distributed", "zarr", "mnist_dist.cluster",
                           "mnist_dist.scoring", "mnist_dist.report",
                           "mnist_dist.bench", "mnist_dist.data", "mnist_dist.images"),
     "models/ fits, saves, loads and predicts on NumPy batches: no Dask, no store"),
    ("mnist_dist.report", ("distributed", "mnist_dist.cluster", "mnist_dist.scoring.run",
                           "mnist_dist.scoring.graph", "mnist_dist.scoring.sweep",
                           "mnist_dist.bench", "mnist_dist.scoring.images"),
     "report/ builds and renders documents from results; it runs nothing"),
    ("mnist_dist", ("jobs",), "the library never imports the entry points"),
)
BENCH_ONLY = "mnist_dist.bench"  # only the command line and the bench import the benchmarks
TRAINING_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx")
TRAINING_MODULES = ("mnist_dist.training.mlp", "mnist_dist.models.mlp_train")
# The benchmark's Keras peer imports TensorFlow inside a function, only when it is installed.
LAZY_TRAINING_OK = ("mnist_dist.bench.baselines",)
JOB_ALLOWED = ("mnist_dist", "argparse", "sys", "pathlib", "__future__", "typing", "logging")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module, dotted
    top_level: bool  # made when the module is imported (not inside a function)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    module = module_name(path)
    in_function = {
        id(node) for func in ast.walk(tree)
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(func)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                package = module if path.name == "__init__.py" else module.rpartition(".")[0]
                package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{package}.{base}" if base else package
            # `from a import b` may import module a.b: record both
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found += [Import(module, path, node.lineno, t, id(node) not in in_function)
                  for t in targets]
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


ALL_IMPORTS = [imp for path in sources("mnist_dist", "jobs") for imp in imports_of(path)]


def test_imports_are_read() -> None:
    """The reader itself: it sees known imports, so the rules below cannot pass vacuously."""
    seen = {(imp.module, imp.target) for imp in ALL_IMPORTS}
    assert ("mnist_dist.scoring.graph", "distributed") in seen
    assert ("mnist_dist.models.cache", "mnist_dist.models.knn") in seen


@pytest.mark.parametrize("prefix,forbidden,why", RULES, ids=[r[0] for r in RULES])
def test_layers_import_only_what_they_may(prefix: str, forbidden: tuple[str, ...], why: str
                                          ) -> None:
    offending = [
        imp.where() for imp in ALL_IMPORTS
        if within(imp.module, prefix) and any(within(imp.target, f) for f in forbidden)
        and not within(imp.target, prefix)
    ]
    assert not offending, f"{why}:\n" + "\n".join(offending)


def test_only_the_command_line_and_the_bench_import_the_bench() -> None:
    offending = [imp.where() for imp in ALL_IMPORTS
                 if within(imp.target, BENCH_ONLY) and not within(imp.module, BENCH_ONLY)
                 and not within(imp.module, "jobs") and not within(imp.module, "mnist_dist.cli")]
    assert not offending, "the benchmarks sit on top; library code must not import them:\n" \
        + "\n".join(offending)


def test_scoring_code_is_free_of_tensorflow() -> None:
    """Scoring workers install no `train` extra: only training code imports TensorFlow & co."""
    offending = [
        imp.where() for imp in ALL_IMPORTS
        if any(within(imp.target, p) for p in TRAINING_PACKAGES)
        and not any(within(imp.module, m) for m in TRAINING_MODULES)
        and not (imp.module in LAZY_TRAINING_OK and not imp.top_level)
    ]
    assert not offending, "only training code may import TensorFlow, Keras or tf2onnx:\n" \
        + "\n".join(offending)


def test_training_is_imported_lazily_outside_training() -> None:
    """Modules a scoring worker imports must not pull in mlp_train (and so TensorFlow)."""
    offending = [imp.where() for imp in ALL_IMPORTS
                 if within(imp.target, "mnist_dist.models.mlp_train") and imp.top_level
                 and not any(within(imp.module, m) for m in TRAINING_MODULES)]
    assert not offending, "import mlp_train inside the function that trains:\n" \
        + "\n".join(offending)


def test_jobs_only_parse_arguments_and_call_the_library() -> None:
    offending = [
        imp.where() for imp in ALL_IMPORTS
        if within(imp.module, "jobs") and not any(within(imp.target, a) for a in JOB_ALLOWED)
        and imp.target != "jobs" and not within(imp.target, "jobs")
    ]
    assert not offending, "jobs/ parses arguments and calls mnist_dist, nothing else:\n" \
        + "\n".join(offending)


def test_no_module_over_the_line_limit() -> None:
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in sources("mnist_dist")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"split modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(long)


def test_no_function_over_the_line_limit() -> None:
    long = []
    for path in sources("mnist_dist", "jobs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                name = f"{module_name(path)}.{node.name}"
                if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} lines")
    assert not long, f"split functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_rules_name_real_modules() -> None:
    """A renamed package would silently empty a rule: every prefix must match some module."""
    names = {module_name(p) for p in sources("mnist_dist", "jobs")}
    for prefix, _, _ in RULES:
        assert any(within(name, prefix) for name in names), prefix
    assert sys.modules  # keeps the import used when the list above is empty


# Each job is one package of one shape: a spec, a run(spec, *, client=None), pure tasks.
JOB_PACKAGES = ("scoring", "ingestion", "exporting", "preparation", "training")
JOB_MODULES = ("spec", "run")


@pytest.mark.parametrize("package", JOB_PACKAGES)
def test_every_job_package_has_the_same_shape(package: str) -> None:
    folder = ROOT / "mnist_dist" / package
    missing = [name for name in JOB_MODULES if not (folder / f"{name}.py").is_file()]
    assert not missing, f"mnist_dist/{package} lacks {missing}"
    tree = ast.parse((folder / "run.py").read_text())
    run = next((node for node in tree.body
                if isinstance(node, ast.FunctionDef) and node.name == "run"), None)
    assert run is not None, f"mnist_dist/{package}/run.py defines no run()"
    assert [a.arg for a in run.args.args] == ["spec"], "run takes the spec alone, positionally"
    assert [a.arg for a in run.args.kwonlyargs] == ["client"], "and the client by keyword"
    spec = ast.parse((folder / "spec.py").read_text())
    assert any(isinstance(node, ast.ClassDef) and node.name.endswith("Spec")
               for node in spec.body), f"mnist_dist/{package}/spec.py defines no *Spec"


def test_tasks_import_no_dask() -> None:
    """Per-partition work is plain NumPy in, NumPy out: testable without a cluster."""
    offending = [imp.where() for imp in ALL_IMPORTS
                 if imp.module.endswith(".tasks") and within(imp.module, "mnist_dist")
                 and any(within(imp.target, d) for d in ("dask", "distributed"))]
    assert not offending, "tasks.py modules must not import Dask:\n" + "\n".join(offending)


# What the --images run may use of the score run: the run itself, not its parts.
SCORE_RUN_PARTS = ("mnist_dist.scoring.graph", "mnist_dist.scoring.sweep",
                   "mnist_dist.report.document", "mnist_dist.report.render",
                   "mnist_dist.cluster.ship_models_if_needed", "mnist_dist.cluster.check_versions",
                   "mnist_dist.images.staging.stage_files", "mnist_dist.images.staging.compact_staged")


def test_the_images_run_is_an_ingest_then_a_score_run() -> None:
    """`--images` has no orchestration of its own: the ingest's file step, then the score run."""
    targets = {imp.target for imp in ALL_IMPORTS if imp.module == "mnist_dist.scoring.images"}
    assert {"mnist_dist.ingestion.run.ingest_files", "mnist_dist.scoring.run.score_on"} <= targets
    assert not [t for t in targets if any(within(t, part) for part in SCORE_RUN_PARTS)]


@pytest.mark.parametrize("module,absent", [
    ("mnist_dist", ("distributed", "tensorflow", "matplotlib", "dask_ml")),
    ("mnist_dist.report", ("distributed",)),
    ("mnist_dist.report.render", ("distributed",)),
    ("mnist_dist.cli.score", ("distributed", "zarr", "sklearn", "onnxruntime", "tensorflow")),
])
def test_importing_loads_only_what_it_needs(module: str, absent: tuple[str, ...]) -> None:
    """Checked in a fresh interpreter: the report renders without Dask's distributed side, and
    a command line parses its flags (`--help`) before any heavy import."""
    code = f"import sys, {module}; print([m for m in {absent!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_command_line_imports_only_the_public_api_and_its_argument_types() -> None:
    """`mnist-dist <job>` can do nothing a Python caller cannot: a job's command line imports
    `mnist_dist` (its public names), the modules that define them, errors and `mnist_dist.cli`
    (whose `arguments` are the flag types and settings). The benchmarks' command lines drive
    `mnist_dist.bench`, which sits on top."""
    import mnist_dist

    modules = {module for module, _ in mnist_dist._EXPORTS.values()}
    names = {f"{module}.{name}" for module, name in mnist_dist._EXPORTS.values()}

    def public(target: str) -> bool:
        parent, _, name = target.rpartition(".")
        return (target in ("mnist_dist", "mnist_dist.errors") or target in modules
                or target in names or parent in ("mnist_dist", "mnist_dist.errors")
                or (parent in modules and name.isupper()))  # e.g. a spec's choices

    exempt = ("mnist_dist.cli.arguments", "mnist_dist.cli.bench", "mnist_dist.cli.scale")
    offending = [
        imp.where() for imp in ALL_IMPORTS
        if within(imp.module, "mnist_dist.cli") and imp.module not in exempt
        and within(imp.target, "mnist_dist") and not within(imp.target, "mnist_dist.cli")
        and not public(imp.target)
    ]
    assert not offending, "build the command line on the public API:\n" + "\n".join(offending)
