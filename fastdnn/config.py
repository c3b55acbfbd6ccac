"""Global settings, as in ``keras.config``: the default float type, the fuzz factor, threads."""

import numpy as np

from fastdnn import _kernels

__all__ = ["floatx", "set_floatx", "epsilon", "set_epsilon", "simd", "set_num_threads",
           "get_num_threads"]

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
    return _kernels.simd_variant()


def set_num_threads(n: int) -> None:
    """Set how many threads fastdnn's parallel work uses (matrix products, optimizer updates).

    Args:
        n: a positive int. Defaults, at import, to the ``OMP_NUM_THREADS`` environment
            variable when set, else the number of CPUs the process may run on (its CPU
            affinity, and its cgroup's CPU quota rounded up; 1 in a build without OpenMP).

    Raises:
        ValueError: if n is not a positive int.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _kernels.set_num_threads(n)


def get_num_threads() -> int:
    """Return how many threads fastdnn's parallel work uses.

    Returns:
        The positive int last given to ``set_num_threads``, or the default chosen at import.
    """
    return _kernels.get_num_threads()
