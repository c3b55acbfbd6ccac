"""Datasets with a Keras-compatible API: ``fashion_mnist.load_data()``, ``mnist.load_data()``.

Files are looked for in ``path=``, ``$FASTDNN_DATA/<name>``, ``~/.fastdnn/datasets/<name>``,
Debian's ``/usr/share/datasets/<name>``, then downloaded (mirror: ``$FASTDNN_DATASETS_URL``).
"""

from . import fashion_mnist, idx, mnist
from ._files import ChecksumError, DatasetError

__all__ = ["fashion_mnist", "mnist", "idx", "DatasetError", "ChecksumError"]
