"""README.md and deploy/README.md stay short, readable and true: every job command line they show
is accepted by that job's own parser, their Python examples run, and they use no internal jargon."""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEPLOY_README = REPO / "deploy" / "README.md"
MAX_README_LINES = 300

# `mnist-dist <job>` runs mnist_dist.cli.<job> (mnist_dist/cli/main.py); so does python -m jobs.<job>.
JOBS = tuple(sorted(p.stem for p in (REPO / "mnist_dist" / "cli").glob("*.py")
                    if p.stem not in {"__init__", "main", "arguments"}))
CODE_BLOCK = re.compile(r"^```([\w-]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")
JOB_COMMAND = re.compile(r"\b(?:python3?\s+-m\s+jobs\.(\w+)|mnist-dist\s+(" + "|".join(JOBS) + r")\b)")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ";;"}


def code_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    return [body for lang, body in CODE_BLOCK.findall(text) if lang in languages]


def shell_snippets(text: str) -> list[str]:
    """Shell text: the bodies of ```bash and ``` blocks, then every inline code span outside
    code blocks (a span may wrap over lines)."""
    snippets = [body.replace("\\\n", " ") for body in code_blocks(text, ("bash", "sh", ""))]
    prose = CODE_BLOCK.sub("", text)
    snippets += [" ".join(span.split()) for span in INLINE_CODE.findall(prose)]
    return snippets


def job_commands(text: str) -> list[tuple[str, list[str], str]]:
    """(job, arguments, line) for every job command line in `text`'s shell snippets; the
    arguments end at a shell operator (`&&`, `;`, `|`) or a comment."""
    found = []
    for snippet in shell_snippets(text):
        for line in snippet.splitlines():
            if not JOB_COMMAND.search(line):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
            lexer.whitespace_split = True
            tokens = list(lexer)
            for i, token in enumerate(tokens):
                if token.endswith(("python", "python3")) and tokens[i + 1:i + 2] == ["-m"] \
                        and i + 2 < len(tokens) and tokens[i + 2].startswith("jobs."):
                    job, start = tokens[i + 2].removeprefix("jobs."), i + 3
                elif token == "mnist-dist" and i + 1 < len(tokens) and tokens[i + 1] in JOBS:
                    job, start = tokens[i + 1], i + 2
                else:
                    continue
                rest = []
                for arg in tokens[start:]:
                    if arg in SHELL_OPERATORS:
                        break
                    rest.append(arg)
                found.append((job, rest, line.strip()))
    return found


def check_parses(job: str, args: list[str], line: str) -> str | None:
    """None when `job`'s parser accepts `args`, else why not."""
    if job not in JOBS:
        return f"{line!r}: no job {job!r} (jobs: {', '.join(JOBS)})"
    parser = importlib.import_module(f"mnist_dist.cli.{job}").build_parser(f"python -m jobs.{job}")
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help exits 0
            return f"{line!r}: refused by jobs.{job}'s parser (exit {exc.code})"
    return None


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_parser_finds_command_lines_across_shell_forms() -> None:
    text = """
```bash
A=1 python -m jobs.score --split new \\
    --out runs/x && mnist-dist export runs/x --format csv   # comment --bogus
kubectl exec pod -- python -m jobs.prepare --store /data/mnist.zarr; echo done
```
Inline: `python -m jobs.report RUN` and `mnist-dist-loader` and `kubectl scale mnist-dist --replicas=2`.
"""
    assert [(job, args) for job, args, _ in job_commands(text)] == [
        ("score", ["--split", "new", "--out", "runs/x"]),
        ("export", ["runs/x", "--format", "csv"]),
        ("prepare", ["--store", "/data/mnist.zarr"]),
        ("report", ["RUN"]),
    ]
    assert check_parses("score", ["--bogus"], "x") is not None
    assert check_parses("score", ["--help"], "x") is None


@pytest.mark.parametrize("path, minimum", [(README, 10), (DEPLOY_README, 5)],
                         ids=["README.md", "deploy/README.md"])
def test_every_job_command_line_parses(path: Path, minimum: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    commands = job_commands(path.read_text())
    assert len(commands) >= minimum, f"only {len(commands)} job command lines found in {path}"
    failures = [why for job, args, line in commands if (why := check_parses(job, args, line))]
    capsys.readouterr()  # --help text and parser errors
    assert not failures, "\n".join(failures)


def test_readme_python_blocks_run(small_store: Path, small_models: Path, tmp_path: Path,
                                  data_home: Path) -> None:
    # The first block of "## From Python" runs in a Jupyter kernel in tests/test_notebook.py
    # (it needs the notebook's `client` and `x`): skipped here by design. Every other block runs
    # alone in a fresh interpreter, in an empty folder, with the store and models in the data
    # home (MNIST_DIST_HOME, set by conftest).
    text = README.read_text()
    blocks = code_blocks(text, ("python",))
    section = text[text.index("## From Python"):]
    first = CODE_BLOCK.search(section)
    assert first and first.group(1) == "python"
    others = [block for block in blocks if block != first.group(2)]
    assert len(others) == len(blocks) - 1
    if not others:
        pytest.skip("README.md has no Python block besides the notebook example")
    shutil.copytree(small_store, data_home / "mnist.zarr")
    shutil.copytree(small_models, data_home / "models")
    for number, block in enumerate(others, start=2):
        done = subprocess.run([sys.executable, "-c", block], check=False, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"README python block {number} failed:\n{block}\n{done.stderr}"


@pytest.mark.parametrize("path", [README, DEPLOY_README], ids=["README.md", "deploy/README.md"])
def test_no_internal_jargon(path: Path) -> None:
    text = path.read_text()
    issues = re.findall(r"issue\s*#?\d+", text, re.IGNORECASE)
    assert not issues, f"{path.name} names internal issues: {issues}"
    words = [w for w in ("GemmKnn", "MLAS") if w in text]
    assert not words, f"{path.name} uses internal names: {words}"
