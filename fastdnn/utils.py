"""Utilities, as in ``keras.utils``."""

import numpy as np

from fastdnn import _random, backend

__all__ = ["set_random_seed", "to_categorical", "clear_session"]


def set_random_seed(seed: int) -> None:
    """Seed every generator fastdnn draws from: its own stream of layer seeds, Python's
    ``random`` and NumPy's global one.

    Initial weights, dropout masks and the shuffling in ``fit`` all derive from these, so calling
    this before building and fitting a model makes the run repeatable, bit for bit, on the same
    machine.

    Args:
        seed: an ``int``.

    Raises:
        ValueError: if ``seed`` is not an int.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"Expected `seed` argument to be an integer. Received: seed={seed} "
                         f"(of type {type(seed)})")
    _random.seed_all(int(seed))


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot encode integer class ids, as ``keras.utils.to_categorical``.

    Args:
        x: array-like of class ids in ``[0, num_classes)``; a trailing axis of size 1 is
            dropped, as in Keras.
        num_classes: the number of classes. Defaults to ``max(x) + 1``.

    Returns:
        A float64 array of shape ``x.shape + (num_classes,)``.

    Raises:
        ValueError: for ids that are not integers, negative ones, or ids >= ``num_classes``.
    """
    array = np.asarray(x)
    if array.dtype.kind not in "biuf" or (array.dtype.kind == "f" and np.any(array != np.round(array))):
        raise ValueError(f"to_categorical needs integer class ids; got dtype {array.dtype}")
    labels = array.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or \
            num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer. Received: {num_classes!r}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must lie in [0, {num_classes}); got ids from "
                         f"{labels.min()} to {labels.max()}")
    categorical = np.zeros((labels.size, int(num_classes)))
    categorical[np.arange(labels.size), labels] = 1
    return categorical.reshape(shape + (int(num_classes),))


def clear_session() -> None:
    """Reset the automatic names (``dense``, ``dense_1``, ...), as ``keras.utils.clear_session``."""
    backend.clear_session()
