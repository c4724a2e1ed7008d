"""Object-storage options: what `--storage-options JSON` may hold (checked against what s3fs
and botocore take; secrets refused at any depth, so none travels in task arguments or lands in
reports, logs or error messages), the project's bounded timeouts and retries (the `storage`
settings), and applying both through fsspec's configuration (on each worker by a plugin).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import fsspec

from mnist_dist.errors import SpecError
from mnist_dist.settings import setting

PROTOCOL = "s3"
# Option names that carry a secret, compared in lower case without `_` and `-`: whole names
# (s3fs's key and its alias username) and parts (aws_secret_access_key, aws_session_token,
# SSECustomerKey and x-amz-server-side-encryption-customer-key, passwords, API keys).
SECRET_NAMES = frozenset({"key", "anonkey", "username"})
SECRET_PARTS = ("secret", "password", "passwd", "token", "credential", "accesskey",
                "customerkey", "privatekey", "apikey")
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")
MAX_SHOWN = 60  # characters of a refused option value shown in an error message
MAX_TEXT_SHOWN = 200  # characters of a refused --storage-options shown
MAX_DEPTH = 16  # s3fs options nest 3 or 4 deep (config_kwargs.retries.max_attempts)

Kind = tuple[str, Callable[[Any], bool]]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_endpoint(value: Any) -> bool:
    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:  # e.g. an unclosed [IPv6 address
        return False
    return parts is not None and parts.scheme in ("http", "https") and bool(parts.netloc)


FLAG: Kind = ("true or false", lambda v: isinstance(v, bool))
TEXT: Kind = ("a string", lambda v: isinstance(v, str))
OBJECT: Kind = ("a JSON object", lambda v: isinstance(v, dict))
COUNT: Kind = ("an integer from 1 to 2**31 - 1",
               lambda v: _is_number(v) and isinstance(v, int) and 0 < v < 2**31)
SECONDS: Kind = ("a number of seconds > 0 and <= 86400", lambda v: _is_number(v) and 0 < v <= 86400)
ENDPOINT: Kind = ("an http:// or https:// URL", _is_endpoint)
KIND_OF_DEFAULT: dict[type, Kind] = {bool: FLAG, int: COUNT, str: TEXT}
# s3fs options whose default (None) tells no type, and those s3fs passes on to fsspec's
# listings cache and aiobotocore's session.
S3FS_KINDS: dict[str, Kind] = {
    "endpoint_url": ENDPOINT, "client_kwargs": OBJECT, "config_kwargs": OBJECT,
    "s3_additional_kwargs": OBJECT, "default_block_size": COUNT,
    "use_listings_cache": FLAG, "listings_expiry_time": SECONDS, "max_paths": COUNT,
    "skip_instance_cache": FLAG, "profile": TEXT, "session_vars": OBJECT,
    "include_builtin_handlers": FLAG,
}
NOT_SETTABLE = frozenset({"session", "loop", "asynchronous", "event_hooks"})  # Python objects
CONFIG_KINDS: dict[str, Kind] = {  # botocore.config.Config's options (botocore checks few)
    "connect_timeout": SECONDS, "read_timeout": SECONDS, "max_pool_connections": COUNT,
    "request_min_compression_size_bytes": COUNT, "region_name": TEXT, "signature_version": TEXT,
    "user_agent": TEXT, "user_agent_extra": TEXT, "user_agent_appid": TEXT,
    "defaults_mode": TEXT, "parameter_validation": FLAG, "tcp_keepalive": FLAG,
    "inject_host_prefix": FLAG, "use_dualstack_endpoint": FLAG, "use_fips_endpoint": FLAG,
    "ignore_configured_endpoint_urls": FLAG, "disable_request_compression": FLAG,
    "proxies": OBJECT, "proxies_config": OBJECT, "s3": OBJECT, "retries": OBJECT,
    "client_context_params": OBJECT, "connector_args": OBJECT, "warm_up_loader_caches": FLAG,
}
CLIENT_KINDS: dict[str, Kind] = {"region_name": TEXT, "api_version": TEXT, "use_ssl": FLAG,
                                 "endpoint_url": ENDPOINT, "aws_account_id": TEXT}


def is_secret_name(name: object) -> bool:
    """True for an option name that carries a secret (case, `_` and `-` ignored)."""
    plain = re.sub(r"[^a-z0-9]", "", str(name).lower())
    return plain in SECRET_NAMES or any(part in plain for part in SECRET_PARTS)


def has_password(text: str) -> bool:
    """True for a URL with a password in it (`http://user:password@proxy:3128`)."""
    try:
        return "@" in text and bool(urlsplit(text.strip()).password)
    except ValueError:  # not a URL urllib can split, e.g. an unclosed [IPv6 address
        return False


def credential_keys(options: Any, where: str = "") -> list[str]:
    """Where `options` holds a secret, at any depth of objects and lists: the path of each key
    named like one (`s3_additional_kwargs.SSECustomerKey`, `client_kwargs.x[0].token`) and of
    each URL with a password. Names only: the values are never shown."""
    if isinstance(options, Mapping):
        found = []
        for key, value in options.items():
            path = f"{where}.{key}" if where else str(key)
            found += [path] if is_secret_name(key) else credential_keys(value, path)
        return found
    if isinstance(options, list | tuple):
        return [path for i, value in enumerate(options)
                for path in credential_keys(value, f"{where}[{i}]")]
    return [where or "the value"] if isinstance(options, str) and has_password(options) else []


def without_secrets(options: Any) -> Any:
    """A copy of `options` without what `credential_keys` finds: the options fit to send to
    workers (credentials reach them from their own environment)."""
    if isinstance(options, Mapping):
        return {key: without_secrets(value) for key, value in options.items()
                if not is_secret_name(key)}
    if isinstance(options, list | tuple):
        return [without_secrets(value) for value in options
                if not (isinstance(value, str) and has_password(value))]
    return options


def too_deep(options: Any) -> bool:
    """True when objects and lists in `options` nest deeper than MAX_DEPTH."""
    pending = [(options, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_DEPTH:
                return True
            items = value.values() if isinstance(value, Mapping) else value
            pending += [(item, depth + 1) for item in items]
    return False


def shown(value: Any) -> str:
    """`value` as JSON for a message, cut to MAX_SHOWN characters."""
    text = json.dumps(value, default=repr)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}…"


def kinds_problem(options: Mapping[str, Any], kinds: Mapping[str, Kind | None],
                  where: str = "") -> str | None:
    """The first option of `options` not in `kinds` or not of its kind, named, or None."""
    for name, value in options.items():
        path = f"{where}{name}"
        if name not in kinds:
            return f"unknown option {path!r} (known: {', '.join(sorted(kinds))})"
        kind = kinds[name]
        if kind is not None and not kind[1](value):
            return f"{path} expects {kind[0]}, not {shown(value)}"
    return None


def s3fs_kinds() -> dict[str, Kind | None] | None:
    """Every option `s3fs.S3FileSystem` takes, with its kind where known; None without s3fs."""
    try:
        import s3fs
    except ImportError:
        return None
    parameters = inspect.signature(s3fs.S3FileSystem.__init__).parameters.values()
    kinds: dict[str, Kind | None] = {
        p.name: KIND_OF_DEFAULT.get(type(p.default)) for p in parameters
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
        and p.name not in NOT_SETTABLE and not is_secret_name(p.name)}
    return {**kinds, **S3FS_KINDS}


def config_problem(config: Mapping[str, Any]) -> str | None:
    """What is wrong with `config_kwargs` (botocore's Config), naming the option, or None."""
    from aiobotocore.config import AioConfig
    from botocore.config import Config

    kinds: dict[str, Kind | None] = dict.fromkeys(Config.OPTION_DEFAULTS)
    problem = kinds_problem(config, {**kinds, **CONFIG_KINDS}, "config_kwargs.")
    if problem is None:
        try:
            AioConfig(**config)
        except Exception as exc:  # noqa: BLE001 - botocore's checks raise several types
            return f"config_kwargs: {' '.join(str(exc).split())}"
    return problem


def storage_options_problem(options: Mapping[str, Any]) -> str | None:
    """What is wrong with `options` as `s3fs.S3FileSystem` keywords (the first problem, naming
    the option; secrets aside: see `credential_keys`), or None. Unchecked without s3fs."""
    kinds = s3fs_kinds() if options else None
    if kinds is None:
        return None
    for name in options:
        if name in NOT_SETTABLE:
            return f"{name} takes a Python object and cannot be set here"
    return (kinds_problem(options, kinds)
            or kinds_problem(options.get("client_kwargs") or {}, CLIENT_KINDS, "client_kwargs.")
            or config_problem(options.get("config_kwargs") or {}))


def credentials_refused(secrets: list[str]) -> str:
    """Why options holding `secrets` (their paths) are refused; the values never shown."""
    named = ", ".join(map(repr, secrets))
    return (f"must not hold credentials or other secrets ({named}): options travel to every "
            "worker; give credentials through the environment "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, HTTPS_PROXY) or ~/.aws instead")


def parse_storage_options(text: str) -> dict[str, Any]:
    """argparse type: a JSON object of `s3fs.S3FileSystem` keywords without secrets."""
    import argparse

    quoted = repr(text if len(text) <= MAX_TEXT_SHOWN else f"{text[:MAX_TEXT_SHOWN]}…")
    try:
        options = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        options = None
    if not isinstance(options, dict) or too_deep(options):
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"endpoint_url\": \"http://127.0.0.1:8333\"}}'"
            f" nested at most {MAX_DEPTH} deep; got {quoted} instead")
    secrets = credential_keys(options)
    if secrets:
        raise argparse.ArgumentTypeError(
            f"{credentials_refused(secrets)}; got a JSON object with them instead")
    problem = storage_options_problem(options)
    if problem:
        raise argparse.ArgumentTypeError(
            f"must be s3fs.S3FileSystem options: {problem}; got {quoted} instead")
    return options


def apply_storage_options(options: Mapping[str, Any]) -> None:
    """Make `options` the defaults of every S3 filesystem this process opens from now on;
    SpecError naming the option when one is a secret or not what s3fs takes."""
    if too_deep(options):
        raise SpecError(f"storage options must nest at most {MAX_DEPTH} deep")
    secrets = credential_keys(options)
    problem = credentials_refused(secrets) if secrets else storage_options_problem(options)
    if problem:
        raise SpecError(f"storage options {problem}" if secrets else
                        f"storage options: {problem}")
    fsspec.config.conf.setdefault(PROTOCOL, {}).update(options)


def storage_defaults() -> dict[str, Any]:
    """The S3 options of the `storage` settings: bounded timeouts and retries."""
    return {"config_kwargs": {
        "connect_timeout": float(setting("storage.connect-timeout")),
        "read_timeout": float(setting("storage.read-timeout")),
        "retries": {"max_attempts": int(setting("storage.attempts")), "mode": "standard"},
    }}


def use_storage_defaults() -> None:
    """Add `storage_defaults` to this process's S3 options where these name none (the user's
    `--storage-options` and fsspec configuration win), and make uploads time out."""
    merge_missing(fsspec.config.conf.setdefault(PROTOCOL, {}), storage_defaults())
    uploads_without_expect_continue()


def uploads_without_expect_continue() -> None:
    """S3 sessions made from now on in this process send no `Expect: 100-continue` (botocore
    adds it to every upload): under aiohttp the wait for `100 Continue` has no timeout, so a
    server that stops answering would hang an upload forever, not for a read timeout."""
    try:
        from botocore import handlers
    except ImportError:  # no s3fs here: no object storage either
        return
    hook = ("before-call.s3", drop_expect_header, handlers.REGISTER_LAST)
    if hook not in handlers.BUILTIN_HANDLERS:
        handlers.BUILTIN_HANDLERS.append(hook)


def drop_expect_header(params: dict[str, Any], **kwargs: Any) -> None:
    """Botocore's `before-call` hook: the request goes without `Expect: 100-continue`."""
    params.get("headers", {}).pop("Expect", None)


def merge_missing(target: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Copy into `target` each entry of `defaults` it lacks, at any depth."""
    for key, value in defaults.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_missing(target[key], value)
        elif key not in target:
            target[key] = dict(value) if isinstance(value, Mapping) else value
