"""The project's settings: a `mnist-dist` section of `dask.config`, defaults in settings.yaml.

Priority, lowest first: the package's `settings.yaml`, Dask config files and `DASK_MNIST_DIST__…`
variables (read by Dask itself), `MNIST_DIST_<SECTION>__<KEY>` variables, then a job's flags.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import Field, field
from pathlib import Path
from typing import Any

import dask.config
import yaml

from mnist_dist.errors import SpecError

SECTION = "mnist-dist"
DEFAULTS_FILE = Path(__file__).with_name("settings.yaml")
ENV_PREFIX = "MNIST_DIST_"


def load_defaults() -> dict[str, Any]:
    """The package's defaults, as shipped."""
    return yaml.safe_load(DEFAULTS_FILE.read_text())


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """`MNIST_DIST_SCORE__PARTITION_MB=40` → {"mnist-dist": {"score": {"partition_mb": 40}}}."""
    as_dask = {f"DASK_MNIST_DIST__{name[len(ENV_PREFIX):]}": value
               for name, value in env.items() if name.startswith(ENV_PREFIX)}
    return dask.config.collect_env(as_dask) if as_dask else {}


# Settings whose null default means "this name inside the data home".
IN_DATA_HOME = {"store": "mnist.zarr", "models": "models"}


def setting(key: str) -> Any:
    """The effective value of `key` (e.g. "score.partition-mb"); SpecError for an unknown key.

    An unset `store` or `models` is its place in the data home (`data_home()`).
    """
    try:
        value = dask.config.get(f"{SECTION}.{key}")
    except KeyError:
        raise SpecError(f"unknown setting {SECTION}.{key}") from None
    if value is None and key in IN_DATA_HOME:
        return str(data_home() / IN_DATA_HOME[key])
    return value


def data_home() -> Path:
    """The folder that holds the store and the models by default, whatever the working folder:
    the `home` setting (`MNIST_DIST_HOME`), `~/mnist_dist_data` unless set."""
    home = dask.config.get(f"{SECTION}.home")
    if not isinstance(home, str) or not home.strip():
        raise SpecError(f"setting {SECTION}.home must be a folder path; got {home!r} instead")
    return Path(home).expanduser().absolute()


def package_default(key: str) -> Any:
    """The value `settings.yaml` ships for `key`, whatever the user's overrides."""
    value: Any = load_defaults()[SECTION]
    for part in key.split("."):
        value = value[part]
    return value


def setting_field(key: str, convert: Callable[[Any], Any] = lambda value: value) -> Any:
    """A dataclass field whose default is the setting `key` when the instance is made."""
    made: Field[Any] = field(default_factory=lambda: convert(setting(key)))
    return made


def default_store() -> Path:
    """The store every job reads unless told otherwise."""
    return Path(setting("store"))


def default_models() -> Path:
    """The model folder jobs.train writes and jobs.score reads unless told otherwise."""
    return Path(setting("models"))


def unknown_keys(given: Mapping[str, Any], known: Mapping[str, Any], prefix: str) -> list[str]:
    """Dotted keys of `given` that `known` lacks (`-` and `_` are the same, as in dask.config)."""
    names = {str(k).replace("_", "-"): v for k, v in known.items()}
    unknown = []
    for key, value in given.items():
        name = str(key).replace("_", "-")
        if name not in names:
            unknown.append(f"{prefix}.{name}")
        elif isinstance(value, Mapping) and isinstance(names[name], Mapping):
            unknown += unknown_keys(value, names[name], f"{prefix}.{name}")
    return unknown


def check_settings() -> None:
    """SpecError naming any `mnist-dist` setting the package does not know (a typo, say)."""
    unknown = unknown_keys(dask.config.get(SECTION, {}), load_defaults()[SECTION], SECTION)
    if unknown:
        raise SpecError(f"unknown setting(s) {', '.join(unknown)}; the known ones are listed in "
                        f"{DEFAULTS_FILE}")


def effective_settings() -> dict[str, Any]:
    """A copy of the whole `mnist-dist` section as it is now, for a job's report (the store
    and models where the data home put them)."""
    section = copy.deepcopy(dask.config.get(SECTION))
    return {**section, **{key: setting(key) for key in IN_DATA_HOME}}


dask.config.update_defaults(load_defaults())
dask.config.update(dask.config.config, env_overrides(os.environ), priority="new")
