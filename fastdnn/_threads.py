"""One knob for every thread pool fastdnn uses.

fastdnn parallelises its own work (OpenMP): a large dense layer's kernel rows (or, with few
inputs, its columns) are cut into blocks, and each thread owns the same blocks in the forward
pass, the backward pass and the optimizer step, each product by single-threaded BLAS; large
standalone optimizer updates are split too.
OpenBLAS's own threads are kept at one while the kernels run, because they hand off badly on the
skinny products of small batches (measured on 2 cores: 32x784x100 ten times slower with 2 BLAS
threads than with 1) and would fight the kernels' threads for the cores. SciPy bundles its own
OpenBLAS (the one the kernels call), apart from NumPy's; threadpoolctl reaches it by its library.
"""

import contextlib
import threading

from fastdnn import _kernels

_controller = None
_blas_lock = threading.Lock()
_blas_limit = None  # the limit in force while _blas_users > 0
_blas_users = 0


def _default_threads() -> int:
    """OpenMP's default, as OpenMP libraries take it: ``OMP_NUM_THREADS`` when set, else the CPUs
    the process could run on, counted by the OpenMP runtime as it started (the importing thread's
    own affinity may show fewer: with ``OMP_PROC_BIND`` set, the runtime pins it to one CPU).
    1 in a build without OpenMP, whose loops run on the calling thread."""
    return _kernels.openmp_default_threads() or 1


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for fastdnn's parallel work (matrix products and optimizer updates).

    Args:
        n: a positive int. Defaults, at import, to OpenMP's default: the ``OMP_NUM_THREADS``
            environment variable when set, else the number of CPUs the process may run on (1 in
            a build without OpenMP).

    Raises:
        ValueError: if n is not a positive int.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    _kernels.set_num_threads(n)


def get_num_threads() -> int:
    """Return the number of threads fastdnn's parallel work uses."""
    return _kernels.get_num_threads()


@contextlib.contextmanager
def single_threaded_blas():
    """Keep BLAS to one thread inside the block (the kernels bring their own threads).

    Blocks may overlap across threads (fits of several models at once): the first to enter sets
    the limit and the last to leave restores what it found, so the limit outlives no block.
    """
    global _controller, _blas_limit, _blas_users
    with _blas_lock:
        if _blas_users == 0:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _blas_limit = _controller.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None


_kernels.set_num_threads(_default_threads())
