"""Object storage (S3 and other fsspec URLs): checks and errors for stores, models, predictions.

Credentials and the endpoint come from where botocore looks for them, on the client and on
each worker alike: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`),
`AWS_ENDPOINT_URL`, `AWS_PROFILE` and `~/.aws`. Anything else for `s3fs.S3FileSystem` is
`--storage-options JSON` (see `storage_options.py`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec

from mnist_dist.errors import MnistDistError, SpecError, StorageError
from mnist_dist.locations import is_remote, is_url, scheme_problem
from mnist_dist.storage_options import SECRET_VARIABLES, use_storage_defaults


def redact(text: str) -> str:
    """`text` with the values of the credential variables of this process replaced by ***."""
    for name in SECRET_VARIABLES:
        value = os.environ.get(name)
        if value:
            text = text.replace(value, "***")
    return text


def is_s3(location: str) -> bool:
    """True for `s3://` (and `s3a://`) locations."""
    return location.split("://", 1)[0] in ("s3", "s3a") if "://" in location else False


def check_buckets(locations: Mapping[str, Any]) -> None:
    """Before any work, each URL of `locations` (a flag such as `--store` to its location;
    plain paths skipped): SpecError when no installed back end opens it, StorageError naming
    the flag unless its S3 bucket exists or its server answers."""
    for flag, location in locations.items():
        location = str(location or "")
        if not is_url(location):
            continue
        problem = scheme_problem(location)
        if problem:
            raise SpecError(f"{flag} {location}: {problem}")
        if is_s3(location):
            check_bucket(flag, location)
        else:
            check_reachable(flag, location)


def check_bucket(flag: str, location: str) -> None:
    """StorageError naming the flag unless the bucket of the S3 `location` is reachable and
    exists."""
    bucket = location.split("://", 1)[1].split("/", 1)[0]
    with storage_errors(f"{flag} {location}"):
        fs, _ = fsspec.core.url_to_fs(location)
        try:
            fs.info(bucket)
        except FileNotFoundError as exc:
            raise StorageError(f"{flag} {location}: bucket {bucket!r} does not exist "
                               f"at {endpoint(fs)}; create it first") from exc


def check_reachable(flag: str, location: str) -> None:
    """StorageError naming the flag when the server of a remote `location` does not answer,
    SpecError when fsspec cannot open it at all. A missing path, and an OSError of a local one
    (a zip file not there), are left to the job to name."""
    try:
        fs, path = fsspec.core.url_to_fs(location)
        fs.info(path)
    except FileNotFoundError as exc:
        if is_connection_failure(exc.__cause__):  # fsspec's http hides it as a missing file
            raise unreachable(flag, location, exc.__cause__) from exc
    except Exception as exc:  # each back end fails in its own way: aiohttp, ftplib, paramiko…
        if is_remote(location):
            raise unreachable(flag, location, exc) from exc
        if isinstance(exc, OSError):
            raise
        raise SpecError(f"{flag} {location}: fsspec cannot open it ({reason(exc)})") from exc


def is_connection_failure(exc: BaseException | None) -> bool:
    """True when `exc` says a server could not be reached (refused, timed out, cut off)."""
    if exc is None or isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, OSError):
        return True
    try:
        from aiohttp import ClientConnectionError
    except ImportError:
        return False
    return isinstance(exc, ClientConnectionError)


def unreachable(flag: str, location: str, exc: BaseException) -> StorageError:
    """The StorageError of a remote `location` whose server failed with `exc`."""
    if isinstance(exc, PermissionError):
        what = "access refused"
    else:
        what = "cannot reach it" if is_connection_failure(exc) else "cannot read it"
    return StorageError(f"{flag} {location}: {what} ({reason(exc)})")


def reason(exc: BaseException) -> str:
    """`exc` as one short line, its type named, credentials redacted."""
    return redact(f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300])


def endpoint(fs: Any) -> str:
    """The endpoint an S3 filesystem talks to (AWS when none is configured)."""
    return getattr(fs, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def botocore_failure(chain: list[BaseException | None]) -> str | None:
    """What went wrong with S3 in the exception `chain` (an error, its cause and context), or
    None when botocore (the `s3` extra) raised none of it or is not installed."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        return None
    exc = chain[0]
    if any(isinstance(e, NoCredentialsError) for e in chain):
        return "no credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws)"
    if isinstance(exc, PermissionError) and any(isinstance(e, ClientError) for e in chain):
        return f"access refused: check the credentials ({exc})"
    if isinstance(exc, BotoCoreError):
        return f"cannot reach object storage ({exc}); rerun with --resume once it is back"
    return None


def storage_failure(exc: BaseException, remote: bool = False) -> str | None:
    """What went wrong with object storage in `exc`, or None when it is not a storage error.

    With `remote`, any OSError counts: raised on a worker, it arrives without its botocore
    cause, and the job's data lives in object storage.
    """
    problem = botocore_failure([exc, exc.__cause__, exc.__context__])
    if problem is None and remote and isinstance(exc, OSError):
        return f"object storage failed ({exc}); rerun with --resume once it is back"
    return problem


@contextlib.contextmanager
def storage_errors(what: str = "object storage", locations: tuple[Any, ...] = ()
                   ) -> Iterator[None]:
    """Turn botocore/s3fs failures into one StorageError line naming `what`, secrets redacted.

    When any of `locations` is on a server (s3://, http://, gs://…), every OSError of the job
    is taken for a storage one.
    """
    use_storage_defaults()
    try:
        yield
    except MnistDistError:
        raise
    except Exception as exc:
        problem = storage_failure(exc, remote=any(is_remote(str(loc or "")) for loc in locations))
        if problem is None:
            raise
        raise StorageError(redact(f"{what}: {problem}")) from exc
