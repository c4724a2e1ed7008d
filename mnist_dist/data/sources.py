"""MNIST sources: the vendored IDX files, a folder of IDX files, an `.npz`, or a download.

Every IDX file is verified against the SHA-256 of its uncompressed bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from mnist_dist.atomic import output_mode
from mnist_dist.errors import ChecksumError, DataError

log = logging.getLogger(__name__)

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
DEFAULT_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# What numpy raises for a corrupt, truncated, non-zip or pickled `.npz`.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
# What a failed or corrupt download raises (URLError is an OSError, ChecksumError a ValueError).
DOWNLOAD_ERRORS = (OSError, EOFError, ValueError, zlib.error, http.client.HTTPException)
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
N_PIXELS = 784


def vendored_dir() -> Path:
    """Folder inside the package holding the four gzip IDX files and their checksums."""
    return Path(str(resources.files("mnist_dist.data") / "mnist"))


def expected_checksums() -> dict[str, str]:
    """SHA-256 of each canonical uncompressed IDX file, keyed by file name."""
    sums = {}
    for line in (vendored_dir() / "SHA256SUMS.uncompressed").read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name] = digest
    return sums


@dataclass(frozen=True)
class RawMnist:
    """The four MNIST arrays, flattened: images uint8 (n, 784), labels uint8 (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    checksums: dict[str, str] = field(default_factory=dict)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data` as lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def read_idx_bytes(path: Path) -> bytes:
    """Uncompressed bytes of an IDX file (`.gz` or plain)."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from exc


def parse_idx(data: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse IDX bytes into uint8 images (n, 784) or labels (n,); errors name `path`."""
    if len(data) < 8:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[0:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong magic number {found}; expected {magic}")
    n_dims = data[3]
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims)]
    if magic == IMAGE_MAGIC and dims[1:] != [28, 28]:
        raise DataError(f"{path}: images must be 28x28; got {dims[1:]} instead")
    expected = int(np.prod(dims)) + header
    if len(data) != expected:
        raise DataError(
            f"{path}: truncated or oversized IDX data: {len(data)} bytes, expected {expected}"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header)
    return array.reshape(dims[0], N_PIXELS) if magic == IMAGE_MAGIC else array.copy()


def find_idx_file(folder: Path, name: str) -> Path:
    """The IDX file `name` in `folder`, gzip-compressed or not."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: missing IDX file {name}[.gz]")


def load_idx_folder(folder: Path, verify: bool = True) -> RawMnist:
    """Load the four IDX files from `folder`, verifying each against the canonical SHA-256."""
    sums = expected_checksums()
    arrays: dict[str, np.ndarray] = {}
    checksums: dict[str, str] = {}
    for key, name in IDX_NAMES.items():
        path = find_idx_file(folder, name)
        data = read_idx_bytes(path)
        digest = sha256_hex(data)
        if verify and digest != sums[name]:
            raise ChecksumError(
                f"{path}: SHA-256 of uncompressed content is {digest}; expected {sums[name]}"
            )
        magic = IMAGE_MAGIC if key.endswith("images") else LABEL_MAGIC
        arrays[key] = parse_idx(data, path, magic)
        checksums[name] = digest
    for split in ("train", "test"):
        check_counts(arrays[f"{split}_images"], arrays[f"{split}_labels"], folder, split)
    return RawMnist(
        arrays["train_images"], arrays["train_labels"], arrays["test_images"],
        arrays["test_labels"], source=str(folder), checksums=checksums,
    )


def check_counts(images: np.ndarray, labels: np.ndarray, where: Path, split: str) -> None:
    """Raise DataError when images and labels of a split disagree in count or label range."""
    if len(images) != len(labels):
        raise DataError(
            f"{where}: {split} has {len(images)} images but {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{where}: {split} labels must be digits 0-9; found {labels.max()}")


def load_vendored() -> RawMnist:
    """The canonical MNIST shipped inside the package (works offline)."""
    raw = load_idx_folder(vendored_dir())
    return RawMnist(raw.x_train, raw.y_train, raw.x_test, raw.y_test, "vendored", raw.checksums)


def load_npz(path: Path) -> RawMnist:
    """Load the common `.npz` layout: `x_*` uint8 (n, 28, 28) or (n, 784), `y_*` integer (n,)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read .npz file ({exc})") from exc
    arrays = read_npz_arrays(content, path)
    x_train, x_test = (check_npz_images(arrays[k], path, k) for k in ("x_train", "x_test"))
    y_train, y_test = (check_npz_labels(arrays[k], path, k) for k in ("y_train", "y_test"))
    check_counts(x_train, y_train, path, "train")
    check_counts(x_test, y_test, path, "test")
    checksums = {path.name: sha256_hex(content)}
    return RawMnist(x_train, y_train, x_test, y_test, source=str(path), checksums=checksums)


def read_npz_arrays(content: bytes, path: Path) -> dict[str, np.ndarray]:
    """The four `NPZ_KEYS` arrays of the `.npz` archive held in `content` (no pickles)."""
    try:
        archive = np.load(io.BytesIO(content), allow_pickle=False)
    except NPZ_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not an .npz archive (it holds a single .npy array)")
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{path}: .npz must hold arrays {', '.join(NPZ_KEYS)}; "
                f"missing {', '.join(missing)} (found {', '.join(archive.files) or 'none'})"
            )
        try:
            return {key: archive[key] for key in NPZ_KEYS}
        except NPZ_ERRORS as exc:
            raise DataError(f"{path}: cannot read an array of the .npz archive ({exc})") from exc


def check_npz_images(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Images as uint8 (n, 784); DataError unless uint8 (n, 28, 28) or (n, 784)."""
    shape_ok = images.shape[1:] in ((28, 28), (N_PIXELS,))
    if images.dtype != np.uint8 or not shape_ok:
        raise DataError(
            f"{path}: {key} must be uint8 of shape (n, 28, 28) or (n, 784); "
            f"got {images.dtype} {images.shape} instead"
        )
    return np.ascontiguousarray(images.reshape(len(images), N_PIXELS))


def check_npz_labels(labels: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Labels as uint8 (n,); DataError unless integer digits 0-9 of shape (n,)."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{path}: {key} must be integer labels of shape (n,); "
            f"got {labels.dtype} {labels.shape} instead"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(
            f"{path}: {key} must be digits 0-9; got values {labels.min()}..{labels.max()} instead"
        )
    return labels.astype(np.uint8)


def load_source(source: Path | None) -> RawMnist:
    """MNIST from `source`: None for the vendored copy, a folder of IDX files, or an `.npz`."""
    if source is None:
        return load_vendored()
    if source.is_dir():
        return load_idx_folder(source)
    if source.is_file() and source.suffix == ".npz":
        return load_npz(source)
    if not source.exists():
        raise DataError(f"{source}: source not found")
    raise DataError(f"{source}: source must be a folder of IDX files or an .npz file")


def download(
    dest: Path, mirrors: tuple[str, ...] = DEFAULT_MIRRORS, timeout: float = 60.0
) -> Path:
    """Download the four gzip IDX files into `dest`, each verified before it lands there."""
    dest.mkdir(parents=True, exist_ok=True)
    sums = expected_checksums()
    for name in IDX_NAMES.values():
        target = dest / f"{name}.gz"
        if gz_matches(target, sums[name]):
            log.info("%s already present and verified", target)
            continue
        fetch_verified(target, sums[name], mirrors, timeout)
    return dest


def fetch_verified(target: Path, digest: str, mirrors: tuple[str, ...], timeout: float) -> None:
    """Fetch `target.name` from the first mirror whose copy matches `digest`; else DataError."""
    failures: list[Exception] = []
    reasons: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + target.name
        try:
            fetch_to(url, target, digest, timeout)
            log.info("downloaded %s from %s", target.name, url)
            return
        except DOWNLOAD_ERRORS as exc:
            log.warning("%s: %s", url, exc)
            failures.append(exc)
            reasons.append(f"{url}: {exc}")
    corrupt = bool(failures) and all(isinstance(exc, ChecksumError) for exc in failures)
    error = ChecksumError if corrupt else DataError
    detail = "; ".join(reasons) or "no mirrors given"
    raise error(f"{target.name}: download failed from every mirror ({detail})")


def fetch_to(url: str, target: Path, digest: str, timeout: float) -> None:
    """Stream `url` into a temp file beside `target`, check its digest, then move it in place."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    os.fchmod(fd, output_mode(target))
    try:
        with os.fdopen(fd, "wb") as out, open_url(url, timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        found = gz_digest(tmp)
        if found != digest:
            raise ChecksumError(f"SHA-256 of uncompressed content is {found}; expected {digest}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def open_url(url: str, timeout: float) -> http.client.HTTPResponse:
    """`urlopen(url)`, closing the connection an HTTP error response holds before re-raising."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise


def gz_matches(path: Path, digest: str) -> bool:
    """Whether `path` is a gzip file whose uncompressed SHA-256 is `digest`."""
    try:
        return path.is_file() and gz_digest(path) == digest
    except (OSError, EOFError, zlib.error):
        return False


def gz_digest(path: Path) -> str:
    """SHA-256 of the uncompressed content of gzip file `path`."""
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
