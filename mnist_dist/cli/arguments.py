"""Helpers shared by the `jobs/` entry points: argument types, logging, errors to exit codes.

The command-line contract: a flag value that makes no sense (0 or negative where a count is
meant, NaN, inf, absurdly large, empty, text, a bad list member) is refused while the command
line is parsed, before any work starts, with one line `error: --flag must be …; got … instead`
on stderr and exit code `USAGE_EXIT` (2, argparse's). Settings that are each valid but wrong
together, or wrong for the data, fail later with `SpecError` (exit 13).

Flag defaults come from the settings (`mnist_dist.settings`) as text, so a bad value in a
config file or environment variable is refused by the same type as the flag, naming both.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import dask.config

from mnist_dist.errors import ClusterError, MnistDistError, exit_code_for, from_os_error
from mnist_dist.locations import is_url, local_path, scheme_problem
from mnist_dist.settings import SECTION, check_settings, setting
from mnist_dist.storage_options import parse_storage_options

if TYPE_CHECKING:
    from mnist_dist.cluster import ClusterSpec

log = logging.getLogger("mnist_dist")

USAGE_EXIT = 2
# No count of rows, workers, epochs or images this project handles comes near 2**31.
MAX_COUNT = 2**31 - 1
MAX_SEED = 2**32 - 1  # NumPy's legacy seeds are 32-bit
MAX_WORKERS = 1024  # LocalCluster processes/threads on one machine
# A sweep batch is held in memory several times over (uint8, float32 copies): 100k rows ≈ 1 GB.
MAX_BATCH_SIZE = 100_000
MAX_MIB = 1 << 20  # 1 TiB per partition
MAX_SECONDS = 86_400.0  # one day
MAX_EPOCHS = 10_000  # the study trains 10


class SettingText(str):
    """A flag's default: the text of a setting, remembering which one (for error messages)."""

    key: str


def from_setting(key: str) -> SettingText:
    """The setting `key` as the text its flag would take (lists comma-separated)."""
    value = setting(key)
    text = SettingText(",".join(map(str, value)) if isinstance(value, list) else str(value))
    text.key = key
    return text


def as_setting(value: object) -> object:
    """A parsed flag value as dask.config and JSON hold it (paths as text, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


class JobArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one `error: …` line (no usage block), exit code 2."""

    def parse_known_args(  # type: ignore[override]
        self, args: list[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse, then record in `settings_given` the value of every flag that is a setting."""
        parsed, extras = super().parse_known_args(args, namespace)
        parsed.settings_given = {
            action.default.key: as_setting(getattr(parsed, action.dest))
            for action in self._actions if isinstance(action.default, SettingText)
        }
        return parsed, extras

    def _get_value(self, action: argparse.Action, arg_string: str) -> object:
        try:
            return super()._get_value(action, arg_string)  # type: ignore[misc]
        except argparse.ArgumentError as exc:
            if not isinstance(arg_string, SettingText):
                raise
            raise argparse.ArgumentError(
                action, f"{exc.message} (from the setting {SECTION}.{arg_string.key})"
            ) from None

    def error(self, message: str) -> NoReturn:
        """Print `message` as one line naming the flag, then exit with USAGE_EXIT."""
        text = re.sub(r"^argument ([^:]+): ", r"\1 ", " ".join(message.split()))
        self.exit(USAGE_EXIT, f"error: {text}; see {self.prog} --help\n")


def _refuse(expected: str, text: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r} instead")


def _parse_int(text: str, low: int, high: int) -> int:
    """`text` as an integer in [low, high], else ArgumentTypeError naming the range."""
    expected = f"an integer from {low} to {high}"
    try:
        value = int(text.strip())
    except ValueError:
        _refuse(expected, text)
    if not low <= value <= high:
        _refuse(expected, text)
    return value


T = TypeVar("T")


def _named(parse: Callable[[str], T], name: str, doc: str) -> Callable[[str], T]:
    """`parse` under the name argparse shows in its messages, with its docstring."""
    parse.__name__ = name
    parse.__doc__ = f"argparse type: {doc}"
    return parse


def bounded_int(low: int, high: int, name: str, doc: str) -> Callable[[str], int]:
    """argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        return _parse_int(text, low, high)
    return _named(parse, name, doc)


positive_int = bounded_int(1, MAX_COUNT, "positive_int", "an integer from 1 to MAX_COUNT.")
non_negative_int = bounded_int(0, MAX_COUNT, "non_negative_int", "an integer from 0 to MAX_COUNT.")
seed_int = bounded_int(0, MAX_SEED, "seed_int", "a random seed, 0 to 2**32 - 1.")
worker_count = bounded_int(
    1, MAX_WORKERS, "worker_count", "LocalCluster workers or threads, 1 to MAX_WORKERS.",
)


def bounded_float(low: float, high: float, name: str, doc: str, low_inclusive: bool = False
                  ) -> Callable[[str], float]:
    """argparse type: a finite number in (low, high] (or [low, high] with `low_inclusive`)."""
    expected = f"a number {'>=' if low_inclusive else '>'} {low:g} and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            _refuse(expected, text)
        above = value >= low if low_inclusive else value > low
        if not math.isfinite(value) or not above or value > high:
            _refuse(expected, text)
        return value
    return _named(parse, name, doc)


positive_mib = bounded_float(
    0.0, MAX_MIB, "positive_mib", "a memory target in MiB, > 0 and at most 1 TiB.",
)
positive_seconds = bounded_float(
    0.0, MAX_SECONDS, "positive_seconds", "a duration in seconds, > 0 and at most one day.",
)
non_negative_seconds = bounded_float(
    0.0, MAX_SECONDS, "non_negative_seconds", "a duration in seconds, 0 to one day.", low_inclusive=True,
)
# Digits to generate: the disk-space check, not this bound, refuses what will not fit.
digit_count = bounded_int(1, 10**15, "digit_count", "a number of digits to generate, 1 to 10**15.")
epoch_count = bounded_int(1, MAX_EPOCHS, "epoch_count", "training epochs, 1 to MAX_EPOCHS.")


def int_list_of(high: int, name: str, doc: str) -> Callable[[str], tuple[int, ...]]:
    """argparse type: comma-separated integers from 1 to `high`, e.g. `1,10,100`."""
    expected = f"comma-separated integers from 1 to {high}"

    def parse(text: str) -> tuple[int, ...]:
        parts = text.split(",")
        try:
            values = tuple(_parse_int(part, 1, high) for part in parts)
        except argparse.ArgumentTypeError:
            _refuse(expected, text)
        return values
    return _named(parse, name, doc)


int_list = int_list_of(MAX_COUNT, "int_list", "comma-separated positive integers, e.g. `1,10,100`.")
batch_sizes = int_list_of(
    MAX_BATCH_SIZE, "batch_sizes", "comma-separated batch sizes from 1 to MAX_BATCH_SIZE.",
)


def plain_name(text: str) -> str:
    """argparse type: a store group name such as `test` (letters, digits, `_`, `-`)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", text):
        _refuse("a plain group name such as 'test'", text)
    return text


def non_empty(text: str) -> str:
    """argparse type: a non-empty path, or a URL that an installed fsspec back end opens (a
    store, models) or Dask connects to (a scheduler)."""
    if not text.strip():
        _refuse("a path or URL", text)
    problem = scheme_problem(text)
    if problem and not is_dask_address(text):
        _refuse(f"a path or a URL this machine can open: {problem}", text)
    return text


def is_dask_address(text: str) -> bool:
    """True for an address of a Dask transport, such as `tcp://host:8786`."""
    from distributed.comm.registry import get_backend  # here: Dask loads slowly (--help)

    try:
        get_backend(text.split("://", 1)[0])
    except ValueError:
        return False
    return True


def bind_address(text: str) -> str:
    """argparse type: `HOST:PORT` or `:PORT`, with a port from 0 (any free) to 65535."""
    host, _, port = text.rpartition(":")
    host_ok = bool(re.fullmatch(r"[A-Za-z0-9._-]*|\[[0-9A-Fa-f:]+\]", host))
    if ":" not in text or not host_ok or not (port.isdigit() and int(port) <= 65535):
        _refuse("HOST:PORT or :PORT with a port from 0 (any free) to 65535", text)
    return text


def path_arg(text: str) -> Path:
    """argparse type: a non-empty local path (`file://` URLs too, as their path)."""
    if is_url(text):
        _refuse("a local path (this flag takes no URL)", text)
    if not local_path(text).strip():
        _refuse("a path", text)
    return Path(local_path(text))


def add_storage_options_argument(parser: argparse.ArgumentParser) -> None:
    """`--storage-options JSON`, shared by every job that reads or writes s3:// locations."""
    parser.add_argument("--storage-options", type=parse_storage_options, default={},
                        metavar="JSON", help="s3fs options for s3:// locations, e.g. "
                        "'{\"endpoint_url\": \"http://127.0.0.1:8333\"}' "
                        "(credentials: AWS_* variables or ~/.aws)")


def worker_range(text: str) -> tuple[int, int]:
    """argparse type: `MIN:MAX` LocalCluster workers, 1 <= MIN <= MAX <= MAX_WORKERS."""
    low, colon, high = text.partition(":")
    try:
        values = (_parse_int(low, 1, MAX_WORKERS), _parse_int(high, 1, MAX_WORKERS))
    except argparse.ArgumentTypeError:
        values = (0, 0)
    if not colon or not 1 <= values[0] <= values[1]:
        _refuse(f"MIN:MAX, worker counts from 1 to {MAX_WORKERS} with MIN <= MAX", text)
    return values


class Excludes(argparse.Action):
    """Stores the value, refusing it together with any flag of `excludes` (by dest) given
    before or after it: one `error: --a not allowed with argument --b` line."""

    def __init__(self, *args: Any, excludes: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.excludes = excludes

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        for dest, flag in self.excludes.items():
            if getattr(namespace, dest, None) is not None:
                raise argparse.ArgumentError(self, f"not allowed with argument {flag}")
        setattr(namespace, self.dest, values)


def add_cluster_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The flags that choose the Dask cluster, shared by every job that runs on one."""
    parser.add_argument("--scheduler", type=non_empty, action=Excludes,
                        excludes={"adapt": "--adapt"}, help="address of a running Dask "
                        "scheduler, tcp:// or tls:// (default: start a LocalCluster sized to "
                        "this machine)")
    parser.add_argument("--connect-timeout", type=positive_seconds,
                        default=from_setting("cluster.connect-timeout"),
                        help="seconds to wait for the scheduler (default: %(default)s)")
    parser.add_argument("--tls-ca", type=non_empty, help="CA certificate (PEM) for a tls:// "
                        "scheduler")
    parser.add_argument("--tls-cert", type=non_empty, help="client certificate (PEM)")
    parser.add_argument("--tls-key", type=non_empty, help="client private key (PEM)")
    parser.add_argument("--workers", type=worker_count, action=Excludes,
                        excludes={"adapt": "--adapt"}, help="LocalCluster worker processes")
    parser.add_argument("--adapt", type=worker_range, action=Excludes, metavar="MIN:MAX",
                        excludes={"workers": "--workers", "scheduler": "--scheduler"},
                        help="adaptive LocalCluster: MIN worker processes, up to MAX while "
                        "tasks wait (a cluster of your own adapts by its own means)")
    parser.add_argument("--threads-per-worker", type=worker_count,
                        default=from_setting("cluster.threads-per-worker"),
                        help="LocalCluster threads per worker (default: %(default)s)")
    parser.add_argument("--dashboard-address", type=bind_address,
                        default=from_setting("cluster.dashboard-address"),
                        help="LocalCluster dashboard bind address (default: %(default)s, i.e. "
                        "127.0.0.1, any free port)")


def cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    """The cluster chosen by `add_cluster_arguments`' flags."""
    from mnist_dist.cluster import ClusterSpec, TlsFiles  # here: Dask loads slowly (--help)

    tls = (args.tls_ca, args.tls_cert, args.tls_key)
    if any(tls) and not all(tls):
        raise ClusterError("--tls-ca, --tls-cert and --tls-key go together; got only some")
    return ClusterSpec(
        scheduler=args.scheduler, n_workers=args.workers,
        threads_per_worker=args.threads_per_worker, connect_timeout=args.connect_timeout,
        dashboard_address=args.dashboard_address,
        tls=TlsFiles(args.tls_ca, args.tls_cert, args.tls_key) if all(tls) else None,
        adapt=args.adapt,
    )


def printable(text: str) -> str:
    """`text` with each control character (a terminal escape sequence's ESC among them) shown
    as its Python escape, e.g. `\\x1b`: names from files and stores cannot drive the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


class PrintableFormatter(logging.Formatter):
    """Log lines through `printable`."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def project_or_warning(record: logging.LogRecord) -> bool:
    """True for the project's own records and for other libraries' warnings and errors: Dask's
    scheduler chatter and the exporters' INFO lines stay off a job's console."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] == "mnist_dist"


def setup_logging(verbose: bool = False) -> None:
    """Concise INFO logging of the project to stderr (everything, at DEBUG, with `verbose`),
    control characters escaped."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(PrintableFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"))
        if not verbose:
            handler.addFilter(project_or_warning)


def run_job(job: Callable[[], int], args: argparse.Namespace | None = None) -> int:
    """Run `job` with the settings its flags gave (`args.settings_given`) in force, so reports
    record what ran; an mnist-dist error becomes one `error: …` line and its exit code."""
    given = getattr(args, "settings_given", {})
    try:
        check_settings()
        with dask.config.set({f"{SECTION}.{key}": value for key, value in given.items()}):
            return job()
    except MnistDistError as err:
        return error_line(err)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the contract: one line, never a traceback
        meaning = from_os_error(err) if isinstance(err, OSError) else None
        if meaning is not None:  # a file operation the system refused, e.g. a full disk
            return error_line(meaning)
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        reason = " ".join(str(err).split())[:300] or "no message"
        print(f"error: unexpected {type(err).__name__}: {printable(reason)} (a bug in "
              f"mnist-dist or a library; {TRACEBACK_VARIABLE}=1 shows where)", file=sys.stderr)
        return 1


# Set (to anything) to get the traceback of an unexpected error instead of its one line.
TRACEBACK_VARIABLE = "MNIST_DIST_TRACEBACK"


def error_line(err: MnistDistError) -> int:
    """Print `err` as one `error: …` line; its exit code."""
    print(f"error: {printable(' '.join(str(err).splitlines()))}", file=sys.stderr)
    return exit_code_for(err)
