"""Weight regularizers, as in ``keras.regularizers``: a penalty on a layer's weights added to
the loss.

``Dense(kernel_regularizer=keras.regularizers.l2(0.01))`` adds ``0.01·Σw²`` to every batch's
loss (and to the loss ``fit`` and ``evaluate`` report, as Keras does), and its gradient
``2·0.01·w`` to the kernel's. The kernels add both inside the compiled loop
(``fastdnn._kernels``, ``_penalty`` and ``_penalty_gradient``); a frozen layer's weights are not
penalized (Keras regularizes trainable weights only).
"""

import numpy as np

__all__ = ["Regularizer", "L1L2", "L1", "L2", "l1", "l2", "l1_l2", "serialize", "get"]


def _coefficient(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"Value for argument `{name}` must be a non-negative finite number. "
                         f"Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: ``regularizer(x)`` returns the penalty of the weights x."""

    l1 = 0.0
    l2 = 0.0

    def __call__(self, x):
        x = np.asarray(x, np.float64)
        return self.l1 * np.abs(x).sum() + self.l2 * np.square(x).sum()

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "Regularizer":
        """Create a regularizer from ``get_config()``'s output."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1·Σ|x| + l2·Σx²``.

    Args:
        l1: Defaults to 0.0.
        l2: Defaults to 0.0.
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _coefficient("l1", l1)
        self.l2 = _coefficient("l2", l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1·Σ|x|``.

    Args:
        l1: Defaults to 0.01.
    """

    def __init__(self, l1=0.01):
        self.l1 = _coefficient("l1", l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2·Σx²``.

    Args:
        l2: Defaults to 0.01.
    """

    def __init__(self, l2=0.01):
        self.l2 = _coefficient("l2", l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
ALL = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2}


def serialize(regularizer) -> dict:
    """Return Keras' ``{'module', 'class_name', 'config', 'registered_name'}``."""
    return {"module": "keras.regularizers", "class_name": type(regularizer).__name__,
            "config": regularizer.get_config(), "registered_name": None}


def get(identifier):
    """Resolve a regularizer: None, an object of this module (used as is), a name (``'l1'``,
    ``'l2'``, ``'l1_l2'``, ``'L2'``, ...: an instance with defaults) or ``serialize``'s dict.

    Raises:
        ValueError: for anything else, listing the valid names.
    """
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in ALL:
        return ALL[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in ALL:
        return ALL[identifier["class_name"]].from_config(identifier.get("config") or {})
    raise ValueError(f"Could not interpret regularizer identifier: {identifier} (fastdnn "
                     f"supports {', '.join(sorted(ALL))})")
