"""The parts of ``keras.backend`` a Keras script calls: clearing the session, the float type."""

from fastdnn import _naming
from fastdnn.config import epsilon, floatx, set_epsilon, set_floatx

__all__ = ["backend", "clear_session", "epsilon", "floatx", "set_epsilon", "set_floatx"]


def clear_session(free_memory=True) -> None:
    """Reset the automatic layer and model names (``dense``, ``dense_1``, ...), as
    ``keras.backend.clear_session``: the next ``Dense()`` is named ``dense`` again.

    Args:
        free_memory: accepted for Keras compatibility; fastdnn holds no global state to free.
            Defaults to True.
    """
    _naming.clear_session()


def backend() -> str:
    """The name of the backend: ``'fastdnn'``."""
    return "fastdnn"
