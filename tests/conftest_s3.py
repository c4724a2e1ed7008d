"""Fixtures for object storage: a real SeaweedFS S3 server on 127.0.0.1 (deploy/local/start-s3.sh)
and the small store and models uploaded to it (deploy/local/upload-s3.sh)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LOCAL = REPO / "deploy/local"
BIN = Path(sys.executable).parent


@dataclass
class S3Server:
    """A SeaweedFS server started by deploy/local/start-s3.sh; `stop()`/`start()` keep its data."""

    state: Path
    env: dict[str, str]
    endpoint: str = ""

    def start(self) -> str:
        done = subprocess.run([str(LOCAL / "start-s3.sh"), str(self.state)], env=self.env,
                              capture_output=True, text=True, timeout=90, check=False)
        assert done.returncode == 0, done.stderr + (self.state / "weed.log").read_text()[-2000:]
        self.endpoint = done.stdout.strip()
        return self.endpoint

    def stop(self) -> None:
        subprocess.run([str(LOCAL / "stop-s3.sh"), str(self.state)], check=True, timeout=30)

    def upload(self, local: Path, url: str) -> str:
        """Copy the folder `local` to `url` with deploy/local/upload-s3.sh; returns `url`."""
        subprocess.run([str(LOCAL / "upload-s3.sh"), str(local), url], env=self.env,
                       check=True, timeout=120)
        return url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server for the session; this process's AWS_* variables point at it."""
    credentials = {"AWS_ACCESS_KEY_ID": "mnist-" + secrets.token_hex(4),
                   "AWS_SECRET_ACCESS_KEY": "secret-" + secrets.token_hex(16),
                   "AWS_DEFAULT_REGION": "us-east-1"}
    env = {**os.environ, **credentials, "PYTHON": sys.executable,
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = S3Server(tmp_path_factory.mktemp("seaweedfs"), env)
    with pytest.MonkeyPatch.context() as patch:
        try:
            endpoint = server.start()
            for name, value in {**credentials, "AWS_ENDPOINT_URL": endpoint}.items():
                patch.setenv(name, value)
                server.env[name] = value
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def s3_inputs(s3_server: S3Server, small_store: Path, small_models: Path) -> tuple[str, str]:
    """(store URL, models URL): the small store and models in bucket `mnist`."""
    import s3fs

    s3fs.S3FileSystem().mkdir("mnist")
    return (s3_server.upload(small_store, "s3://mnist/small.zarr"),
            s3_server.upload(small_models, "s3://mnist/models"))
