"""jobs.ingest of hostile source files: one `error:` line and exit code 3, the store untouched.

Truncated or lying `.npy` headers, corrupt `.npz` members and unreadable Zarr metadata are
refused with a DataError naming the file; valid files of each kind still ingest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from jobs import ingest as ingest_job

pytestmark = pytest.mark.timeout(120)  # a header claiming 10**15 rows must not hang the suite

ROWS = 40
Build = Callable[[Path], tuple[Path, list[str]]]  # tmp_path -> (file named in the error, argv)


@pytest.fixture()
def store(tmp_path: Path, small_store: Path) -> Path:
    """A private copy of the small store."""
    copy = tmp_path / "store" / "mnist.zarr"
    shutil.copytree(small_store, copy)
    return copy


def digits() -> np.ndarray:
    """uint8 (ROWS, 28, 28) of varied pixels, so a flipped byte changes the data."""
    return (np.arange(ROWS * 784, dtype=np.int64) * 7919 % 256).astype(np.uint8).reshape(-1, 28, 28)


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` by content (a new split or a leftover temporary shows)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def truncated_npy(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "truncated.npy"
    np.save(path, digits())
    path.write_bytes(path.read_bytes()[:-1000])
    return path, [str(path)]


def huge_header_npy(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "huge.npy"
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (10**15, 784)})
        handle.write(bytes(784 * 3))
    return path, [str(path)]


def truncated_labels(tmp: Path) -> tuple[Path, list[str]]:
    images, labels = tmp / "images.npy", tmp / "labels.npy"
    np.save(images, digits())
    np.save(labels, np.arange(ROWS, dtype=np.int64) % 10)
    labels.write_bytes(labels.read_bytes()[:-80])
    return labels, [str(images), "--labels", str(labels)]


def flip_member_bytes(path: Path) -> None:
    """Flip bytes in the middle of the only member's data (past its .npy header)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.infolist()[0]
    data = bytearray(path.read_bytes())
    name_len, extra_len = (int.from_bytes(data[info.header_offset + at:][:2], "little")
                           for at in (26, 28))
    start = info.header_offset + 30 + name_len + extra_len
    for at in range(start + info.compress_size // 2, start + info.compress_size // 2 + 16):
        data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def bad_crc_npz(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "bad-crc.npz"
    np.savez(path, images=digits())
    flip_member_bytes(path)
    return path, [str(path)]


def bad_compressed_npz(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "bad-deflate.npz"
    np.savez_compressed(path, images=digits())
    flip_member_bytes(path)
    return path, [str(path)]


def short_npz_member(tmp: Path) -> tuple[Path, list[str]]:
    path, whole = tmp / "short-member.npz", tmp / "whole.npy"
    np.save(whole, digits())
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", whole.read_bytes()[:-784 * 5])
    return path, [str(path)]


def zarr_source(tmp: Path, edit: Callable[[dict], object]) -> tuple[Path, list[str]]:
    """A valid Zarr array of `digits()` whose zarr.json is then rewritten by `edit` (its
    return value when that is a string, else the edited metadata)."""
    path = tmp / "source.zarr"
    zarr.create_array(str(path), shape=(ROWS, 784), chunks=(16, 784), dtype="uint8")[...] = (
        digits().reshape(ROWS, 784))
    meta = json.loads((path / "zarr.json").read_text())
    text = edit(meta)
    (path / "zarr.json").write_text(text if isinstance(text, str) else json.dumps(meta))
    return path, [str(path)]


def chunk_shape(shape: list[int]) -> Callable[[dict], None]:
    return lambda meta: meta["chunk_grid"]["configuration"].update(chunk_shape=shape)


HOSTILE: dict[str, Build] = {
    "truncated .npy": truncated_npy,
    ".npy header claiming 10**15 rows": huge_header_npy,
    "truncated --labels .npy": truncated_labels,
    ".npz member with a bad CRC": bad_crc_npz,
    "corrupt compressed .npz member": bad_compressed_npz,
    ".npz member shorter than its header": short_npz_member,
    "Zarr chunk shape [0, 784]": lambda tmp: zarr_source(tmp, chunk_shape([0, 784])),
    "Zarr chunk shape [-1, 784]": lambda tmp: zarr_source(tmp, chunk_shape([-1, 784])),
    "Zarr metadata not JSON": lambda tmp: zarr_source(tmp, lambda meta: "{not json"),
    "Zarr metadata a JSON list": lambda tmp: zarr_source(tmp, lambda meta: "[1, 2]"),
    "Zarr unknown codec": lambda tmp: zarr_source(
        tmp, lambda meta: meta.update(codecs=[{"name": "no-such-codec"}])),
}


def ingest(argv: list[str], store: Path, client: Client) -> int:
    """`python -m jobs.ingest ARGV --store STORE --split new` on the session's cluster."""
    return ingest_job.main([*argv, "--store", str(store), "--split", "new",
                            "--scheduler", client.scheduler.address])


@pytest.mark.parametrize("build", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_source_is_one_error_line_and_exit_code_3(
    build: Build, tmp_path: Path, store: Path, local_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, argv = build(tmp_path)
    before = fingerprint(store.parent)
    code = ingest(argv, store, local_client)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 3, err
    assert len(lines) == 1 and str(source) in lines[0] and "; expected" in lines[0], err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert fingerprint(store.parent) == before
    assert "new" not in zarr.open_group(str(store), mode="r")


def valid_npz(tmp: Path) -> tuple[Path, list[str]]:
    path = tmp / "good.npz"
    np.savez_compressed(path, images=digits())
    return path, [str(path)]


def valid_npy_with_labels(tmp: Path) -> tuple[Path, list[str]]:
    images, labels = tmp / "good.npy", tmp / "labels.npy"
    np.save(images, digits())
    np.save(labels, np.arange(ROWS, dtype=np.int64) % 10)
    return images, [str(images), "--labels", str(labels)]


VALID: dict[str, Build] = {
    ".npy and --labels .npy": valid_npy_with_labels,
    ".npz": valid_npz,
    "Zarr array": lambda tmp: zarr_source(tmp, lambda meta: None),
}


@pytest.mark.parametrize("build", VALID.values(), ids=VALID.keys())
def test_a_valid_source_of_each_kind_still_ingests(
    build: Build, tmp_path: Path, store: Path, local_client: Client,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, argv = build(tmp_path)
    assert ingest(argv, store, local_client) == 0, capsys.readouterr().err
    images = zarr.open_group(str(store), mode="r")["new/images"]
    assert isinstance(images, zarr.Array)
    assert np.array_equal(np.asarray(images), digits().reshape(ROWS, 784))
