"""MNIST: 70,000 28x28 grayscale images of handwritten digits."""

from __future__ import annotations

from typing import Optional

from ._files import Arrays, PathLike, _Dataset, _File, load

__all__ = ["load_data", "BASE_URL"]

# The mirror of the original LeCun archives used by TensorFlow (override:
# $FASTDNN_DATASETS_URL, base_url=). Keras itself downloads mnist.npz instead.
BASE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

# Checksums: no published SHA-256 of the *decompressed* files was found, so sha256 is None and
# the SHA-256 of the original .gz archives is checked instead (of every download, and of local
# .gz files; a local plain file is checked by size and IDX structure only). These gz SHA-256
# come from tensorflow/datasets, tensorflow_datasets/url_checksums/mnist.txt, for the URLs
# https://storage.googleapis.com/cvdf-datasets/mnist/<file>.gz (gz sizes 9,912,422, 28,881,
# 1,648,877, 4,542 bytes). The same archives are on https://ossci-datasets.s3.amazonaws.com/mnist/
# (torchvision's mirror; torchvision lists their MD5). Decompressed sizes follow from the IDX
# headers: 16 + n*28*28 for images, 8 + n for labels.
_DATASET = _Dataset(
    name="mnist",
    title="MNIST",
    base_url=BASE_URL,
    files=(
        _File("train-images-idx3-ubyte", 47_040_016, None,
              "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _File("train-labels-idx1-ubyte", 60_008, None,
              "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        _File("t10k-images-idx3-ubyte", 7_840_016, None,
              "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _File("t10k-labels-idx1-ubyte", 10_008, None,
              "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
)


def load_data(path: Optional[PathLike] = None, *, base_url: Optional[str] = None) -> Arrays:
    """Loads the MNIST dataset of handwritten digits.

    The four IDX files (each gzipped or plain) are looked for, in order, in ``path``,
    ``$FASTDNN_DATA/mnist`` and ``~/.fastdnn/datasets/mnist``, and otherwise downloaded into
    ``~/.fastdnn/datasets/mnist``. Sizes are always checked; the SHA-256 of the original
    ``.gz`` archives is checked for downloads and local ``.gz`` files.

    Args:
        path: a directory holding the four files, searched first.
        base_url: mirror to download from, instead of ``$FASTDNN_DATASETS_URL`` or
            ``BASE_URL``.

    Returns:
        Tuple of NumPy arrays: ``(x_train, y_train), (x_test, y_test)``, read-only.
        ``x_train``: uint8 array of shape ``(60000, 28, 28)``, grayscale digits.
        ``y_train``: uint8 array of shape ``(60000,)``, digit labels in 0-9.
        ``x_test``: uint8 array of shape ``(10000, 28, 28)``.
        ``y_test``: uint8 array of shape ``(10000,)``.

    Raises:
        DatasetError: if the files are found nowhere and cannot be downloaded; the
            message lists every place looked and how to get the data.
        ChecksumError: if a file has the wrong size or SHA-256.
        ValueError: if a file is not valid IDX (truncated, corrupt gzip...).
    """
    return load(_DATASET, path, base_url=base_url)
