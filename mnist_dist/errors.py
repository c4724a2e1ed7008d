"""Exception hierarchy of mnist-dist; each extends the builtin it refines.

Jobs map these to exit codes (see `EXIT_CODES`) and print the message as one line.
"""

from __future__ import annotations


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
}


def exit_code_for(error: MnistDistError) -> int:
    """Exit code for an mnist-dist error: the most specific match, else 1.

    2 is argparse's (and `cli.USAGE_EXIT`'s): a flag value refused before any work started.
    """
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
