"""Initializers, as in ``keras.initializers``: the distributions of a layer's starting weights.

An initializer is called as ``init(shape, dtype=None)`` and returns a NumPy array. Keras 3's
distributions are reproduced exactly (bounds, variances, truncation); the random streams are
NumPy's, not Keras'. An initializer given ``seed=n`` returns the same values at every call; one
without a seed draws its seed when it is created, as Keras does, but from fastdnn's own stream
(``fastdnn._random``), so ``keras.utils.set_random_seed`` before building a model makes its weights
repeatable.
"""

import math

import numpy as np

from fastdnn import _naming, _random

__all__ = ["compute_fans", "Initializer", "Constant", "Zeros", "Ones", "RandomInitializer",
           "RandomNormal", "TruncatedNormal", "RandomUniform", "VarianceScaling", "GlorotUniform",
           "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal",
           "Identity", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
           "lecun_uniform", "lecun_normal", "zeros", "ones", "constant", "orthogonal",
           "random_normal", "random_uniform", "truncated_normal", "variance_scaling", "identity",
           "serialize", "deserialize", "get"]

# Standard deviation of a unit normal truncated to [-2, 2]: VarianceScaling divides by it so that
# the truncated draw keeps the variance it asks for.
_TRUNCATED_STDDEV = 0.87962566103423978


def compute_fans(shape):
    """Return ``(fan_in, fan_out)`` of a weight of ``shape``, as Keras computes them.

    Args:
        shape: tuple of ints; for a 2-D kernel ``(fan_in, fan_out)``, for higher ranks the
            leading axes are the receptive field.

    Returns:
        A pair of ints.
    """
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    receptive = int(np.prod(shape[:-2], dtype=np.int64)) if len(shape) > 2 else 1
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def _dtype(dtype):
    return np.dtype("float32" if dtype is None else dtype)


class Initializer:
    """Base class: ``init(shape, dtype=None)`` returns an array of that shape and dtype
    (float32 by default)."""

    def __call__(self, shape, dtype=None):
        raise NotImplementedError

    def get_config(self) -> dict:
        """Return the constructor arguments."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Initializer":
        """Create an initializer from ``get_config()``'s output."""
        return cls(**config)

    def clone(self) -> "Initializer":
        """A new initializer with the same configuration."""
        return type(self).from_config(self.get_config())

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Initializer):
    """Fills with a constant.

    Args:
        value: a number. Defaults to 0.0.
    """

    def __init__(self, value=0.0):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"`value` must be a number. Received: value={value!r}")
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        return np.full(tuple(shape), self.value, _dtype(dtype))

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    """Fills with zeros."""

    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    """Fills with ones."""

    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class RandomInitializer(Initializer):
    """Base class of the random initializers.

    Args:
        seed: an int, or None to draw one from fastdnn's stream now. Defaults to None.
    """

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError("`seed` argument should be an integer or None. Received: "
                             f"seed={seed!r}")
        self._init_seed = None if seed is None else int(seed)
        self.seed = _random.draw_seed() if seed is None else int(seed)

    def _rng(self):
        return np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self._init_seed}


def _truncated_normal(rng, mean, stddev, shape):
    """Normal(mean, stddev) draws, each redrawn until it lies within 2 stddev of the mean."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return mean + stddev * out


class RandomNormal(RandomInitializer):
    """Normal distribution.

    Args:
        mean: Defaults to 0.0.
        stddev: Defaults to 0.05.
        seed: int or None. Defaults to None.
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, dtype=None):
        return self._rng().normal(self.mean, self.stddev, tuple(shape)).astype(_dtype(dtype))

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


class TruncatedNormal(RandomNormal):
    """Normal distribution truncated to two standard deviations around the mean (values
    outside are redrawn).

    Args:
        mean: Defaults to 0.0.
        stddev: of the normal before truncation. Defaults to 0.05.
        seed: int or None. Defaults to None.
    """

    def __call__(self, shape, dtype=None):
        values = _truncated_normal(self._rng(), self.mean, self.stddev, tuple(shape))
        return values.astype(_dtype(dtype))


class RandomUniform(RandomInitializer):
    """Uniform distribution on ``[minval, maxval)``.

    Args:
        minval: Defaults to -0.05.
        maxval: Defaults to 0.05.
        seed: int or None. Defaults to None.
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, dtype=None):
        return self._rng().uniform(self.minval, self.maxval, tuple(shape)).astype(_dtype(dtype))

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class VarianceScaling(RandomInitializer):
    """Draws with variance ``scale / n``, n the fan chosen by ``mode``.

    ``n`` is ``max(1, fan_in)``, ``max(1, fan_out)`` or ``max(1, (fan_in + fan_out) / 2)``. The
    ``'truncated_normal'`` distribution is a normal truncated at two standard deviations, with
    stddev ``sqrt(scale / n) / 0.87962566103423978`` (so the truncated draw has the variance);
    ``'untruncated_normal'`` has stddev ``sqrt(scale / n)``; ``'uniform'`` lies on ``[-L, L]``
    with ``L = sqrt(3 · scale / n)``.

    Args:
        scale: positive float. Defaults to 1.0.
        mode: ``'fan_in'``, ``'fan_out'`` or ``'fan_avg'``. Defaults to ``'fan_in'``.
        distribution: ``'truncated_normal'``, ``'untruncated_normal'`` or ``'uniform'``.
            Defaults to ``'truncated_normal'``.
        seed: int or None. Defaults to None.
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
                or not scale > 0:
            raise ValueError(f"Argument `scale` must be positive float. Received: scale={scale}")
        if mode not in self._MODES:
            raise ValueError(f"Invalid `mode` argument: expected one of {set(self._MODES)}. "
                             f"Received: mode={mode}")
        distribution = distribution.lower() if isinstance(distribution, str) else distribution
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError("Invalid `distribution` argument: expected one of "
                             f"{set(self._DISTRIBUTIONS)}. Received: distribution={distribution}")
        super().__init__(seed)
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale = self.scale / max(1.0, fan)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            values = _truncated_normal(rng, 0.0, math.sqrt(scale) / _TRUNCATED_STDDEV, shape)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(scale), shape)
        else:
            limit = math.sqrt(3.0 * scale)
            values = rng.uniform(-limit, limit, shape)
        return values.astype(_dtype(dtype))

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


class _Preset(VarianceScaling):
    """A VarianceScaling with fixed settings; its config is the seed alone."""

    _SETTINGS = (1.0, "fan_in", "truncated_normal")

    def __init__(self, seed=None):
        super().__init__(*self._SETTINGS, seed=seed)

    def get_config(self):
        return {"seed": self._init_seed}


class GlorotUniform(_Preset):
    """Uniform on ``[-L, L]``, ``L = sqrt(6 / (fan_in + fan_out))``
    (``VarianceScaling(1.0, 'fan_avg', 'uniform')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Truncated normal with stddev ``sqrt(2 / (fan_in + fan_out)) / 0.8796...``
    (``VarianceScaling(1.0, 'fan_avg', 'truncated_normal')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """Uniform on ``[-L, L]``, ``L = sqrt(6 / fan_in)`` (``VarianceScaling(2.0, 'fan_in',
    'uniform')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """Truncated normal with stddev ``sqrt(2 / fan_in) / 0.8796...``
    (``VarianceScaling(2.0, 'fan_in', 'truncated_normal')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """Uniform on ``[-L, L]``, ``L = sqrt(3 / fan_in)`` (``VarianceScaling(1.0, 'fan_in',
    'uniform')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """Truncated normal with stddev ``sqrt(1 / fan_in) / 0.8796...``
    (``VarianceScaling(1.0, 'fan_in', 'truncated_normal')``).

    Args:
        seed: int or None. Defaults to None.
    """

    _SETTINGS = (1.0, "fan_in", "truncated_normal")


class Orthogonal(RandomInitializer):
    """A (semi-)orthogonal matrix times ``gain``: the Q of the QR decomposition of a normal draw,
    signs fixed by R's diagonal. A shape of rank > 2 is flattened to ``(prod(shape[:-1]),
    shape[-1])``.

    Args:
        gain: multiplicative factor. Defaults to 1.0.
        seed: int or None. Defaults to None.
    """

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError("The tensor to initialize must be at least two-dimensional. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        rows, cols = int(np.prod(shape[:-1], dtype=np.int64)), int(shape[-1])
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain, **super().get_config()}


class Identity(Initializer):
    """``gain`` times the identity matrix (2-D shapes only).

    Args:
        gain: Defaults to 1.0.
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) != 2:
            raise ValueError("Identity matrix initializer can only be used for 2D matrices. "
                             f"Received: shape={shape} of rank {len(shape)}.")
        return (self.gain * np.eye(*shape)).astype(_dtype(dtype))

    def get_config(self):
        return {"gain": self.gain}


_CLASSES = (Constant, Zeros, Ones, RandomNormal, TruncatedNormal, RandomUniform, VarianceScaling,
            GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal,
            Orthogonal, Identity)
ALL = {cls.__name__: cls for cls in _CLASSES}
ALL.update({_naming.to_snake_case(cls.__name__): cls for cls in _CLASSES})
ALL.update({"uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros,
            "OrthogonalInitializer": Orthogonal, "IdentityInitializer": Identity})

glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
zeros, ones, constant, orthogonal = Zeros, Ones, Constant, Orthogonal
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling, identity = VarianceScaling, Identity


def serialize(initializer) -> dict:
    """Return Keras' ``{'module', 'class_name', 'config', 'registered_name'}`` for an
    initializer of this module."""
    return {"module": "keras.initializers", "class_name": type(initializer).__name__,
            "config": initializer.get_config(), "registered_name": None}


def deserialize(config) -> Initializer:
    """Create an initializer from ``serialize``'s dict or a name.

    Raises:
        ValueError: for an unknown class or name.
    """
    if isinstance(config, str):
        return get(config)
    if not isinstance(config, dict) or config.get("class_name") not in ALL:
        raise ValueError(f"Could not interpret initializer identifier: {config} (fastdnn knows "
                         f"{sorted(ALL)})")
    return ALL[config["class_name"]].from_config(config.get("config") or {})


def get(identifier):
    """Resolve an initializer: a name (``'he_normal'``, ``'HeNormal'``, ...; a new instance
    with defaults), a ``serialize`` dict, an initializer object (used as is), a class (created
    with defaults) or any callable ``f(shape, dtype=None)``; None gives None.

    Raises:
        ValueError: for anything else, listing the valid names.
    """
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier in ALL:
        return ALL[identifier]()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier) and not isinstance(identifier, (str, type)):
        return identifier
    raise ValueError(f"Could not interpret initializer identifier: {identifier} (valid names: "
                     f"{', '.join(sorted(ALL))})")
