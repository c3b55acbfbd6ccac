"""Activation functions by name, as in ``keras.activations``.

Each function is plain NumPy (the same maths the kernels fuse into the dense layer); the model
API resolves names here once, and the kernels receive the activation's code.
"""

import numpy as np

from fastdnn import reference as _ref

__all__ = ["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "silu",
           "swish", "softplus", "softsign", "leaky_relu", "relu6", "hard_sigmoid", "exponential",
           "get"]


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
    return _ref._softmax(np.asarray(x), axis)


def elu(x, alpha=1.0):
    """Exponential linear unit: ``x`` if ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Args:
        x: array-like.
        alpha: Defaults to 1.0 (a model's layers use the default).
    """
    x = np.asarray(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x):
    """Scaled exponential linear unit: ``scale * elu(x, alpha)`` with Keras' constants
    alpha = 1.67326324 and scale = 1.05070098."""
    return _ref._apply(np.asarray(x), _ref.SELU)


def gelu(x, approximate=False):
    """Gaussian error linear unit: ``x * P(X <= x)`` for X ~ N(0, 1), i.e.
    ``0.5 * x * (1 + erf(x / sqrt(2)))``.

    Args:
        x: array-like.
        approximate: the tanh approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.
            Defaults to False, as Keras (a model's layers use the exact form).
    """
    x = np.asarray(x)
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return _ref._apply(x, _ref.GELU)


def silu(x):
    """Sigmoid linear unit (swish): ``x * sigmoid(x)``."""
    return _ref._apply(np.asarray(x), _ref.SILU)


swish = silu


def softplus(x):
    """``log(1 + exp(x))``, computed without overflow."""
    return _ref._apply(np.asarray(x), _ref.SOFTPLUS)


def softsign(x):
    """``x / (1 + |x|)``."""
    return _ref._apply(np.asarray(x), _ref.SOFTSIGN)


def leaky_relu(x, negative_slope=0.2):
    """Leaky rectified linear unit: ``x`` if ``x >= 0``, else ``negative_slope * x``.

    Args:
        x: array-like.
        negative_slope: Defaults to 0.2, as Keras 3 (a model's layers use the default; the
            ``LeakyReLU`` layer takes any slope).
    """
    return _ref._apply(np.asarray(x), _ref.LEAKY_RELU, negative_slope)


def relu6(x):
    """``min(max(x, 0), 6)``."""
    return _ref._apply(np.asarray(x), _ref.RELU6)


def hard_sigmoid(x):
    """Keras 3's piecewise-linear sigmoid: ``relu6(x + 3) / 6``."""
    return _ref._apply(np.asarray(x), _ref.HARD_SIGMOID)


def exponential(x):
    """``exp(x)``."""
    return np.exp(np.asarray(x))


ALL = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax,
       "elu": elu, "selu": selu, "gelu": gelu, "silu": silu, "softplus": softplus,
       "softsign": softsign, "leaky_relu": leaky_relu, "relu6": relu6,
       "hard_sigmoid": hard_sigmoid, "exponential": exponential}
ALIASES = {"swish": "silu"}


def get(identifier):
    """Resolve an activation: a name (exact, case-sensitive, as Keras), ``None`` (linear) or one
    of this module's functions.

    Returns:
        The activation's name, a key of ``ALL`` (``'swish'`` gives ``'silu'``, as in Keras).

    Raises:
        ValueError: for an unknown name or an unsupported callable.
    """
    if identifier is None:
        return "linear"
    if isinstance(identifier, str) and identifier in ALL:
        return identifier
    if isinstance(identifier, str) and identifier in ALIASES:
        return ALIASES[identifier]
    for name, fn in ALL.items():
        if identifier is fn:
            return name
    raise ValueError(f"Could not interpret activation function identifier: {identifier} "
                     f"(fastdnn supports {sorted(ALL) + sorted(ALIASES)})")
