"""Global settings, as in ``keras.config``: the default float type and the fuzz factor."""

import numpy as np

_FLOATX = "float32"
_EPSILON = 1e-7


def floatx() -> str:
    """Return the default float type of new models, ``'float32'`` unless changed."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the default float type of models built from now on.

    Args:
        value: ``'float32'`` (the default, and the fastest) or ``'float64'``.

    Raises:
        ValueError: for any other value.
    """
    global _FLOATX
    if value not in ("float32", "float64"):
        raise ValueError(f"Unknown `floatx` value: {value!r}. Expected one of {{'float32', 'float64'}}")
    _FLOATX = value


def epsilon() -> float:
    """Return the fuzz factor used by the optimizers' defaults, 1e-7."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the fuzz factor returned by ``epsilon()``."""
    global _EPSILON
    _EPSILON = float(value)


def _dtype() -> np.dtype:
    return np.dtype(_FLOATX)


def simd() -> str:
    """Return the SIMD variant of fastdnn's kernels in use in this process.

    The variant is chosen once, at import, as the fastest this CPU supports, unless the
    environment variable ``FASTDNN_SIMD`` names one (``baseline``, ``avx2`` or ``avx512``).

    Returns:
        ``'avx512'`` (AVX-512F), ``'avx2'`` (AVX2 and FMA) or ``'baseline'`` (any CPU of the
        architecture: SSE2 on x86-64, and every other architecture).
    """
    from fastdnn import _kernels

    return _kernels.simd_variant()
