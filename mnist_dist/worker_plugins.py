"""The project's Dask worker plugins, installed on every worker present and future: workers
that stay silent on Ctrl-C (the job handles it), do not log failures the client reports as one
line, use the client's object-storage options, and (during a score job) load its models as
they join."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
from distributed import Client, WorkerPlugin

from mnist_dist.errors import DISK_FULL, REFUSED, MnistDistError
from mnist_dist.models.artifacts import ModelRef
from mnist_dist.models.cache import ModelPayload, load_predictors
from mnist_dist.storage_options import (
    PROTOCOL,
    apply_storage_options,
    uploads_without_expect_continue,
    without_secrets,
)

log = logging.getLogger(__name__)


class IgnoreInterrupts(WorkerPlugin):
    """A LocalCluster's worker processes do not stop on SIGINT: Ctrl-C reaches the whole
    process group, and the job (not each worker, with a traceback) handles it and closes the
    cluster; until then the worker only falls silent."""

    name = "mnist-dist-ignore-interrupts"

    def setup(self, worker: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda *_: silence_logs())


def silence_logs() -> None:
    """No more log records from this process: it is being torn down after an interrupt."""
    logging.disable(logging.CRITICAL)


class QuietProjectErrors(WorkerPlugin):
    """Workers do not log a task's mnist-dist error or refused file operation ("Compute
    Failed"), nor the tasks the client then cancels: the client reports the failure as one
    error line. Other failures are logged as before."""

    name = "mnist-dist-quiet-project-errors"

    def setup(self, worker: Any) -> None:
        logging.getLogger("distributed.worker").addFilter(project_error_filter)
        logging.getLogger("distributed.worker.state_machine").addFilter(cancelled_task_filter)


# How a worker's log record shows an OSError: its class name, errno and message.
OS_ERROR_TEXT = re.compile(r"\b\w*Error\((\d+), ")


def project_error_filter(record: logging.LogRecord) -> bool:
    """False for a worker's "Compute Failed" record of an mnist-dist error, of object storage
    failing (a timeout, a refusal: the client names it) or of a file operation the system
    refused (a full disk, say)."""
    if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple):
        return True
    text = " ".join(str(arg) for arg in record.args)
    if any(f"{name}(" in text for name in project_error_names() | storage_error_names()):
        return False
    return not any(int(code) in DISK_FULL | REFUSED for code in OS_ERROR_TEXT.findall(text))


def cancelled_task_filter(record: logging.LogRecord) -> bool:
    """False for a worker's warning about a task the client cancelled after a failure."""
    return not (str(record.msg).startswith("Async instruction for")
                and "cancelled" in record.getMessage())


def storage_error_names() -> set[str]:
    """Names of botocore's errors (timeouts, refused requests) and of fsspec's timeout."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # no s3fs here: no object storage either
        return set()
    return {"FSTimeoutError"} | project_error_names(BotoCoreError) | project_error_names(ClientError)


def project_error_names(cls: type[BaseException] = MnistDistError) -> set[str]:
    """Names of `cls` and every subclass of it."""
    return {cls.__name__}.union(*(project_error_names(sub) for sub in cls.__subclasses__()))


def quiet_project_errors(client: Client) -> None:
    """Install QuietProjectErrors on every worker, present and future."""
    client.register_plugin(QuietProjectErrors(), name=QuietProjectErrors.name)


STORAGE_PLUGIN = "mnist-dist-storage-options"


class StorageOptionsPlugin(WorkerPlugin):
    """Applies the client's storage options on each worker, including workers started later."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)

    def setup(self, worker: Any) -> None:
        apply_storage_options(self.options)
        uploads_without_expect_continue()


def share_storage_options(client: Client) -> None:
    """Send this process's S3 options (never credentials) to every worker, present and future."""
    # Without secrets: fsspec's own config files and FSSPEC_S3_* variables may hold some.
    options = without_secrets(fsspec.config.conf.get(PROTOCOL, {}))
    if options:
        client.register_plugin(StorageOptionsPlugin(options), name=STORAGE_PLUGIN)


class ModelLoader(WorkerPlugin):
    """Loads a job's predictors on each worker as it joins, in a background thread: a worker
    added while the job runs starts loading before any task reaches it (a task that arrives
    meanwhile waits for that load). A failure here is only kept (`error`): the task's own load
    raises it as the job's error."""

    name = "mnist-dist-model-loader"

    def __init__(self, ref: ModelRef, ort_threads: int, payload: ModelPayload | None) -> None:
        self.ref, self.ort_threads, self.payload = ref, ort_threads, payload
        self.error: str | None = None
        self.thread: threading.Thread | None = None

    def setup(self, worker: Any) -> None:
        # A thread: loading takes seconds and would stall the worker's event loop (heartbeats).
        self.thread = threading.Thread(target=self.load, name=self.name, daemon=True)
        self.thread.start()

    def load(self) -> None:
        """Load the predictors into the process's cache; a failure is kept, not raised."""
        try:
            load_predictors(self.ref, self.ort_threads, self.payload)
        except Exception as exc:  # noqa: BLE001 - the first task raises it, typed
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("models not loaded as the worker joined (%s); its first task loads them",
                      self.error)


@contextlib.contextmanager
def models_loaded_on_join(client: Client, ref: ModelRef, ort_threads: int,
                          payload: ModelPayload | None) -> Iterator[None]:
    """Inside the block, every worker that joins loads the predictors of `ref` as it joins
    (from `payload` when the models were shipped); afterwards no worker does."""
    client.register_plugin(ModelLoader(ref, ort_threads, payload), name=ModelLoader.name)
    try:
        yield
    finally:
        forget_model_loader(client)


def forget_model_loader(client: Client) -> None:
    """Unregister ModelLoader, unless the client lost its scheduler (the call would only wait
    for a connection timeout)."""
    if client.status != "running":
        return
    try:
        client.unregister_worker_plugin(ModelLoader.name)
    except Exception as exc:  # noqa: BLE001 - cleanup never hides the job's own outcome
        log.debug("could not unregister %s: %r", ModelLoader.name, exc)
