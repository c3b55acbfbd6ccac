"""Fashion-MNIST: 70,000 28x28 grayscale images of clothing in 10 classes."""

from __future__ import annotations

from typing import Optional

from ._files import Arrays, PathLike, _Dataset, _File, load

__all__ = ["load_data", "BASE_URL"]

# The mirror Keras downloads Fashion-MNIST from (override: $FASTDNN_DATASETS_URL, base_url=).
BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

# Sizes and SHA-256 are of the decompressed files: Debian's package recompresses the .gz.
_DATASET = _Dataset(
    name="fashion-mnist",
    title="Fashion-MNIST",
    base_url=BASE_URL,
    apt_package="dataset-fashion-mnist",
    files=(
        _File("train-images-idx3-ubyte", 47_040_016,
              "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        _File("train-labels-idx1-ubyte", 60_008,
              "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        _File("t10k-images-idx3-ubyte", 7_840_016,
              "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        _File("t10k-labels-idx1-ubyte", 10_008,
              "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
)


def load_data(path: Optional[PathLike] = None, *, base_url: Optional[str] = None) -> Arrays:
    """Loads the Fashion-MNIST dataset.

    Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
    7 Sneaker, 8 Bag, 9 Ankle boot.

    The four IDX files (each gzipped or plain) are looked for, in order, in ``path``,
    ``$FASTDNN_DATA/fashion-mnist``, ``~/.fastdnn/datasets/fashion-mnist`` and
    ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``), and
    otherwise downloaded into ``~/.fastdnn/datasets/fashion-mnist``. Every file's size and
    SHA-256 are checked.

    Args:
        path: a directory holding the four files, searched first.
        base_url: mirror to download from, instead of ``$FASTDNN_DATASETS_URL`` or
            ``BASE_URL``.

    Returns:
        Tuple of NumPy arrays: ``(x_train, y_train), (x_test, y_test)``, read-only.
        ``x_train``: uint8 array of shape ``(60000, 28, 28)``, grayscale image data.
        ``y_train``: uint8 array of shape ``(60000,)``, labels in 0-9.
        ``x_test``: uint8 array of shape ``(10000, 28, 28)``.
        ``y_test``: uint8 array of shape ``(10000,)``.

    Raises:
        DatasetError: if the files are found nowhere and cannot be downloaded; the
            message lists every place looked and how to get the data.
        ChecksumError: if a file has the wrong size or SHA-256.
        ValueError: if a file is not valid IDX (truncated, corrupt gzip...).
    """
    return load(_DATASET, path, base_url=base_url)
