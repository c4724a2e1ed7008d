"""Tests of MNIST sources: vendored IDX, IDX folders, `.npz`, and the verified download."""

from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mnist_dist.data import sources
from mnist_dist.data.sources import (
    IDX_NAMES,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    RawMnist,
    download,
    expected_checksums,
    load_idx_folder,
    load_npz,
    load_source,
    load_vendored,
    sha256_hex,
    vendored_dir,
)
from mnist_dist.errors import ChecksumError, DataError


@pytest.fixture(scope="module")
def vendored() -> RawMnist:
    return load_vendored()


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """IDX encoding of uint8 `array` (images (n, 28, 28) or labels (n,))."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder: Path, n_train: int = 5, n_test: int = 3, gz: bool = False) -> Path:
    """Write four small synthetic IDX files into `folder` (gzip-compressed when `gz`)."""
    rng = np.random.default_rng(0)
    counts = {"train": n_train, "test": n_test}
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        n = counts[key.split("_")[0]]
        if key.endswith("images"):
            data = idx_bytes(rng.integers(0, 256, (n, 28, 28)), IMAGE_MAGIC)
        else:
            data = idx_bytes(rng.integers(0, 10, n), LABEL_MAGIC)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder


def test_vendored_shapes_and_checksums(vendored: RawMnist) -> None:
    assert vendored.x_train.shape == (60000, 784) and vendored.x_train.dtype == np.uint8
    assert vendored.y_train.shape == (60000,) and vendored.y_train.dtype == np.uint8
    assert vendored.x_test.shape == (10000, 784)
    assert vendored.y_test.shape == (10000,)
    assert vendored.checksums == expected_checksums()
    assert vendored.source == "vendored"


def test_idx_folder_of_plain_files(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    raw = load_idx_folder(folder, verify=False)
    images = (folder / IDX_NAMES["train_images"]).read_bytes()[16:]
    np.testing.assert_array_equal(raw.x_train, np.frombuffer(images, np.uint8).reshape(5, 784))
    assert raw.y_test.shape == (3,)
    assert raw.checksums[IDX_NAMES["test_labels"]] == sha256_hex(
        (folder / IDX_NAMES["test_labels"]).read_bytes()
    )


def test_idx_folder_gz_matches_plain(tmp_path: Path) -> None:
    plain = load_idx_folder(write_idx_folder(tmp_path / "plain"), verify=False)
    packed = load_idx_folder(write_idx_folder(tmp_path / "gz", gz=True), verify=False)
    np.testing.assert_array_equal(plain.x_test, packed.x_test)
    assert plain.checksums == packed.checksums


def test_truncated_idx_file(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    path = folder / IDX_NAMES["train_images"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated"):
        load_idx_folder(folder, verify=False)


def test_truncated_idx_header(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    (folder / IDX_NAMES["test_labels"]).write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: truncated IDX header"):
        load_idx_folder(folder, verify=False)


def test_wrong_magic(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    path = folder / IDX_NAMES["train_labels"]
    path.write_bytes(IMAGE_MAGIC.to_bytes(4, "big") + path.read_bytes()[4:])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: wrong magic number 2051"):
        load_idx_folder(folder, verify=False)


def test_mismatched_counts(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    (folder / IDX_NAMES["train_labels"]).write_bytes(idx_bytes(np.zeros(4), LABEL_MAGIC))
    with pytest.raises(DataError, match=r"idx: train has 5 images but 4 labels"):
        load_idx_folder(folder, verify=False)


def test_missing_idx_file(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "idx")
    (folder / IDX_NAMES["test_images"]).unlink()
    with pytest.raises(DataError, match=r"missing IDX file t10k-images-idx3-ubyte"):
        load_idx_folder(folder, verify=False)


@pytest.mark.parametrize("content", [b"not gzip at all", None], ids=["garbage", "cut-stream"])
def test_corrupt_gzip(tmp_path: Path, content: bytes | None) -> None:
    folder = write_idx_folder(tmp_path / "idx", gz=True)
    path = folder / f"{IDX_NAMES['train_images']}.gz"
    path.write_bytes(content if content is not None else path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read IDX file"):
        load_idx_folder(folder, verify=False)


def test_checksum_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    shutil.copytree(vendored_dir(), folder)
    path = folder / f"{IDX_NAMES['test_labels']}.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[-1] = (data[-1] + 1) % 10
    path.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(ChecksumError, match=r"t10k-labels-idx1-ubyte.gz: SHA-256 .* expected"):
        load_idx_folder(folder, verify=True)


def mnist_arrays(n_train: int = 6, n_test: int = 4) -> dict[str, np.ndarray]:
    """Small npz-layout arrays: images (n, 28, 28) uint8, labels int64."""
    rng = np.random.default_rng(1)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test),
    }


def test_load_npz(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)
    raw = load_npz(path)
    assert raw.x_train.shape == (6, 784) and raw.x_train.dtype == np.uint8
    assert raw.y_test.dtype == np.uint8
    np.testing.assert_array_equal(raw.x_test.reshape(-1, 28, 28), arrays["x_test"])
    np.testing.assert_array_equal(raw.y_train, arrays["y_train"])
    assert raw.checksums == {"mnist.npz": sha256_hex(path.read_bytes())}
    assert raw.source == str(path)


def test_load_npz_flat_images(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    arrays["x_train"] = arrays["x_train"].reshape(6, 784)
    path = tmp_path / "flat.npz"
    np.savez(path, **arrays)
    assert load_npz(path).x_train.shape == (6, 784)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("x_train", np.zeros((10, 5), np.float32),
         (r"x_train must be uint8 of shape \(n, 28, 28\) or \(n, 784\); "
          r"got float32 \(10, 5\) instead")),
        ("x_test", np.zeros((4, 28, 27), np.uint8), r"x_test must be uint8 of shape"),
        ("y_train", np.zeros((6, 1), np.uint8), r"y_train must be integer labels of shape"),
        ("y_test", np.zeros(4, np.float64), r"y_test must be integer labels .* got float64"),
        ("y_test", np.full(4, 10), r"y_test must be digits 0-9; got values 10..10"),
        ("y_train", np.zeros(5, np.uint8), r"train has 6 images but 5 labels"),
    ],
)
def test_bad_npz_arrays(tmp_path: Path, key: str, value: np.ndarray, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **(mnist_arrays() | {key: value}))
    with pytest.raises(DataError, match=rf"^{path}: {message}"):
        load_npz(path)


def test_npz_missing_key(tmp_path: Path) -> None:
    arrays = mnist_arrays()
    del arrays["y_test"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=r"partial.npz: .npz must hold arrays .*missing y_test"):
        load_npz(path)


def test_npz_object_array_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    np.savez(path, **(mnist_arrays() | {"y_train": np.array([object()] * 6)}))
    with pytest.raises(DataError, match=r"pickled.npz: cannot read an array"):
        load_npz(path)


@pytest.mark.parametrize("cut", [True, False], ids=["truncated-zip", "not-a-zip"])
def test_corrupt_npz(tmp_path: Path, cut: bool) -> None:
    path = tmp_path / "broken.npz"
    np.savez(path, **mnist_arrays())
    path.write_bytes(path.read_bytes()[:200] if cut else b"hello, not a zip")
    with pytest.raises(DataError, match=r"broken.npz: not a readable .npz archive"):
        load_npz(path)


def test_load_source_dispatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "load_vendored", lambda: "vendored")
    assert load_source(None) == "vendored"
    monkeypatch.setattr(sources, "load_idx_folder", lambda folder: ("idx", folder))
    assert load_source(tmp_path) == ("idx", tmp_path)
    npz = tmp_path / "m.npz"
    np.savez(npz, **mnist_arrays())
    assert load_source(npz).x_train.shape == (6, 784)


def test_load_source_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere.npz: source not found"):
        load_source(tmp_path / "nowhere.npz")
    other = tmp_path / "digits.csv"
    other.write_text("1,2,3")
    with pytest.raises(DataError, match=r"digits.csv: source must be a folder of IDX files"):
        load_source(other)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start an HTTP server on 127.0.0.1 over `tmp_path/www`; yields url(subdir) -> base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def url(subdir: str) -> str:
        return f"{base}/{subdir}/"

    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def mirror_dir(www: Path, name: str) -> None:
    """Fill `www/name` with copies of the vendored gz files."""
    shutil.copytree(vendored_dir(), www / name, ignore=shutil.ignore_patterns("SHA256SUMS*"))


def corrupt_mirror_dir(www: Path, name: str) -> None:
    """`www/name` with a valid gzip of train-images whose content has one flipped byte."""
    (www / name).mkdir()
    gz_name = f"{IDX_NAMES['train_images']}.gz"
    data = bytearray(gzip.decompress((vendored_dir() / gz_name).read_bytes()))
    data[-1] ^= 1
    (www / name / gz_name).write_bytes(gzip.compress(bytes(data), compresslevel=1))


def assert_same_as_vendored(dest: Path) -> None:
    names = sorted(p.name for p in dest.iterdir())
    assert names == sorted(f"{name}.gz" for name in IDX_NAMES.values())
    for name in names:
        assert (dest / name).read_bytes() == (vendored_dir() / name).read_bytes()


def test_download_from_local_mirror(tmp_path: Path, serve: Callable[[str], str]) -> None:
    mirror_dir(tmp_path / "www", "good")
    dest = download(tmp_path / "dest", mirrors=(serve("good"),))
    assert_same_as_vendored(dest)


def test_download_falls_back_to_next_mirror(
    tmp_path: Path, serve: Callable[[str], str]
) -> None:
    (tmp_path / "www" / "junk").mkdir(parents=True)
    for name in IDX_NAMES.values():
        (tmp_path / "www" / "junk" / f"{name}.gz").write_bytes(b"not gzip")
    mirror_dir(tmp_path / "www", "good")
    mirrors = (serve("missing"), serve("junk"), serve("good"))
    assert_same_as_vendored(download(tmp_path / "dest", mirrors=mirrors))


def test_download_corrupt_leaves_nothing(tmp_path: Path, serve: Callable[[str], str]) -> None:
    corrupt_mirror_dir(tmp_path / "www", "bad")
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match=r"^train-images-idx3-ubyte.gz: download failed"):
        download(dest, mirrors=(serve("bad"),))
    assert list(dest.iterdir()) == []


def test_download_all_mirrors_fail(tmp_path: Path, serve: Callable[[str], str]) -> None:
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: .*404"):
        download(tmp_path / "dest", mirrors=(serve("missing"), serve("gone")))


def test_download_keeps_verified_files(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    shutil.copytree(vendored_dir(), dest, ignore=shutil.ignore_patterns("SHA256SUMS*"))
    assert_same_as_vendored(download(dest, mirrors=()))
