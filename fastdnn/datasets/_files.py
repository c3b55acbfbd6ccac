"""Find, verify and download the files of a dataset; shared by ``mnist`` and ``fashion_mnist``.

A dataset is described by a ``_Dataset`` (its file table, with sizes and SHA-256 sums) and is
looked for, in order, in:

1. the ``path=`` directory given to ``load_data``;
2. ``$FASTDNN_DATA/<name>``;
3. the user cache ``CACHE_DIR/<name>`` (``~/.fastdnn/datasets/<name>`` by default);
4. ``SYSTEM_DIR/<name>`` (``/usr/share/datasets/<name>``), for datasets a Debian package ships;

and, when no directory holds all the files, the missing files are downloaded into the user
cache. Each file may be stored gzipped (``<file>.gz``) or plain (``<file>``).

Tests redirect the locations by setting the module attributes ``CACHE_DIR`` and
``SYSTEM_DIR`` (and the ``FASTDNN_DATA`` / ``FASTDNN_DATASETS_URL`` environment variables).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from typing import IO, Optional, Sequence, Union

import numpy as np

from .idx import _gunzip_if_needed, _parse

# The user cache; None means ~/.fastdnn/datasets, expanded at each call (so $HOME counts).
CACHE_DIR: Optional[str] = None
# Where Debian's dataset-* packages install their files.
SYSTEM_DIR: str = "/usr/share/datasets"
# Seconds a download may wait for the server before giving up.
TIMEOUT: float = 60.0

DATA_ENV = "FASTDNN_DATA"
URL_ENV = "FASTDNN_DATASETS_URL"

PathLike = Union[str, "os.PathLike[str]"]
Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class DatasetError(OSError):
    """A dataset could not be found, downloaded, or verified."""


class ChecksumError(DatasetError):
    """A dataset file does not have the expected size or SHA-256 checksum."""


@dataclasses.dataclass(frozen=True)
class _File:
    """One file of a dataset.

    Attributes:
        name: the file name without ``.gz``, e.g. ``"train-images-idx3-ubyte"``.
        size: length in bytes of the decompressed file.
        sha256: SHA-256 of the decompressed file, or None if unknown.
        gz_sha256: SHA-256 of the ``.gz`` archive as published on the mirror, or None.
            Used only when ``sha256`` is None.
    """

    name: str
    size: int
    sha256: Optional[str]
    gz_sha256: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class _Dataset:
    """A dataset made of four IDX files: train images, train labels, test images, test labels.

    Attributes:
        name: directory name under the search locations, e.g. ``"fashion-mnist"``.
        title: human-readable name for messages, e.g. ``"Fashion-MNIST"``.
        files: the four ``_File``s, in the order train images, train labels, test images,
            test labels.
        base_url: the default mirror; file ``f`` is downloaded from ``<base_url>/<f>.gz``.
        apt_package: the Debian package installing the files under ``SYSTEM_DIR/<name>``,
            or None if there is none (then ``SYSTEM_DIR`` is not searched).
    """

    name: str
    title: str
    files: tuple[_File, _File, _File, _File]
    base_url: str
    apt_package: Optional[str] = None


def _cache_root() -> str:
    return CACHE_DIR or os.path.join(os.path.expanduser("~"), ".fastdnn", "datasets")


def _locations(dataset: _Dataset, path: Optional[PathLike]) -> list[tuple[str, Optional[str]]]:
    """Return ``(label, directory or None)`` for every place searched, in order."""
    data_root = os.environ.get(DATA_ENV)
    places = [
        (f"${DATA_ENV}/{dataset.name}" + ("" if data_root else f" (${DATA_ENV} is not set)"),
         os.path.join(data_root, dataset.name) if data_root else None),
        ("user cache", os.path.join(_cache_root(), dataset.name)),
    ]
    if path is not None:
        places.insert(0, ("path= argument", os.fspath(path)))
    if dataset.apt_package:
        places.append((f"Debian package {dataset.apt_package}",
                       os.path.join(SYSTEM_DIR, dataset.name)))
    return places


def _find(directory: Optional[str], file: _File) -> Optional[str]:
    """Return the path of ``file`` (plain or ``.gz``) in ``directory``, or None."""
    if directory is None:
        return None
    for candidate in (file.name, file.name + ".gz"):
        full = os.path.join(directory, candidate)
        if os.path.isfile(full):
            return full
    return None


def _check(data: bytes, expected: str, what: str, name: str, advice: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{name}: SHA-256 mismatch of the {what}: expected {expected}, got {actual}. {advice}"
        )


_LOCAL_ADVICE = "The file is corrupt or not the expected version; delete or replace it."
_DOWNLOAD_ADVICE = "The download was discarded; the mirror may serve a different file."


def _read_verified(path: str, file: _File, *, download: bool = False,
                   name: Optional[str] = None) -> np.ndarray:
    """Read the IDX file ``path`` after checking its size and checksum against ``file``.

    The decompressed size is always checked. Then the decompressed SHA-256 if known, else the
    SHA-256 of the ``.gz`` archive if known and the file is gzipped. A ``download`` that no
    known checksum applies to is refused. ``name`` (default ``path``) is used in messages.
    """
    name = name or path
    advice = _DOWNLOAD_ADVICE if download else _LOCAL_ADVICE
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = _gunzip_if_needed(raw, name)
    except ValueError as e:
        if download:
            raise ChecksumError(f"{e}. {advice}") from e
        raise
    if len(data) != file.size:
        raise ChecksumError(f"{name}: decompressed size is {len(data):,} bytes, "
                            f"expected {file.size:,}. {advice}")
    if file.sha256 is not None:
        _check(data, file.sha256, "decompressed data", name, advice)
    elif file.gz_sha256 is not None and data is not raw:
        _check(raw, file.gz_sha256, ".gz archive", name, advice)
    elif download:
        raise ChecksumError(f"{name}: not a gzip archive, so no known checksum applies. {advice}")
    return _parse(data, name)


class _Progress:
    """Download progress on stderr: a redrawn bar on a terminal, a few plain lines otherwise."""

    def __init__(self, label: str, total: Optional[int], stream: Optional[IO[str]] = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label, self.total, self.shown = label, total, -1
        if not self.tty:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            self._write(f"Downloading {label}{size}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def update(self, done: int) -> None:
        """Report that ``done`` bytes have arrived."""
        if self.tty:
            step = done * 100 // self.total if self.total else done >> 20
            if step != self.shown:
                self.shown = step
                if self.total:
                    bar = "#" * (step // 4) + "." * (25 - step // 4)
                    self._write(f"\r{self.label} [{bar}] {step:3d}% of {self.total / 1e6:.1f} MB")
                else:
                    self._write(f"\r{self.label} {done / 1e6:.1f} MB")
        elif self.total:
            quarter = done * 4 // self.total
            if quarter != self.shown and 0 < quarter < 4:
                self.shown = quarter
                self._write(f"  {quarter * 25}% ({done / 1e6:.1f} MB)\n")

    def close(self, ok: bool) -> None:
        """End the display; ``ok`` tells whether the download completed."""
        end = "done" if ok else "failed"
        self._write(f" {end}\n" if self.tty else f"  {end}\n")


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows, where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _download(url: str, directory: str, file: _File) -> np.ndarray:
    """Download ``url`` into ``directory/<file>.gz`` atomically, verify it, and read it.

    The bytes go to a temporary file in ``directory``, which is fsynced, verified, and only
    then renamed over the target: an interrupted or bad download leaves nothing behind.

    Raises:
        ChecksumError: if the download does not match ``file``'s size or checksum.
        OSError, http.client.HTTPException: on network errors or an incomplete transfer.
    """
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".part", dir=directory)
    progress = None
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress = _Progress(url, total)
            done = 0
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                progress.update(done)
            if total is not None and done != total:
                raise DatasetError(f"{url}: connection closed after {done:,} of {total:,} bytes")
            out.flush()
            os.fsync(out.fileno())
        array = _read_verified(tmp, file, download=True, name=url)
        os.replace(tmp, os.path.join(directory, file.name + ".gz"))
        _fsync_dir(directory)
        progress.close(ok=True)
        return array
    except BaseException:
        if progress is not None:
            progress.close(ok=False)
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise


def _not_found(dataset: _Dataset, looked: Sequence[str], url: str, cause: str) -> DatasetError:
    files = ", ".join(f.name for f in dataset.files)
    lines = [f"{dataset.title} was not found locally and could not be downloaded.",
             "Looked in:", *(f"  - {place}" for place in looked),
             f"  - download from {url}: {cause}",
             "To get the data:"]
    if dataset.apt_package:
        lines.append(f"  - install the Debian package: apt-get install {dataset.apt_package}")
    lines += [f"  - put the four files ({files}; each gzipped as .gz or plain) in "
              f"${DATA_ENV}/{dataset.name} or pass path= to load_data,",
              f"  - or allow the download from {url} (another mirror: set ${URL_ENV} "
              "or pass base_url=)."]
    return DatasetError("\n".join(lines))


def load(dataset: _Dataset, path: Optional[PathLike] = None, *,
         base_url: Optional[str] = None) -> Arrays:
    """Find (or download), verify and read ``dataset``; see the module docstring for the order.

    Args:
        dataset: the file table.
        path: a directory holding the four files, searched first.
        base_url: mirror to download from; defaults to ``$FASTDNN_DATASETS_URL``, then to
            ``dataset.base_url``. A ``{name}`` in it is replaced by the dataset's name.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``, read-only arrays.

    Raises:
        DatasetError: if the files are found nowhere and cannot be downloaded.
        ChecksumError: if a file found or downloaded has the wrong size or checksum.
        ValueError: if a file is not valid IDX, or the arrays do not fit together.
    """
    looked = []
    for label, directory in _locations(dataset, path):
        found = [_find(directory, f) for f in dataset.files]
        if all(found):
            arrays = [_read_verified(p, f) for p, f in zip(found, dataset.files)]
            return _assemble(dataset, arrays)
        if directory is None:
            looked.append(label)
        elif not os.path.isdir(directory):
            looked.append(f"{label}: {directory} (no such directory)")
        else:
            missing = [f.name for f, p in zip(dataset.files, found) if not p]
            looked.append(f"{label}: {directory} (missing {', '.join(missing)})")

    url = (base_url or os.environ.get(URL_ENV) or dataset.base_url).replace("{name}", dataset.name)
    cache = os.path.join(_cache_root(), dataset.name)
    arrays = []
    for file in dataset.files:
        present = _find(cache, file)
        if present:
            arrays.append(_read_verified(present, file))
            continue
        file_url = f"{url.rstrip('/')}/{file.name}.gz"
        try:
            arrays.append(_download(file_url, cache, file))
        except ChecksumError:
            raise
        except (OSError, http.client.HTTPException) as e:
            raise _not_found(dataset, looked, url, f"{file_url}: {e}") from e
    return _assemble(dataset, arrays)


def _assemble(dataset: _Dataset, arrays: list[np.ndarray]) -> Arrays:
    x_train, y_train, x_test, y_test = arrays
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if x.dtype != np.uint8 or y.dtype != np.uint8 or x.ndim != 3 or y.shape != x.shape[:1]:
            raise ValueError(f"{dataset.title}: images {x.shape} {x.dtype} and labels "
                             f"{y.shape} {y.dtype} do not fit together")
    return (x_train, y_train), (x_test, y_test)
