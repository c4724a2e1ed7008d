"""Array sources of an ingest (.npy, .npz member, Zarr array by path or URL): lazy readers,
their client-side checks (shape, dtype) and checksums; the per-block checks are in `tasks`.

Nothing here loads a whole array on the client: `.npy`/`.npz` rows are read on the workers by
`NpyRows` (it pickles as its file name and header), Zarr arrays by `da.from_zarr`. The client
checks each source first: an `.npy` header against the bytes that follow it, an `.npz` member's
CRC (streamed once), a Zarr array's metadata and chunk shape.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import dask.array as da
import numpy as np
import zarr

from mnist_dist.data.sources import N_PIXELS
from mnist_dist.data.store import check_chunk_shape, readable_metadata
from mnist_dist.errors import DataError, MnistDistError

SIDE = 28
ARRAY_SUFFIXES = (".npy", ".npz")
# What reading an .npy file or .npz member raises when its bytes are damaged (a bad CRC or
# deflate stream, a member that ends early) or the file cannot be read.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
PIECE = 1 << 20


@dataclass(frozen=True)
class NpyRows:
    """Rows of a C-ordered `.npy` file or `.npz` member, read from disk on each access.

    Array-like enough for `da.from_array`: `shape`, `dtype`, `ndim` and `[rows, ...]`.
    """

    path: str
    member: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # where the data starts in the file (or member) stream

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def where(self) -> str:
        """The file (and member), for messages."""
        return f"{self.path}[{self.member}]" if self.member else self.path

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (all axes after the first)."""
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        start, stop, _ = key[0].indices(self.shape[0])
        data = self.read_rows(start, max(start, stop))
        rows = np.frombuffer(data, dtype=self.dtype).reshape((-1, *self.shape[1:]))
        return rows[(slice(None), *key[1:])]

    def read_rows(self, start: int, stop: int) -> bytes:
        """The bytes of rows `start` to `stop`; DataError when they cannot all be read (the
        file changed or broke after the client checked it)."""
        try:
            with ExitStack() as stack:
                stream = open_stream(self.path, self.member, stack)
                stream.seek(self.offset + start * self.row_bytes)
                data = stream.read((stop - start) * self.row_bytes)
        except READ_ERRORS as exc:
            raise DataError(f"{self.where}: cannot read rows {start}-{stop - 1} ({exc}); "
                            "expected the file as it was when the ingest checked it") from exc
        if len(data) != (stop - start) * self.row_bytes:
            raise DataError(f"{self.where}: rows {start}-{stop - 1} end early ({len(data)} of "
                            f"{(stop - start) * self.row_bytes} bytes); expected the file as it "
                            "was when the ingest checked it")
        return data


def open_stream(path: str, member: str | None, stack: ExitStack) -> IO[bytes]:
    """The bytes of an `.npy` file, or of member `member` of an `.npz`, opened in `stack`."""
    if member is None:
        return stack.enter_context(open(path, "rb"))
    archive = stack.enter_context(zipfile.ZipFile(path))
    return stack.enter_context(archive.open(f"{member}.npy"))


def open_npy(path: Path, key: str | None = None) -> NpyRows:
    """The header of an `.npy` (or of `key` in an `.npz`) as an `NpyRows`, checked against the
    data that follows it (and the member's CRC); DataError if bad."""
    member = npz_member(path, key) if path.suffix.lower() == ".npz" else None
    where = f"{path}[{member}]" if member else str(path)
    try:
        with ExitStack() as stack:
            stream = open_stream(str(path), member, stack)
            version = np.lib.format.read_magic(stream)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(stream)
            offset = stream.tell()
    except READ_ERRORS as exc:
        raise DataError(f"{where}: cannot read the array's header ({exc}); expected an .npy "
                        "array as np.save writes it") from exc
    if fortran and len(shape) > 1:
        raise DataError(f"{where}: array must be C-ordered; got Fortran order instead "
                        "(save it with np.save(np.ascontiguousarray(x)))")
    if dtype.hasobject:
        raise DataError(f"{where}: array must hold numbers; got dtype {dtype} instead")
    rows = NpyRows(str(path), member, tuple(shape), dtype, offset)
    check_data_size(rows, stream_size(path, member) - offset)
    if member is not None:
        check_member_crc(path, member)
    return rows


def stream_size(path: Path, member: str | None) -> int:
    """The bytes of an `.npy` file, or of member `member` of an `.npz` once uncompressed."""
    if member is None:
        return os.path.getsize(path)
    with zipfile.ZipFile(path) as archive:
        return archive.getinfo(f"{member}.npy").file_size


def check_data_size(rows: NpyRows, available: int) -> None:
    """DataError when fewer bytes follow the header than its shape and dtype claim: a truncated
    file, or a header whose shape is a lie (refused before any allocation)."""
    claimed = math.prod(rows.shape) * rows.dtype.itemsize
    if claimed > available:
        raise DataError(f"{rows.where}: its header claims shape {rows.shape} of {rows.dtype} "
                        f"({claimed:,} bytes) but only {available:,} bytes follow it; expected "
                        "the whole array (the file is truncated or its header is wrong)")


def check_member_crc(path: Path, member: str) -> None:
    """DataError unless member `member` of the `.npz` reads whole with the right CRC-32 (zipfile
    checks it at the end of a sequential read; the workers' seeks may not)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{member}.npy") as stream:
            while stream.read(PIECE):
                pass
    except READ_ERRORS as exc:
        raise DataError(f"{path}[{member}]: corrupt .npz member ({exc}); expected an archive "
                        "as np.savez writes it (copy or save it again)") from exc


def npz_member(path: Path, key: str | None) -> str:
    """The `.npz` member to read: `key`, or the only one; DataError naming the members."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read the .npz archive ({exc})") from exc
    if key is None and len(names) == 1:
        return names[0]
    if key not in names:
        raise DataError(f"{path}: --key must name one of its arrays ({', '.join(names)}); "
                        f"got {key!r} instead")
    return key


def is_array_source(source: str) -> bool:
    """True for an `.npy`/`.npz` file, a URL or a folder holding a Zarr array."""
    path = Path(source)
    return ("://" in source or path.suffix.lower() in ARRAY_SUFFIXES
            or (path / "zarr.json").is_file() or (path / ".zarray").is_file())


def lazy_array(source: str, key: str | None, chunk_rows: int) -> da.Array:
    """The source as a lazy Dask array in `chunk_rows`-row chunks (its own dtype and shape)."""
    if Path(source).suffix.lower() in ARRAY_SUFFIXES and "://" not in source:
        rows = open_npy(Path(source), key)
        chunks = (chunk_rows, *rows.shape[1:])
        return da.from_array(rows, chunks=chunks, meta=np.empty((0,) * rows.ndim, rows.dtype),
                             name=f"npy-{hashlib.sha256(repr(rows).encode()).hexdigest()[:16]}")
    array = open_zarr_source(source)
    return da.from_zarr(array).rechunk((chunk_rows, *array.shape[1:]))


def open_zarr_source(source: str) -> zarr.Array:
    """The Zarr array at `source` (a path or URL), its metadata and chunk shape checked;
    DataError naming `source` when there is none or it cannot be read."""
    try:
        with readable_metadata(source):
            array = open_zarr_array(source)
            check_chunk_shape(array, source)
    except MnistDistError:
        raise
    except Exception as exc:  # fsspec and zarr raise many types for an unreadable location
        raise DataError(f"{source}: cannot read a Zarr array there ({type(exc).__name__}: "
                        f"{exc}); expected a Zarr array (a folder or URL with its metadata)"
                        ) from exc
    return array


def open_zarr_array(source: str) -> zarr.Array:
    """`zarr.open_array(source)`; DataError when nothing is there (not a metadata error)."""
    try:
        return zarr.open_array(source, mode="r")
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        raise DataError(f"{source}: no Zarr array there ({exc}); expected a Zarr array (a "
                        "folder or URL with its metadata)") from exc


def check_images_array(images: da.Array, source: str, pixel_range: int | None) -> None:
    """DataError unless `images` is uint8, or float with `pixel_range`, of shape (N, 28, 28)
    or (N, 784) with N >= 1."""
    shape = tuple(images.shape)
    if len(shape) not in (2, 3) or shape[1:] not in ((SIDE, SIDE), (N_PIXELS,)) or shape[0] < 1:
        raise DataError(f"{source}: images must have shape (N, 28, 28) or (N, 784); "
                        f"got {shape} instead")
    if images.dtype == np.uint8:
        if pixel_range == 1:
            raise DataError(f"{source}: uint8 pixels are 0-255; got --pixel-range 1 instead")
        return
    if images.dtype.kind != "f":
        raise DataError(f"{source}: pixels must be uint8, or floats with --pixel-range; "
                        f"got dtype {images.dtype} instead")
    if pixel_range is None:
        raise DataError(f"{source}: float pixels need --pixel-range 1 (0.0-1.0) or 255 "
                        "(0-255); the range is not guessed")


def flat_images(images: da.Array) -> da.Array:
    """(N, 28, 28) or (N, 784) → (N, 784), keeping the row chunks."""
    return images.reshape((images.shape[0], N_PIXELS)) if images.ndim == 3 else images


def check_labels_array(labels: da.Array, where: str, n_images: int) -> None:
    """DataError unless `labels` is an integer vector of `n_images` entries."""
    if labels.ndim != 1 or labels.shape[0] != n_images:
        raise DataError(f"{where}: labels must have shape ({n_images},), one per image; "
                        f"got {tuple(labels.shape)} instead")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers 0-9; got dtype {labels.dtype} instead")


def combined_sha256(digests: list[bytes]) -> str:
    """One hex digest for a whole array from its blocks' digests, in block order."""
    return hashlib.sha256(b"".join(digests)).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()
