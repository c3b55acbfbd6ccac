"""Activation functions by name, as in ``keras.activations``.

Each function is plain NumPy (the same maths the kernels fuse into the dense layer); the model
API resolves names here once, and the kernels receive the activation's code.
"""

import numpy as np

from fastdnn import reference as _ref


def linear(x):
    """Identity: ``linear(x) = x``."""
    return np.asarray(x)


def relu(x):
    """Rectified linear unit: ``max(x, 0)``."""
    return np.maximum(np.asarray(x), 0)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, stable for inputs of large magnitude."""
    return _ref._sigmoid(np.asarray(x))


def tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(np.asarray(x))


def softmax(x, axis=-1):
    """Softmax along ``axis``: ``exp(x - max) / sum(exp(x - max))``."""
    x = np.asarray(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


ALL = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax}


def get(identifier):
    """Resolve an activation: a name (exact, case-sensitive, as Keras), ``None`` (linear) or one
    of this module's functions.

    Returns:
        The activation's name, one of ``'linear'``, ``'relu'``, ``'sigmoid'``, ``'tanh'``,
        ``'softmax'``.

    Raises:
        ValueError: for an unknown name or an unsupported callable.
    """
    if identifier is None:
        return "linear"
    if isinstance(identifier, str) and identifier in ALL:
        return identifier
    for name, fn in ALL.items():
        if identifier is fn:
            return name
    raise ValueError(f"Could not interpret activation function identifier: {identifier} "
                     f"(fastdnn supports {sorted(ALL)})")
