"""Object storage (S3): options, credentials, checks and errors for stores, models, predictions.

Credentials and the endpoint come from where botocore looks for them, on the client and on
each worker alike: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (`AWS_SESSION_TOKEN`),
`AWS_ENDPOINT_URL`, `AWS_PROFILE` and `~/.aws`. Anything else for `s3fs.S3FileSystem` (an
endpoint, timeouts, addressing style) is `--storage-options JSON`: applied through fsspec's
config here and, by a worker plugin, on every worker. Credentials are refused there, so no
secret travels in task arguments or lands in reports, logs or error messages.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec

from mnist_dist.errors import MnistDistError, StorageError

PROTOCOL = "s3"
# s3fs/botocore keywords that carry a secret; they belong in the environment or ~/.aws.
CREDENTIAL_KEYS = frozenset({
    "key", "secret", "token", "password", "anon_key",
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
})
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
def credential_keys(options: Mapping[str, Any]) -> list[str]:
    """Keys of `options`, at any depth, that would carry a credential."""
    found = []
    for key, value in options.items():
        if key.lower() in CREDENTIAL_KEYS:
            found.append(key)
        if isinstance(value, Mapping):
            found += credential_keys(value)
    return found


def parse_storage_options(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of `s3fs.S3FileSystem` keywords without credentials."""
    import argparse

    try:
        options = json.loads(text)
    except json.JSONDecodeError:
        options = None
    if not isinstance(options, dict):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"endpoint_url\": \"http://127.0.0.1:8333\"}}'; "
            f"got {text!r} instead")
    if credential_keys(options):
        raise argparse.ArgumentTypeError(
            f"must not hold credentials ({', '.join(credential_keys(options))}); set "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws instead; got a JSON object "
            "with them instead")
    return options


def apply_storage_options(options: Mapping[str, Any]) -> None:
    """Make `options` the defaults of every S3 filesystem this process opens from now on."""
    fsspec.config.conf.setdefault(PROTOCOL, {}).update(options)


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


def check_buckets(locations: Mapping[str, str]) -> None:
    """StorageError naming the flag unless each S3 location's bucket is reachable and exists.

    `locations` maps a flag (`--store`) to its location; non-S3 ones are skipped.
    """
    for flag, location in locations.items():
        if not is_s3(location):
            continue
        bucket = location.split("://", 1)[1].split("/", 1)[0]
        with storage_errors(f"{flag} {location}"):
            fs, _ = fsspec.core.url_to_fs(location)
            try:
                fs.info(bucket)
            except FileNotFoundError as exc:
                raise StorageError(f"{flag} {location}: bucket {bucket!r} does not exist "
                                   f"at {endpoint(fs)}; create it first") from exc


def endpoint(fs: Any) -> str:
    """The endpoint an S3 filesystem talks to (AWS when none is configured)."""
    return getattr(fs, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or "AWS"


def storage_failure(exc: BaseException, remote: bool = False) -> str | None:
    """What went wrong with object storage in `exc`, or None when it is not a storage error.

    With `remote`, any OSError counts: raised on a worker, it arrives without its botocore
    cause, and the job's data lives in object storage.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    chain = [exc, exc.__cause__, exc.__context__]
    if any(isinstance(e, NoCredentialsError) for e in chain):
        return "no credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws)"
    if isinstance(exc, PermissionError) and any(isinstance(e, ClientError) for e in chain):
        return f"access refused: check the credentials ({exc})"
    if isinstance(exc, BotoCoreError):
        return f"cannot reach object storage ({exc}); rerun with --resume once it is back"
    if remote and isinstance(exc, OSError):
        return f"object storage failed ({exc}); rerun with --resume once it is back"
    return None


@contextlib.contextmanager
def storage_errors(what: str = "object storage", locations: tuple[str, ...] = ()
                   ) -> Iterator[None]:
    """Turn botocore/s3fs failures into one StorageError line naming `what`, secrets redacted.

    When any of `locations` is on S3, every OSError of the job is taken for a storage one.
    """
    try:
        yield
    except MnistDistError:
        raise
    except Exception as exc:
        problem = storage_failure(exc, remote=any(map(is_s3, locations)))
        if problem is None:
            raise
        raise StorageError(redact(f"{what}: {problem}")) from exc


