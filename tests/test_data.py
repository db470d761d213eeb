"""The offline data helpers: the scikit-learn digits split, and the opt-in MNIST IDX reader.

The IDX tests write their own small files (plain and gzip) into a temporary folder;
nothing here touches the network.
"""
from __future__ import annotations

import gzip
import socket
import struct
from pathlib import Path

import numpy as np
import pytest

from safety_roadmap import data
from safety_roadmap.data import IDXFormatError, load_digits, load_mnist, load_mnist_idx, read_idx


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test: the loaders must never download."""
    def refuse(*args, **kwargs):
        raise AssertionError("a data loader tried to open a network connection")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file's bytes: zero, zero, type code, ndim, big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array).astype(dtype).tobytes()


def write(path: Path, payload: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def tiny_mnist() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    images[0, 0, 0], images[1, 0, 0] = 0, 255
    labels = np.array([3, 0, 9, 1, 7], dtype=np.uint8)
    return images, labels


# --------------------------------------------------------------------------- load_digits

def test_digits_shapes_dtypes_and_ranges():
    split = load_digits()
    assert split.x_train.shape == (1348, 64) and split.x_test.shape == (449, 64)
    assert split.y_train.shape == (1348,) and split.y_test.shape == (449,)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    assert set(np.unique(split.y_train)) == set(range(10)) and split.n_classes == 10


def test_digits_split_is_deterministic_and_seeded():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_digits_test_fraction_and_no_overlap():
    split = load_digits(test_fraction=0.5)
    assert len(split.y_test) == 898 and len(split.y_train) == 899
    train_rows = {row.tobytes() for row in split.x_train}
    overlap = sum(row.tobytes() in train_rows for row in split.x_test)
    assert overlap < 10  # the digits contain a handful of exact duplicate images, nothing more
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            load_digits(test_fraction=bad)


# --------------------------------------------------------------------------- IDX files

@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_mnist_idx_round_trip(tmp_path, tiny_mnist, compress):
    images, labels = tiny_mnist
    suffix = ".gz" if compress else ""
    img = write(tmp_path / f"images-idx3-ubyte{suffix}", idx_bytes(images), compress)
    lab = write(tmp_path / f"labels-idx1-ubyte{suffix}", idx_bytes(labels), compress)
    x, y = load_mnist_idx(img, lab)
    assert x.shape == (5, 12) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == [3, 0, 9, 1, 7]
    assert np.allclose(x, images.reshape(5, 12) / 255.0)
    assert x[0, 0] == 0.0 and x[1, 0] == 1.0


def test_gzip_is_detected_by_content_not_name(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    path = write(tmp_path / "images.idx", idx_bytes(images), compress=True)
    assert np.array_equal(read_idx(path), images)


@pytest.mark.parametrize("code,values", [(0x0B, [-300, 2, 7]), (0x0C, [1, -2, 70000]), (0x0D, [0.5, -1.25, 3.0]),
                                         (0x0E, [1e-300, 2.5, -7.0]), (0x09, [-5, 0, 5])])
def test_read_idx_other_types_are_big_endian(tmp_path, code, values):
    array = np.array(values)
    got = read_idx(write(tmp_path / "x.idx", idx_bytes(array, code)))
    assert np.array_equal(got, array) and got.dtype.isnative


def test_wrong_magic_number_is_named(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    payload = bytearray(idx_bytes(images))
    payload[0] = 0x12
    with pytest.raises(IDXFormatError, match="not an IDX file.*magic number 0x12000803"):
        read_idx(write(tmp_path / "bad", bytes(payload)))
    payload = bytearray(idx_bytes(images))
    payload[2] = 0x42  # an unknown type code
    with pytest.raises(IDXFormatError, match="not an IDX file"):
        read_idx(write(tmp_path / "bad2", bytes(payload)))
    with pytest.raises(IDXFormatError, match="not an IDX file"):
        read_idx(write(tmp_path / "page.html", b"<html>404 Not Found</html>"))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_truncated_data_is_reported(tmp_path, tiny_mnist, compress):
    images, _ = tiny_mnist
    payload = idx_bytes(images)[:-7]
    with pytest.raises(IDXFormatError, match=r"truncated: header says shape \(5, 4, 3\).*found 53 bytes"):
        read_idx(write(tmp_path / "short", payload, compress))


def test_truncated_header_and_cut_gzip_stream(tmp_path, tiny_mnist):
    images, _ = tiny_mnist
    with pytest.raises(IDXFormatError, match="truncated header"):
        read_idx(write(tmp_path / "head", idx_bytes(images)[:9]))
    with pytest.raises(IDXFormatError, match="too short"):
        read_idx(write(tmp_path / "tiny", b"\x00\x00"))
    cut = gzip.compress(idx_bytes(images))[:-12]
    with pytest.raises(IDXFormatError, match="cannot be decompressed"):
        read_idx(write(tmp_path / "cut.gz", cut))


def test_extra_trailing_bytes_are_reported(tmp_path, tiny_mnist):
    _, labels = tiny_mnist
    with pytest.raises(IDXFormatError, match="longer than its header says"):
        read_idx(write(tmp_path / "long", idx_bytes(labels) + b"\x00\x01"))


def test_mismatched_or_swapped_files(tmp_path, tiny_mnist):
    images, labels = tiny_mnist
    img = write(tmp_path / "img", idx_bytes(images))
    lab = write(tmp_path / "lab", idx_bytes(labels))
    with pytest.raises(IDXFormatError, match="swap"):
        load_mnist_idx(lab, img)
    fewer = write(tmp_path / "lab4", idx_bytes(labels[:4]))
    with pytest.raises(IDXFormatError, match="5 images but .* 4 labels"):
        load_mnist_idx(img, fewer)


def test_missing_file_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_mnist_idx(tmp_path / "nope-images", tmp_path / "nope-labels")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_mnist(tmp_path)


def test_load_mnist_reads_the_standard_file_names(tmp_path, tiny_mnist):
    images, labels = tiny_mnist
    train_img, train_lab = data.MNIST_FILES["train"]
    test_img, test_lab = data.MNIST_FILES["test"]
    write(tmp_path / f"{train_img}.gz", idx_bytes(images), compress=True)
    write(tmp_path / f"{train_lab}.gz", idx_bytes(labels), compress=True)
    write(tmp_path / test_img, idx_bytes(images[:2]))
    write(tmp_path / test_lab, idx_bytes(labels[:2]))
    split = load_mnist(tmp_path)
    assert split.x_train.shape == (5, 12) and split.x_test.shape == (2, 12)
    assert split.y_test.tolist() == [3, 0] and split.n_classes == 10
