"""One knob for every thread pool fastdnn uses: its own OpenMP loops and BLAS.

SciPy bundles its own OpenBLAS (the one the kernels call through ``scipy.linalg.cython_blas``),
apart from NumPy's; threadpoolctl reaches both pools by their shared library.

Measured on a 2-core machine (see the speed issue's notes): a second BLAS thread makes the small
products of a 784-100-10 network at batch 32 several times *slower* (thread hand-off costs more
than the product), while it speeds the 784-1024-1024-10 network up 1.6x. So unless the user sets
a number, each ``fit``/``evaluate``/``predict`` picks one BLAS thread for small per-batch products
and all cores for large ones.
"""

import contextlib
import os

from fastdnn import _kernels

# Per-batch multiply-adds below which one BLAS thread beats several.
_SMALL_PRODUCTS = 10_000_000

_requested = None
_controller = None


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for BLAS (NumPy's and SciPy's) and the kernels' parallel loops,
    instead of fastdnn's per-model choice.

    Args:
        n: a positive int.

    Raises:
        ValueError: if n is not a positive int.
    """
    global _requested
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _requested = n
    _kernels.set_num_threads(n)


def get_num_threads() -> int:
    """Return the number of threads set by ``set_num_threads`` (default: the available cores)."""
    return _requested or _available_cores()


def threads_for(multiply_adds: int) -> int:
    """BLAS threads for batches of ``multiply_adds`` (see the module doc)."""
    if _requested is not None:
        return _requested
    return 1 if multiply_adds < _SMALL_PRODUCTS else _available_cores()


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit BLAS to ``n`` threads inside the block."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    with _controller.limit(limits=n, user_api="blas"):
        yield
