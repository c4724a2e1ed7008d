"""Settings have one home: `mnist_dist/settings.yaml` in a `mnist-dist` section of dask.config,
overridden by Dask config files, environment variables and flags, in that order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dask.config
import pytest
import yaml

from mnist_dist import settings
from mnist_dist.cli.arguments import from_setting
from mnist_dist.errors import SpecError
from mnist_dist.scoring.spec import ScoreSpec
from mnist_dist.training.spec import TrainSpec

ROOT = Path(__file__).resolve().parents[1]
PRINT_SCORE_DEFAULTS = (
    "from jobs.score import parse_args; import sys; "
    "a = parse_args(sys.argv[1:]); print(a.partition_mb, a.batch_sizes, a.epochs)"
)


def python(code: str, *args: str, env: dict[str, str] | None = None,
           cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with only `env` added to a clean environment."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("MNIST_DIST_", "DASK_"))}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(ROOT), **(env or {})}, cwd=cwd,
                          timeout=120, check=False)


def test_the_defaults_are_the_shipped_yaml() -> None:
    shipped = yaml.safe_load(settings.DEFAULTS_FILE.read_text())["mnist-dist"]
    assert settings.setting("score.partition-mb") == shipped["score"]["partition-mb"] == 20.0
    assert settings.package_default("train.epochs") == shipped["train"]["epochs"] == 10
    # Nothing overrides them in the tests but the data home (conftest), which places the
    # unset store and models.
    home = settings.data_home()
    assert settings.effective_settings() == {
        **shipped, "home": str(home), "store": str(home / "mnist.zarr"),
        "models": str(home / "models")}


PRINT_LOCATIONS = ("import mnist_dist as md; "
                   "print(md.data_home(), md.default_store(), md.default_models(), sep='\\n')")


def test_the_store_and_models_live_in_the_data_home_whatever_the_working_folder(
    tmp_path: Path,
) -> None:
    elsewhere = tmp_path / "notebooks"
    elsewhere.mkdir()
    user_home = tmp_path / "user"
    default = python(PRINT_LOCATIONS, env={"HOME": str(user_home)}, cwd=elsewhere)
    assert default.stdout.split() == [str(user_home / "mnist_dist_data"),
                                      str(user_home / "mnist_dist_data" / "mnist.zarr"),
                                      str(user_home / "mnist_dist_data" / "models")]
    chosen = python(PRINT_LOCATIONS, env={"MNIST_DIST_HOME": str(tmp_path / "data")},
                    cwd=elsewhere)
    assert chosen.stdout.split() == [str(tmp_path / "data"), str(tmp_path / "data/mnist.zarr"),
                                     str(tmp_path / "data/models")]
    own_store = python(PRINT_LOCATIONS, env={"MNIST_DIST_HOME": str(tmp_path / "data"),
                                             "MNIST_DIST_STORE": "/srv/mnist.zarr"})
    assert own_store.stdout.split()[1:] == ["/srv/mnist.zarr", str(tmp_path / "data/models")]


def test_a_data_home_that_is_not_a_path_is_refused() -> None:
    with dask.config.set({"mnist-dist.home": ""}), pytest.raises(SpecError, match="home"):
        settings.default_store()


def test_library_defaults_and_flag_defaults_read_the_settings() -> None:
    with dask.config.set({"mnist-dist.train.epochs": 3, "mnist-dist.score.split": "new"}):
        assert TrainSpec(store=Path("s"), models=Path("m")).epochs == 3
        spec = ScoreSpec()
        assert (spec.train_epochs, spec.split) == (3, "new")
        assert from_setting("train.epochs") == "3"
    assert ScoreSpec().train_epochs == 10


def test_environment_overrides_reach_the_flags() -> None:
    assert python(PRINT_SCORE_DEFAULTS).stdout.split() == ["20.0", "(1,", "10,", "100,",
                                                           "1000,", "10000)", "10"]
    env = {"MNIST_DIST_SCORE__PARTITION_MB": "40", "MNIST_DIST_SCORE__BATCH_SIZES": "[1, 10]",
           "DASK_MNIST_DIST__TRAIN__EPOCHS": "4"}
    out = python(PRINT_SCORE_DEFAULTS, env=env)
    assert out.stdout.split() == ["40.0", "(1,", "10)", "4"], out.stderr
    # A flag beats every setting.
    out = python(PRINT_SCORE_DEFAULTS, "--partition-mb", "8", "--epochs", "2", env=env)
    assert out.stdout.split() == ["8.0", "(1,", "10)", "2"], out.stderr


def test_a_dask_config_file_overrides_the_package_and_the_environment_overrides_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "mine.yaml").write_text("mnist-dist:\n  score:\n    partition-mb: 30\n")
    out = python(PRINT_SCORE_DEFAULTS, env={"DASK_CONFIG": str(tmp_path)})
    assert out.stdout.split()[0] == "30.0", out.stderr
    out = python(PRINT_SCORE_DEFAULTS, env={"DASK_CONFIG": str(tmp_path),
                                            "MNIST_DIST_SCORE__PARTITION_MB": "50"})
    assert out.stdout.split()[0] == "50.0", out.stderr


def test_a_bad_setting_is_one_error_line_naming_the_flag_and_the_setting() -> None:
    out = python("from jobs.score import main; raise SystemExit(main())",
                 env={"MNIST_DIST_SCORE__PARTITION_MB": "-3"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --partition-mb must be"), lines
    assert "mnist-dist.score.partition-mb" in lines[0]


def test_an_unknown_setting_is_refused_before_any_work(tmp_path: Path) -> None:
    out = python("from jobs.train import main; raise SystemExit(main())",
                 "--store", str(tmp_path / "store"), "--models", str(tmp_path / "m"),
                 env={"MNIST_DIST_TRAIN__EPOCHZ": "3"})
    assert out.returncode == 13, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "mnist-dist.train.epochz" in lines[0], lines
    assert not (tmp_path / "store").exists() and not (tmp_path / "m").exists()


def test_an_unknown_key_is_named_with_its_path() -> None:
    known = settings.load_defaults()["mnist-dist"]
    given = {"score": {"partition_mb": 1, "bogus": 2}, "stor": "x"}
    assert settings.unknown_keys(given, known, "mnist-dist") == [
        "mnist-dist.score.bogus", "mnist-dist.stor"]
    with dask.config.set({"mnist-dist.score.bogus": 1}), pytest.raises(SpecError, match="bogus"):
        settings.check_settings()
