"""Where the points of a grid train: in this process, in a local pool of processes, or on a Dask
cluster, through joblib (the engine of scikit-learn's searches, whose ``dask`` backend sends jobs
to a cluster).

Away from this process, each point trains on one fastdnn thread with BLAS held to one thread, and
a process trains one point at a time: fastdnn draws its random numbers from process-wide
generators, so two points seeded alike in one process at once would disturb each other's draws.
fastdnn's results do not depend on the thread count, so a point gives the same numbers anywhere.
"""

import contextlib
import os
import re
import sys
import threading

import fastdnn

IN_PROCESS = "in-process"
SCHEDULERS = (IN_PROCESS, "processes", "dask")
_ADDRESS = re.compile(r"^(tcp|tls)://[^/\s]+:\d+$")
_ONE_AT_A_TIME = threading.Lock()


def check_scheduler(text: str) -> str:
    """Return ``text`` if it names a scheduler (or a Dask scheduler's address).

    Raises:
        ValueError: for anything else.
    """
    if text in SCHEDULERS or _ADDRESS.match(text):
        return text
    raise ValueError(f"must be one of {', '.join(SCHEDULERS)} or a Dask scheduler's address "
                     f"tcp://HOST:PORT, got {text!r}")


def check_installed(scheduler: str) -> None:
    """Raise ImportError, naming the extra to install, when ``scheduler`` lacks its packages."""
    if scheduler == IN_PROCESS:
        return
    needed = ["joblib"] if scheduler == "processes" else ["joblib", "dask", "distributed"]
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            raise ImportError(f"--scheduler {scheduler} needs {', '.join(needed)}: "
                              "pip install 'fastdnn[distributed]'") from None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def on_worker(task, index, *args):
    """Run ``task(*args)`` on one fastdnn thread and one BLAS thread, one task per process at a
    time; return ``(index, result)``."""
    from threadpoolctl import threadpool_limits

    with _ONE_AT_A_TIME, threadpool_limits(limits=1, user_api="blas"):
        threads = fastdnn.get_num_threads()
        fastdnn.set_num_threads(1)
        try:
            return index, task(*args)
        finally:
            fastdnn.set_num_threads(threads)


@contextlib.contextmanager
def scheduler(name: str, say=None):
    """Yield ``run(task, points, *shared)``: an iterator of ``(index, task(*point, *shared))``
    over the points, in the order they finish.

    Args:
        name: ``'in-process'`` (one point after the other, on every fastdnn thread: the points
            finish in order), ``'processes'`` (a local pool of one process per CPU),
            ``'dask'`` (a new ``distributed.LocalCluster`` of one single-threaded worker
            process per CPU, on 127.0.0.1) or a Dask scheduler's address ``tcp://HOST:PORT``.
        say: called with a line of text about the cluster (its address and dashboard).
            Defaults to printing on stderr.
    """
    check_installed(name)
    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    if name == IN_PROCESS:
        yield lambda task, points, *shared: (
            (index, task(*point, *shared)) for index, point in enumerate(points))
        return
    import joblib

    def run(task, points, *shared):
        parallel = joblib.Parallel(n_jobs=-1, batch_size=1, pre_dispatch="all",
                                   return_as="generator_unordered")
        return parallel(joblib.delayed(on_worker)(task, index, *point, *shared)
                        for index, point in enumerate(points))

    if name == "processes":
        with joblib.parallel_config(backend="loky", n_jobs=_cpus()):
            say(f"a pool of {_cpus()} worker processes")
            yield run
        return
    with _dask_client(name) as client:
        workers = client.scheduler_info()["workers"].values()
        say(f"Dask cluster {client.scheduler.address}: {len(workers)} workers, "
            f"{sum(w['nthreads'] for w in workers)} threads, dashboard {client.dashboard_link}")
        with joblib.parallel_config(backend="dask", client=client):
            yield run


@contextlib.contextmanager
def _dask_client(name):
    """A client of a new local cluster (closed on exit) or of the cluster at address ``name``."""
    from distributed import Client, LocalCluster

    if name != "dask":
        with Client(name, timeout=10, set_as_default=False) as client:
            yield client
        return
    with LocalCluster(n_workers=_cpus(), threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address="127.0.0.1:8787") as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client
