"""Utilities, as in ``keras.utils``."""

import numpy as np

from fastdnn import _random


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


def clear_session() -> None:
    """Reset the automatic names (``dense``, ``dense_1``, ...), as ``keras.utils.clear_session``."""
    from fastdnn import _naming

    _naming.clear_session()
