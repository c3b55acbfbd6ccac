"""Tests for fastdnn.datasets: the IDX reader/writer and the find/verify/download machinery.

Every test runs with the user cache, the Debian location and $HOME redirected into tmp_path
(see the autouse ``isolated`` fixture), so the real home and /usr/share are never touched,
except by the one integration test that reads the real Fashion-MNIST when it is installed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import fastdnn.datasets
from fastdnn.datasets import ChecksumError, DatasetError, _files, fashion_mnist, mnist
from fastdnn.datasets.idx import read_idx, write_idx

REAL_FASHION_DIR = "/usr/share/datasets/fashion-mnist"
NAMES = [f.name for f in fashion_mnist._DATASET.files]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Point every search location into tmp_path and clear the environment overrides."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(_files, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_files, "SYSTEM_DIR", str(tmp_path / "system"))
    monkeypatch.setattr(_files, "TIMEOUT", 10.0)
    monkeypatch.delenv("FASTDNN_DATA", raising=False)
    monkeypatch.delenv("FASTDNN_DATASETS_URL", raising=False)
    for var in ("no_proxy", "NO_PROXY"):  # never send 127.0.0.1 traffic through a proxy
        monkeypatch.setenv(var, "*")
    return tmp_path


def toy_arrays(marker: int = 0, n_train: int = 5, n_test: int = 3):
    """Four small arrays shaped like a dataset; every label equals ``marker``."""
    rng = np.random.default_rng(marker)
    return [
        rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        np.full(n_train, marker, np.uint8),
        rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        np.full(n_test, marker, np.uint8),
    ]


def idx_bytes(array, tmp_path, compress=False) -> bytes:
    path = tmp_path / "scratch.idx"
    write_idx(path, array, compress=compress)
    return path.read_bytes()


def write_set(directory, arrays, gz=True):
    """Write the four files into ``directory``; ``gz`` is a bool or a list of four bools."""
    os.makedirs(directory, exist_ok=True)
    flags = gz if isinstance(gz, list) else [gz] * 4
    for name, array, flag in zip(NAMES, arrays, flags):
        write_idx(os.path.join(directory, name + (".gz" if flag else "")), array)


def toy_dataset(arrays, tmp_path, *, hashed=True, gz_hashed=False, apt_package="dataset-toy"):
    """A ``_Dataset`` named "toy" for ``arrays``: sizes always; SHA-256 of the decompressed
    files if ``hashed``; SHA-256 of their ``gzip.compress(..., mtime=0)`` if ``gz_hashed``."""
    files = []
    for name, array in zip(NAMES, arrays):
        plain = idx_bytes(array, tmp_path)
        gz = idx_bytes(array, tmp_path, compress=True)
        files.append(_files._File(
            name, len(plain),
            hashlib.sha256(plain).hexdigest() if hashed else None,
            hashlib.sha256(gz).hexdigest() if gz_hashed else None,
        ))
    return _files._Dataset("toy", "Toy", tuple(files), "http://127.0.0.1:9/unused/",
                           apt_package)


def flatten(result):
    (x_train, y_train), (x_test, y_test) = result
    return [x_train, y_train, x_test, y_test]


def assert_loaded(result, arrays):
    for got, want in zip(flatten(result), arrays):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.uint8
        assert not got.flags.writeable


def files_in(directory) -> list[str]:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append(self.path)
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in server.truncate:  # promise the whole body, send half, hang up
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1: fill ``.files`` ({url path: bytes}), read ``.url``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.timeout = 5
    httpd.files, httpd.truncate, httpd.requests = {}, set(), []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def serve_set(server, arrays, tmp_path, prefix="/toy"):
    for name, array in zip(NAMES, arrays):
        server.files[f"{prefix}/{name}.gz"] = idx_bytes(array, tmp_path, compress=True)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ----------------------------------------------------------------------------- IDX format

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(), (0,), (7,), (3, 4), (2, 3, 4), (1, 2, 1, 3)]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    for source in (path, str(path), path.read_bytes()):
        got = read_idx(source)
        assert got.dtype == np.dtype(dtype) and got.dtype.isnative
        assert got.shape == shape
        np.testing.assert_array_equal(got, array)
        assert not got.flags.writeable


def test_idx_layout_is_big_endian_per_spec(tmp_path):
    # Header: 00 00, type 0x0B (short), rank 1, dim 2 (big-endian); data 1, -2 big-endian.
    expected = b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\xff\xfe"
    assert idx_bytes(np.array([1, -2], np.int16), tmp_path) == expected
    assert idx_bytes(np.array([1, -2], ">i2"), tmp_path) == expected
    handmade = b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x03" + bytes(range(6))
    np.testing.assert_array_equal(read_idx(handmade), [[0, 1, 2], [3, 4, 5]])
    floats = b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x3f\xc0\x00\x00"  # 1.5, big-endian
    assert read_idx(floats).tolist() == [1.5]


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x.idx", np.zeros(3, np.int64))


@pytest.mark.parametrize("cut", [0, 1, 3, 4, 7, 11, 15, 16, 17, 50, -4, -1])
def test_truncated_file_raises_naming_it(tmp_path, cut):
    data = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4), tmp_path)
    assert len(data) == 16 + 24 * 4
    path = tmp_path / "cut.idx"
    path.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated|not an IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("byte", [0, 1])
def test_bad_magic(tmp_path, byte):
    data = bytearray(idx_bytes(np.zeros(4, np.uint8), tmp_path))
    data[byte] = 1
    with pytest.raises(ValueError, match="magic"):
        read_idx(bytes(data))


def test_unknown_dtype_code(tmp_path):
    data = bytearray(idx_bytes(np.zeros(4, np.uint8), tmp_path))
    data[2] = 0x0A
    with pytest.raises(ValueError, match="data type code 0x0A"):
        read_idx(bytes(data))


def test_extra_trailing_bytes(tmp_path):
    data = idx_bytes(np.zeros((2, 2), np.float64), tmp_path)
    with pytest.raises(ValueError, match="trailing"):
        read_idx(data + b"\x00")


def test_corrupt_gzip(tmp_path):
    data = bytearray(idx_bytes(np.arange(1000, dtype=np.int32), tmp_path, compress=True))
    data[len(data) // 2] ^= 0xFF
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt gzip") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="corrupt gzip"):  # gzip cut short
        read_idx(bytes(data[: len(data) // 3]))
    with pytest.raises(ValueError, match="corrupt gzip"):  # gzip magic, garbage after
        read_idx(b"\x1f\x8b" + b"garbage" * 5)


# ----------------------------------------------------------------------------- local lookup


def test_package_exposes_loaders():
    assert fastdnn.datasets.fashion_mnist.load_data is fashion_mnist.load_data
    assert fastdnn.datasets.mnist.load_data is mnist.load_data
    assert issubclass(ChecksumError, DatasetError) and issubclass(DatasetError, OSError)


def test_gz_and_plain_files_mixed(tmp_path):
    arrays = toy_arrays(1)
    write_set(tmp_path / "d", arrays, gz=[True, False, False, True])
    assert_loaded(_files.load(toy_dataset(arrays, tmp_path), tmp_path / "d"), arrays)


def test_returned_arrays_are_read_only(tmp_path):
    arrays = toy_arrays(1)
    write_set(tmp_path / "d", arrays)
    x_train = _files.load(toy_dataset(arrays, tmp_path), str(tmp_path / "d"))[0][0]
    with pytest.raises(ValueError, match="read-only"):
        x_train[0, 0, 0] = 1


def test_load_order(tmp_path, monkeypatch):
    # Same shapes everywhere, labels = a marker per location; the table checks sizes only.
    dataset = toy_dataset(toy_arrays(0), tmp_path, hashed=False)
    places = {1: tmp_path / "arg", 2: tmp_path / "data" / "toy", 3: tmp_path / "cache" / "toy",
              4: tmp_path / "system" / "toy"}
    for marker, directory in places.items():
        write_set(directory, toy_arrays(marker), gz=marker % 2 == 0)
    monkeypatch.setenv("FASTDNN_DATA", str(tmp_path / "data"))

    def winner(path=None):
        return int(_files.load(dataset, path)[0][1][0])

    assert winner(str(places[1])) == 1
    assert winner() == 2
    monkeypatch.delenv("FASTDNN_DATA")
    assert winner() == 3
    os.remove(places[3] / NAMES[2])  # an incomplete directory is skipped (marker 3: plain)
    assert winner() == 4


def test_default_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "CACHE_DIR", None)
    arrays = toy_arrays(2)
    write_set(tmp_path / "home" / ".fastdnn" / "datasets" / "toy", arrays)
    assert_loaded(_files.load(toy_dataset(arrays, tmp_path)), arrays)


def test_system_dir_only_for_datasets_with_a_package(tmp_path):
    arrays = toy_arrays(3)
    write_set(tmp_path / "system" / "toy", arrays)
    assert_loaded(_files.load(toy_dataset(arrays, tmp_path)), arrays)
    no_package = toy_dataset(arrays, tmp_path, apt_package=None)
    with pytest.raises(DatasetError) as info:
        _files.load(no_package, base_url=closed_port_url())
    assert str(tmp_path / "system") not in str(info.value)
    assert "apt-get" not in str(info.value)


def test_local_hash_mismatch_names_file_and_hashes(tmp_path):
    arrays = toy_arrays(1)
    dataset = toy_dataset(arrays, tmp_path)
    other = toy_arrays(1)
    other[1] = other[1] + 1  # same size, different labels
    write_set(tmp_path / "d", other)
    with pytest.raises(ChecksumError) as info:
        _files.load(dataset, tmp_path / "d")
    message = str(info.value)
    assert NAMES[1] in message
    assert dataset.files[1].sha256 in message
    assert hashlib.sha256(idx_bytes(other[1], tmp_path)).hexdigest() in message


def test_local_size_mismatch(tmp_path):
    arrays = toy_arrays(1)
    write_set(tmp_path / "d", toy_arrays(1, n_train=6))
    with pytest.raises(ChecksumError, match=f"{NAMES[0]}.*size"):
        _files.load(toy_dataset(arrays, tmp_path), tmp_path / "d")


def test_corrupt_file_in_a_higher_place_is_an_error_not_skipped(tmp_path):
    arrays = toy_arrays(1)
    write_set(tmp_path / "cache" / "toy", arrays)
    write_set(tmp_path / "arg", arrays)
    (tmp_path / "arg" / (NAMES[3] + ".gz")).write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(ValueError, match=f"{NAMES[3]}.gz: corrupt gzip"):
        _files.load(toy_dataset(arrays, tmp_path), tmp_path / "arg")


def test_real_fashion_table_rejects_wrong_files(tmp_path):
    write_set(tmp_path / "d", toy_arrays(1))
    with pytest.raises(ChecksumError, match="expected 47,040,016"):
        fashion_mnist.load_data(path=str(tmp_path / "d"))


# ----------------------------------------------------------------------------- downloads


def test_download_lands_in_cache_and_loads(tmp_path, server, capsys):
    arrays = toy_arrays(4)
    serve_set(server, arrays, tmp_path)
    dataset = toy_dataset(arrays, tmp_path)
    assert_loaded(_files.load(dataset, base_url=server.url + "/toy/"), arrays)
    assert files_in(tmp_path / "cache" / "toy") == sorted(n + ".gz" for n in NAMES)
    assert sorted(server.requests) == sorted(f"/toy/{n}.gz" for n in NAMES)
    err = capsys.readouterr().err
    assert f"Downloading {server.url}/toy/{NAMES[0]}.gz" in err and "done" in err
    # A second load reads the cache without asking the server.
    assert_loaded(_files.load(dataset, base_url=server.url + "/toy/"), arrays)
    assert len(server.requests) == 4


def test_download_fills_only_missing_files(tmp_path, server):
    arrays = toy_arrays(5)
    serve_set(server, arrays, tmp_path)
    os.makedirs(tmp_path / "cache" / "toy")
    write_idx(tmp_path / "cache" / "toy" / NAMES[0], arrays[0])  # plain, from an earlier run
    assert_loaded(_files.load(toy_dataset(arrays, tmp_path), base_url=server.url + "/toy"),
                  arrays)
    assert sorted(server.requests) == sorted(f"/toy/{n}.gz" for n in NAMES[1:])


def test_url_from_environment_and_keyword_precedence(tmp_path, server, monkeypatch):
    arrays = toy_arrays(6)
    serve_set(server, arrays, tmp_path, prefix="/mirror/toy")
    dataset = toy_dataset(arrays, tmp_path)
    monkeypatch.setenv("FASTDNN_DATASETS_URL", server.url + "/mirror/{name}/")
    assert_loaded(_files.load(dataset), arrays)
    # base_url= wins over the environment: a dead keyword URL fails although the env is good.
    for name in NAMES:
        os.remove(tmp_path / "cache" / "toy" / (name + ".gz"))
    with pytest.raises(DatasetError):
        _files.load(dataset, base_url=closed_port_url())


def test_download_checksum_mismatch_is_refused(tmp_path, server):
    arrays = toy_arrays(7)
    dataset = toy_dataset(arrays, tmp_path)
    wrong = toy_arrays(8)  # same sizes, different pixels
    serve_set(server, [wrong[0]] + arrays[1:], tmp_path)
    with pytest.raises(ChecksumError) as info:
        _files.load(dataset, base_url=server.url + "/toy/")
    message = str(info.value)
    assert f"{server.url}/toy/{NAMES[0]}.gz" in message
    assert dataset.files[0].sha256 in message and "discarded" in message
    assert files_in(tmp_path / "cache" / "toy") == []


def test_dropped_connection_leaves_no_partial_file(tmp_path, server):
    arrays = toy_arrays(9)
    serve_set(server, arrays, tmp_path)
    server.truncate.add(f"/toy/{NAMES[0]}.gz")
    with pytest.raises(DatasetError) as info:
        _files.load(toy_dataset(arrays, tmp_path), base_url=server.url + "/toy/")
    assert not isinstance(info.value, ChecksumError)
    assert "connection closed after" in str(info.value)
    assert files_in(tmp_path / "cache" / "toy") == []


def test_gz_archive_hash_mode(tmp_path, server):
    # MNIST's table knows only the SHA-256 of the .gz archives: a download must match it.
    arrays = toy_arrays(10)
    dataset = toy_dataset(arrays, tmp_path, hashed=False, gz_hashed=True)
    serve_set(server, arrays, tmp_path)
    recompressed = gzip.compress(idx_bytes(arrays[0], tmp_path), compresslevel=1, mtime=1)
    server.files[f"/toy/{NAMES[0]}.gz"] = recompressed  # same data, other archive bytes
    with pytest.raises(ChecksumError, match=r"\.gz archive"):
        _files.load(dataset, base_url=server.url + "/toy/")
    server.files[f"/toy/{NAMES[0]}.gz"] = idx_bytes(arrays[0], tmp_path)  # not gzipped
    with pytest.raises(ChecksumError, match="not a gzip archive"):
        _files.load(dataset, base_url=server.url + "/toy/")
    assert files_in(tmp_path / "cache" / "toy") == []
    serve_set(server, arrays, tmp_path)
    assert_loaded(_files.load(dataset, base_url=server.url + "/toy/"), arrays)


def test_no_network_no_files_error_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTDNN_DATA", str(tmp_path / "data"))
    url = closed_port_url()
    with pytest.raises(DatasetError) as info:
        fashion_mnist.load_data(path=str(tmp_path / "arg"), base_url=url)
    message = str(info.value)
    for place in ("arg", os.path.join("data", "fashion-mnist"),
                  os.path.join("cache", "fashion-mnist"), os.path.join("system", "fashion-mnist")):
        assert os.path.join(str(tmp_path), place) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "$FASTDNN_DATA/fashion-mnist" in message and url in message
    assert files_in(tmp_path / "cache" / "fashion-mnist") == []


def test_mnist_error_has_no_debian_package(tmp_path):
    with pytest.raises(DatasetError) as info:
        mnist.load_data(base_url=closed_port_url())
    message = str(info.value)
    assert os.path.join(str(tmp_path), "cache", "mnist") in message
    assert "$FASTDNN_DATA/mnist ($FASTDNN_DATA is not set)" in message
    assert "apt-get" not in message and str(tmp_path / "system") not in message


def test_progress_bar_on_a_terminal():
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    stream = Tty()
    progress = _files._Progress("file.gz", 1000, stream)
    for done in (0, 500, 1000):
        progress.update(done)
    progress.close(ok=True)
    assert "\rfile.gz [" in stream.text and " 50%" in stream.text and "100%" in stream.text
    assert stream.text.endswith("done\n")


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not os.path.isdir(REAL_FASHION_DIR),
                    reason=f"{REAL_FASHION_DIR} missing: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(_files, "SYSTEM_DIR", os.path.dirname(REAL_FASHION_DIR))
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    for a in (x_train, y_train, x_test, y_test):
        assert a.dtype == np.uint8 and not a.flags.writeable
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10
    assert y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert abs(x_train.mean(dtype=np.float64) - 72.94035223214286) < 1e-9
    assert files_in(tmp_path / "cache") == []  # found in place: nothing copied or downloaded
