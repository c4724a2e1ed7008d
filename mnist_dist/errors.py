"""Exception hierarchy of mnist-dist; each extends the builtin it refines.

Jobs map these to exit codes (see `EXIT_CODES`) and print the message as one line.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator


class MnistDistError(Exception):
    """Base class of every error mnist-dist raises on purpose."""


class DataError(MnistDistError, ValueError):
    """Input data is malformed: the message names the file/chunk/field and what is wrong."""


class ChecksumError(DataError):
    """A data file's SHA-256 does not match the expected value."""


class StoreNotFoundError(MnistDistError, FileNotFoundError):
    """The Zarr store (or one of its arrays) does not exist."""


class StoreExistsError(MnistDistError, FileExistsError):
    """An output already exists and would be overwritten."""


class ModelNotFoundError(MnistDistError, FileNotFoundError):
    """A model directory, manifest or artifact is missing."""


class ArtifactChecksumError(MnistDistError, ValueError):
    """A model artifact's SHA-256 does not match its manifest."""


class ModelValidationError(MnistDistError, ValueError):
    """A trained/exported model failed a correctness check (e.g. ONNX vs Keras)."""


class ClusterError(MnistDistError, ConnectionError):
    """The Dask cluster cannot be reached or cannot run the job."""


class DiskSpaceError(MnistDistError, OSError):
    """The target disk lacks the space for the requested output."""


class ReportError(MnistDistError, ValueError):
    """A run's report.json is missing, unreadable or not a valid mnist-dist report."""


class ImageInputError(MnistDistError, ValueError):
    """An image file cannot be scored: unreadable, corrupt, blank, animated or too large."""


class SpecError(MnistDistError, ValueError):
    """A job's settings are invalid or contradict each other: the message names the setting."""


class ModelFormatError(MnistDistError, ValueError):
    """A model manifest or artifact exists but is malformed (bad JSON, wrong fields or shapes)."""


class StorageError(MnistDistError, OSError):
    """Object storage cannot be reached, refuses the credentials, or lacks the bucket."""


class PartitionsFailedError(MnistDistError):
    """Some partitions of a `--keep-going` run could not be read or scored; the report covers
    the others and names each failed one with its cause (`--resume` retries them)."""


class FileSystemError(MnistDistError, OSError):
    """A file or folder cannot be read or written: permission, a read-only file system, a file
    where a folder should be, or another refusal of the operating system."""


EXIT_CODES: dict[type[MnistDistError], int] = {
    DataError: 3,
    StoreNotFoundError: 4,
    StoreExistsError: 5,
    ModelNotFoundError: 6,
    ArtifactChecksumError: 7,
    ModelValidationError: 8,
    ClusterError: 9,
    DiskSpaceError: 10,
    ReportError: 11,
    ImageInputError: 12,
    SpecError: 13,
    ModelFormatError: 14,
    StorageError: 15,
    FileSystemError: 16,
    PartitionsFailedError: 17,
}


def exit_code_for(error: MnistDistError) -> int:
    """Exit code for an mnist-dist error: the most specific match, else 1.

    2 is argparse's (and `cli.USAGE_EXIT`'s): a flag value refused before any work started.
    """
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


# errno values that mean the disk (or the user's quota on it) is full.
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# errno values of a file operation the system refused: the user's to fix, not a bug.
REFUSED = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                     errno.ENOENT, errno.ELOOP, errno.ENAMETOOLONG, errno.EEXIST,
                     errno.ENOTEMPTY, errno.EXDEV, errno.EIO, errno.EMFILE, errno.ENFILE})

REFUSED_HINT = "expected a file or folder this job may read or write"


def from_os_error(error: OSError, where: str | None = None, then: str | None = None
                  ) -> MnistDistError | None:
    """What a failed file operation means for the user: DiskSpaceError for a full disk,
    FileSystemError for another refusal, naming the path (or `where` when the error has none)
    and what to do (`then`); None for an OSError that is no file operation's (a lost
    connection, a timeout)."""
    if isinstance(error, ConnectionError | TimeoutError) or \
            error.errno not in DISK_FULL | REFUSED:
        return None
    paths = [str(name) for name in (error.filename, error.filename2) if name is not None]
    place = " -> ".join(paths) or where
    reason = error.strerror or " ".join(str(error).split()) or type(error).__name__
    text = f"{place}: {reason}" if place else reason
    if error.errno in DISK_FULL:
        return DiskSpaceError(f"not enough disk space ({text}); "
                              f"{then or 'free some and run the job again'}")
    return FileSystemError(f"{text}; {then or REFUSED_HINT}")


@contextlib.contextmanager
def file_faults(where: str, then: str | None = None) -> Iterator[None]:
    """A full disk or a refused file operation inside as DiskSpaceError or FileSystemError
    (see `from_os_error`); the project's own errors, and other OSErrors, unchanged."""
    try:
        yield
    except MnistDistError:
        raise
    except OSError as exc:
        error = from_os_error(exc, where, then)
        if error is None:
            raise
        raise error from exc