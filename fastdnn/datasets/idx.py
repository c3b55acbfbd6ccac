"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the rank), then one
big-endian uint32 per dimension, then the data in C order, big-endian. Files may be gzipped;
``read_idx`` recognises gzip by its magic bytes, whatever the file is called.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import Union

import numpy as np

__all__ = ["read_idx", "write_idx"]

# IDX data-type code -> dtype of the stored (big-endian) data.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Native-order dtype -> IDX code, for writing.
_CODES: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def _gunzip_if_needed(raw: bytes, name: str) -> bytes:
    """Return ``raw`` decompressed if it starts with the gzip magic bytes, else ``raw`` itself.

    Raises:
        ValueError: if ``raw`` looks like gzip but the stream is corrupt or truncated.
    """
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: corrupt gzip stream ({type(e).__name__}: {e})") from e


def _parse(data: bytes, name: str) -> np.ndarray:
    """Decode the IDX bytes ``data`` (already decompressed) into a read-only native array."""
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(data)} bytes, shorter than the header")
    zero0, zero1, code, rank = data[:4]
    if zero0 or zero1:
        raise ValueError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()}: the first two bytes must be zero"
        )
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise ValueError(f"{name}: unknown IDX data type code 0x{code:02X} (known: {known})")
    header = 4 + 4 * rank
    if len(data) < header:
        raise ValueError(
            f"{name}: truncated IDX file: {len(data)} bytes, but a rank-{rank} header "
            f"needs {header}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=rank, offset=4))
    dtype = _DTYPES[code]
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        what = "truncated IDX file" if len(data) < expected else "IDX file with trailing bytes"
        raise ValueError(
            f"{name}: {what}: the header says shape {shape} of {dtype.name} "
            f"({expected} bytes in all), but there are {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype, count=count, offset=header).reshape(shape)
    if not dtype.isnative:
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False
    return array


def read_idx(source: Source, *, name: str | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a NumPy array.

    The header is validated strictly: the magic number, the data-type code, and that the
    header plus the data is exactly the length of the (decompressed) file. A truncated,
    padded or corrupted file raises instead of returning a garbage array.

    Args:
        source: a file path, or the file's bytes (plain or gzipped).
        name: what to call the source in error messages; defaults to the path, or
            ``"<bytes>"``.

    Returns:
        A read-only array (call ``.copy()`` for a writable one) with the file's shape and
        data type in native byte order: uint8, int8, int16, int32, float32 or float64.

    Raises:
        ValueError: if the data is not a well-formed IDX file, or is a corrupt gzip stream.
            The message names the file.
        OSError: if the file cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        name = name or "<bytes>"
    else:
        name = name or os.fspath(source)
        with open(source, "rb") as f:
            raw = f.read()
    return _parse(_gunzip_if_needed(raw, name), name)


def write_idx(
    path: Union[str, "os.PathLike[str]"], array: np.ndarray, compress: bool | None = None
) -> None:
    """Write an array as an IDX file.

    Args:
        path: the file to write (overwritten if it exists).
        array: array-like of dtype uint8, int8, int16, int32, float32 or float64 (either
            byte order), of rank at most 255, each dimension below 2**32.
        compress: gzip the file. ``None`` (the default) compresses when ``path`` ends
            with ``.gz``.

    Raises:
        ValueError: if the dtype, rank or shape cannot be stored in IDX.
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, "
                         "int16, int32, float32, float64")
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX cannot store shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + np.ascontiguousarray(array, _DTYPES[code]).tobytes()
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    if compress:
        payload = gzip.compress(payload, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)
