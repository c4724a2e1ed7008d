"""Store and model URLs of any scheme, and `--storage-options` values: each failure is one
`error:` line with a documented exit code, never a traceback, and no secret of the options
travels to a worker or lands in a run's files or messages."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import fsspec
import pytest

import mnist_dist as md
from jobs import prepare as prepare_job
from jobs import score as score_job
from mnist_dist.cli import arguments as cli
from mnist_dist.errors import EXIT_CODES, SpecError, StorageError
from mnist_dist.locations import is_remote, scheme_problem, url_protocols
from mnist_dist.storage import storage_errors
from mnist_dist.storage_options import (
    apply_storage_options,
    credential_keys,
    parse_storage_options,
    without_secrets,
)

USAGE_EXIT = cli.USAGE_EXIT
STORAGE_EXIT = EXIT_CODES[StorageError]
SPEC_EXIT = EXIT_CODES[SpecError]
# Nothing listens on the discard port.
UNREACHABLE = ("http://127.0.0.1:9/mnist.zarr", "https://127.0.0.1:9/mnist.zarr",
               "ftp://127.0.0.1:9/mnist.zarr", "simplecache::http://127.0.0.1:9/mnist.zarr")
PLANTED = "planted-secret-7d1f0c"


def outcome(main: Callable[[list[str]], int], argv: list[str],
            capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, the one `error:` line, everything printed) of a job run in this process."""
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    printed = capsys.readouterr()
    everything = printed.out + printed.err
    errors = [line for line in printed.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in everything, everything[-3000:]
    return code, errors[0], everything


def score(capsys: pytest.CaptureFixture[str], tmp_path: Path, *flags: str
          ) -> tuple[int, str, str]:
    """`python -m jobs.score --models /nonexistent FLAGS` in this process."""
    return outcome(score_job.main, ["--models", "/nonexistent", "--out",
                                    str(tmp_path / "run"), *flags], capsys)


@pytest.fixture
def fsspec_conf(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """fsspec's configuration, empty, and restored after the test."""
    conf: dict[str, Any] = {}
    monkeypatch.setattr(fsspec.config, "conf", conf)
    return conf


# ------------------------------------------------------------------ schemes and back ends


@pytest.mark.skipif(find_spec("gcsfs") is not None, reason="gcsfs is installed here")
@pytest.mark.parametrize("flag", ["--store", "--models", "--predictions"])
def test_a_url_whose_back_end_is_not_installed_is_a_refused_flag(
    flag: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    flags = [flag, "gs://bucket/mnist.zarr"] + (["--models", "/nonexistent"]
                                                 if flag != "--models" else [])
    code, line, _ = outcome(score_job.main, [*flags, "--out", str(tmp_path / "run")], capsys)
    assert code == USAGE_EXIT and line.startswith(f"error: {flag} "), line
    assert "gs://" in line and "pip install gcsfs" in line, line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("url", ["bogus://bucket/mnist.zarr", "S3://bucket/mnist.zarr",
                                 "://mnist.zarr", "simplecache::nowhere://b/mnist.zarr"])
def test_a_url_of_an_unknown_scheme_is_a_refused_flag_naming_the_known_ones(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line, _ = score(capsys, tmp_path, "--store", url)
    assert code == USAGE_EXIT and line.startswith("error: --store "), line
    assert "unknown URL scheme" in line and "s3" in line and "memory" in line, line
    if url.startswith("S3"):
        assert "did you mean s3://" in line


def test_flags_of_local_paths_refuse_urls_and_take_file_urls() -> None:
    for url in ("s3://bucket/run", "http://127.0.0.1:9/run", "gs://bucket/run"):
        with pytest.raises(argparse.ArgumentTypeError, match="local path"):
            cli.path_arg(url)
    assert cli.path_arg("file:///tmp/run") == Path("/tmp/run")
    with pytest.raises(argparse.ArgumentTypeError):
        cli.path_arg("file://")


def test_an_out_url_is_refused_not_taken_for_a_local_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, line, _ = outcome(score_job.main, ["--models", "/nonexistent", "--out",
                                             "s3://bucket/run"], capsys)
    assert code == USAGE_EXIT and line.startswith("error: --out must be a local path"), line
    assert not (tmp_path / "s3:").exists()


def test_scheduler_addresses_and_openable_urls_pass_the_scheme_check() -> None:
    for text in ("tcp://127.0.0.1:8786", "tls://10.0.0.1:8786", "inproc://x", "mnist.zarr",
                 "memory://m/mnist.zarr", "file:///tmp/mnist.zarr", "s3://b/mnist.zarr",
                 "http://127.0.0.1:9/m.zarr", "zip://m.zarr::/tmp/m.zip",
                 "simplecache::s3://b/m.zarr"):
        assert cli.non_empty(text) == text
    for text in ("bogus://x", "S3://b/k", "tcp::bogus://x"):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown URL scheme"):
            cli.non_empty(text)


def test_url_protocols_and_which_urls_are_remote() -> None:
    assert url_protocols("mnist.zarr") == [] and url_protocols("s3://b/k") == ["s3"]
    assert url_protocols("simplecache::s3://b/k") == ["simplecache", "s3"]
    assert url_protocols("zip://m.zarr::/tmp/m.zip") == ["zip"]
    remote = ["s3://b/k", "http://h/k", "gs://b/k", "simplecache::s3://b/k",
              "zip://m::http://h/m.zip"]
    local = ["memory://m/k", "file:///tmp/k", "/tmp/k", "zip://m::/tmp/m.zip"]
    assert [is_remote(u) for u in remote + local] == [True] * 5 + [False] * 4
    assert scheme_problem("memory://m/k") is None and scheme_problem("/a://b") is not None


# ------------------------------------------------------------------ servers that do not answer


@pytest.mark.parametrize("url", UNREACHABLE)
def test_an_unreachable_store_server_is_one_storage_line_naming_the_url(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line, _ = score(capsys, tmp_path, "--store", url)
    assert code == STORAGE_EXIT, line
    assert line.startswith(f"error: --store {url}: cannot reach it ("), line
    assert not (tmp_path / "run").exists()


def test_unreachable_models_and_predictions_servers_name_their_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = "http://127.0.0.1:9/models"
    code, line, _ = outcome(score_job.main, ["--models", url, "--out", str(tmp_path / "r")],
                            capsys)
    assert code == STORAGE_EXIT and line.startswith(f"error: --models {url}: cannot reach"), line
    url = "ftp://127.0.0.1:9/predictions.zarr"
    code, line, _ = score(capsys, tmp_path, "--predictions", url)
    assert code == STORAGE_EXIT and f"--predictions {url}: cannot reach" in line, line


def test_prepare_to_an_unreachable_server_is_one_storage_line(
    capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://127.0.0.1:9/mnist.zarr"
    code, line, _ = outcome(prepare_job.main, ["--store", url], capsys)
    assert code == STORAGE_EXIT and line.startswith(f"error: --store {url}: cannot reach"), line


@pytest.mark.parametrize(("store", "words"), [
    ("tcp://127.0.0.1:9/mnist.zarr", "unknown URL scheme"),  # a scheduler's scheme: no store
    ("reference://mnist.zarr", "fsspec cannot open it"),
    ("dir://mnist.zarr", "fsspec cannot open it"),
])
def test_a_url_fsspec_cannot_open_is_one_settings_line(
    store: str, words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line, _ = score(capsys, tmp_path, "--store", store)
    assert code == SPEC_EXIT and line.startswith(f"error: --store {store}: "), line
    assert words in line, line


@pytest.mark.skipif(find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_the_api_refuses_a_url_without_back_end_as_a_spec_error(tmp_path: Path) -> None:
    spec = md.ScoreSpec(store="gs://bucket/mnist.zarr", models="/nonexistent",
                        out=tmp_path / "run")
    with pytest.raises(SpecError, match=r"--store gs://bucket/mnist.zarr: .*pip install gcsfs"):
        md.score(spec)


def test_an_oserror_of_a_job_on_any_server_is_a_storage_failure() -> None:
    for url in ("http://h/mnist.zarr", "gs://b/mnist.zarr", "simplecache::s3://b/k"):
        with pytest.raises(StorageError, match="object storage failed"), \
                storage_errors(locations=(url, "", None)):
            raise ConnectionResetError("reset")
    with pytest.raises(ConnectionResetError), storage_errors(locations=("memory://m/k",)):
        raise ConnectionResetError("reset")


# ------------------------------------------------------------------ --storage-options


@pytest.mark.parametrize(("options", "words"), [
    ({"bogus_option": 1}, ["unknown option 'bogus_option'", "endpoint_url"]),
    ({"config_kwargs": {"connect_timeout": "abc"}},
     ["config_kwargs.connect_timeout expects a number", '"abc"']),
    ({"config_kwargs": {"read_timeout": -1}}, ["config_kwargs.read_timeout expects a number"]),
    ({"config_kwargs": {"bogus": 1}}, ["unknown option 'config_kwargs.bogus'"]),
    ({"config_kwargs": {"retries": {"mode": "sometimes"}}}, ["config_kwargs", "mode"]),
    ({"client_kwargs": {"bogus": 1}}, ["unknown option 'client_kwargs.bogus'", "region_name"]),
    ({"anon": "yes"}, ["anon expects true or false"]),
    ({"max_concurrency": 0}, ["max_concurrency expects an integer"]),
    ({"endpoint_url": "127.0.0.1:8333"}, ["endpoint_url expects an http:// or https:// URL"]),
    ({"session": {}}, ["session takes a Python object"]),
])
def test_storage_options_s3fs_would_refuse_are_a_refused_flag_naming_the_option(
    options: dict[str, Any], words: list[str], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    pytest.importorskip("s3fs")
    code, line, _ = score(capsys, tmp_path, "--storage-options", json.dumps(options))
    assert code == USAGE_EXIT and line.startswith("error: --storage-options "), line
    assert "cannot reach" not in line and all(word in line for word in words), line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text", ['{"a": ' + "[" * 600 + "]" * 600 + "}",
                                  '{"a": ' + "[" * 10**5 + "]" * 10**5 + "}"])
def test_storage_options_nested_absurdly_deep_are_a_refused_flag_of_one_short_line(
    text: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, line, _ = score(capsys, tmp_path, "--storage-options", text)
    assert code == USAGE_EXIT and "nested at most" in line and len(line) < 500, line


def test_the_api_refuses_the_storage_options_the_flag_refuses(
    fsspec_conf: dict[str, Any]
) -> None:
    pytest.importorskip("s3fs")
    accepted = {"endpoint_url": "http://127.0.0.1:8333", "anon": False,
                "client_kwargs": {"region_name": "eu-west-1"},
                "config_kwargs": {"connect_timeout": 5, "retries": {"max_attempts": 2},
                                  "s3": {"addressing_style": "path"}},
                "s3_additional_kwargs": {"ServerSideEncryption": "AES256"}}
    assert parse_storage_options(json.dumps(accepted)) == accepted
    for refused in ({"bogus_option": 1}, {"config_kwargs": {"connect_timeout": "abc"}},
                    {"s3_additional_kwargs": {"SSECustomerKey": PLANTED}}):
        with pytest.raises(SpecError, match="storage options") as caught:
            apply_storage_options(refused)
        assert PLANTED not in str(caught.value)
    assert fsspec_conf == {}
    apply_storage_options(accepted)
    assert fsspec_conf == {"s3": accepted}


# ------------------------------------------------------------------ secrets in the options


@pytest.mark.parametrize(("options", "where"), [
    ({"s3_additional_kwargs": {"SSECustomerKey": PLANTED}},
     ["s3_additional_kwargs.SSECustomerKey"]),
    ({"s3_additional_kwargs": {"CopySourceSSECustomerKey": PLANTED, "SSECustomerKeyMD5": "x"}},
     ["s3_additional_kwargs.CopySourceSSECustomerKey", "s3_additional_kwargs.SSECustomerKeyMD5"]),
    ({"s3_additional_kwargs": {"x-amz-server-side-encryption-customer-key": PLANTED}},
     ["s3_additional_kwargs.x-amz-server-side-encryption-customer-key"]),
    ({"client_kwargs": {"x": [{"aws_secret_access_key": PLANTED}]}},
     ["client_kwargs.x[0].aws_secret_access_key"]),
    ({"a": [[{"b": [{"Session_Token": PLANTED}]}]]}, ["a[0][0].b[0].Session_Token"]),
    ({"config_kwargs": {"proxies": {"https": f"http://user:{PLANTED}@proxy:3128"}}},
     ["config_kwargs.proxies.https"]),
    ({"username": PLANTED, "KEY": PLANTED, "db_password": PLANTED, "api_key": PLANTED,
      "private_key": PLANTED, "credentials": {"x": PLANTED}},
     ["username", "KEY", "db_password", "api_key", "private_key", "credentials"]),
])
def test_secrets_are_found_at_any_depth_of_objects_and_lists(
    options: dict[str, Any], where: list[str]
) -> None:
    assert credential_keys(options) == where


def test_options_without_secrets_are_not_taken_for_secrets() -> None:
    options = {"endpoint_url": "http://127.0.0.1:8333", "anon": True,
               "s3_additional_kwargs": {"ServerSideEncryption": "aws:kms",
                                        "SSEKMSKeyId": "arn:aws:kms:eu-west-1:1:key/abc"},
               "config_kwargs": {"proxies": {"https": "http://proxy:3128"}},
               "client_kwargs": {"region_name": "eu-west-1"}, "x": [1, "two", [None]]}
    assert credential_keys(options) == []
    # Found at any depth now, where only nested objects were searched before.
    assert credential_keys({"x": [{"secret": "s"}]}) == ["x[0].secret"]


@pytest.mark.parametrize("options", [
    {"s3_additional_kwargs": {"SSECustomerKey": PLANTED}},
    {"s3_additional_kwargs": {"sse_customer_key": PLANTED}},
    {"client_kwargs": {"x": [{"aws_secret_access_key": PLANTED}]}},
    {"config_kwargs": {"proxies": {"https": f"http://user:{PLANTED}@proxy:3128"}}},
])
def test_a_run_given_secrets_in_its_options_is_refused_and_writes_none_of_them(
    options: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, fsspec_conf: dict[str, Any],
) -> None:
    monkeypatch.chdir(tmp_path)
    code, line, printed = score(capsys, tmp_path, "--storage-options", json.dumps(options))
    assert code == USAGE_EXIT and line.startswith("error: --storage-options must not hold "
                                                  "credentials"), line
    assert PLANTED not in printed and fsspec_conf == {}
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and PLANTED.encode() in p.read_bytes()]
    assert leaks == [] and not (tmp_path / "run").exists()


def test_workers_get_the_options_without_the_secrets_fsspec_config_may_hold() -> None:
    options = {"anon": False, "key": "AKIA", "client_kwargs": {"region_name": "eu", "token": "t"},
               "config_kwargs": {"proxies": ["http://user:pw@proxy:3128", "http://proxy:1"]}}
    shared = without_secrets(options)
    assert shared == {"anon": False, "client_kwargs": {"region_name": "eu"},
                      "config_kwargs": {"proxies": ["http://proxy:1"]}}
    assert credential_keys(shared) == []
