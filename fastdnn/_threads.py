"""One knob for every thread pool fastdnn uses.

fastdnn parallelises its own work (OpenMP): a large dense layer's kernel rows (or, with few
inputs, its columns) are cut into blocks, and each thread owns the same blocks in the forward
pass, the backward pass and the optimizer step, each product by single-threaded BLAS; large
standalone optimizer updates are split too. A training call's threads meet at fastdnn's own
barrier (``_team.h``: a short spin, then a futex sleep, so that a thread whose partner lost its
core gives its own core back), and run their batches in stretches of a few milliseconds, each
on the whole team or on one thread, whichever ran its latest stretch faster (``_team_size``):
on a shared machine a busy neighbour costs at most one thread's speed, not the team's collapse.
The default thread count respects the CPU affinity, a cgroup's CPU quota and
``OMP_NUM_THREADS``; fastdnn sets no environment variable and no global OpenMP setting.
OpenBLAS's own threads are kept at one while the kernels run, because they hand off badly on the
skinny products of small batches and would fight the kernels' threads for the cores. SciPy
bundles its own OpenBLAS (the one the kernels call), apart from NumPy's; threadpoolctl reaches it
by its library.
"""

import contextlib
import math
import os
import threading

from fastdnn import _kernels

_controller = None
_OPENMP_BINDING = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")

_blas_lock = threading.RLock()  # reentrant: see single_threaded_blas
_blas_limit = None  # the limit in force while _blas_users > 0
_blas_users = 0


def _quota(directory, v2):
    """The CPUs a cgroup directory's own quota allows (a float), or None if it sets none."""
    try:
        if v2:
            with open(os.path.join(directory, "cpu.max")) as f:
                quota, period = f.read().split()[:2]
        else:
            with open(os.path.join(directory, "cpu.cfs_quota_us")) as f:
                quota = f.read().strip()
            with open(os.path.join(directory, "cpu.cfs_period_us")) as f:
                period = f.read().strip()
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _cgroup_cpus(root="/sys/fs/cgroup", membership="/proc/self/cgroup"):
    """The CPU time the process's cgroups allow, in CPUs (e.g. 1.5), or None without a quota.

    Reads cgroup v2's ``cpu.max`` and v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in the
    process's own cgroup, its ancestors, and at the top of the mount (where a container sees its
    own cgroup); the smallest quota wins."""
    try:
        with open(membership) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            tops, v2 = [root, os.path.join(root, "unified")], True
        elif "cpu" in controllers.split(","):
            tops, v2 = [os.path.join(root, controllers), os.path.join(root, "cpu")], False
        else:
            continue
        for top in tops:
            parts = [p for p in path.split("/") if p]
            for depth in range(len(parts), -1, -1):
                found.append(_quota(os.path.join(top, *parts[:depth]), v2))
    found = [q for q in found if q is not None]
    return min(found) if found else None


def _default_threads() -> int:
    """The threads the process may really use: ``OMP_NUM_THREADS`` when set (as OpenMP
    libraries take it), else the fewest of the CPUs the OpenMP runtime counted as it started,
    the CPUs the process may run on now (``os.sched_getaffinity``; skipped when an OpenMP
    binding variable is set, since the runtime then pins the importing thread to one CPU), and
    the CPU quota of its cgroup, rounded up. 1 in a build without OpenMP."""
    threads = _kernels.openmp_default_threads() or 1
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return threads
    if hasattr(os, "sched_getaffinity") and not any(os.environ.get(v) for v in _OPENMP_BINDING):
        threads = min(threads, len(os.sched_getaffinity(0)))
    quota = _cgroup_cpus()
    if quota is not None:
        threads = min(threads, max(1, math.ceil(quota)))
    return threads


@contextlib.contextmanager
def single_threaded_blas():
    """Keep BLAS to one thread inside the block (the kernels bring their own threads).

    Blocks may overlap across threads (fits of several models at once): the first to enter sets
    the limit and the last to leave restores what it found, so the limit outlives no block. A
    block may also open inside another on the same thread, from a signal handler that fits a
    model while Python runs this function's own lines: the lock is reentrant, and the count moves
    before the limit on the way in and after it on the way out, so a block nested at any line
    finds the state consistent (at worst it runs without the limit, never restores another's).
    """
    global _controller, _blas_limit, _blas_users
    with _blas_lock:
        _blas_users += 1
        if _blas_users == 1:
            try:
                if _controller is None:
                    from threadpoolctl import ThreadpoolController

                    _controller = ThreadpoolController()
                _blas_limit = _controller.limit(limits=1, user_api="blas")
            except BaseException:
                _blas_users -= 1
                raise
    try:
        yield
    finally:
        with _blas_lock:
            limit = None
            if _blas_users == 1:
                limit, _blas_limit = _blas_limit, None
            _blas_users -= 1
            if limit is not None:
                limit.restore_original_limits()


_kernels.set_num_threads(_default_threads())
