"""The chapter's grid (``python -m fastdnn --compare``: sigmoid/relu x six optimizers, 784-100-10,
batch 32) timed where it can train, in one run:

- ``in-process``: the points one after the other in this process, each fit on every fastdnn
  thread (the command's default);
- ``processes``: a local pool of one worker process per CPU (``--scheduler processes``; the pool
  is started by the untimed warm-up round and reused, as joblib does);
- ``dask``: a ``distributed.LocalCluster`` of one single-threaded worker process per CPU on
  127.0.0.1, started before the rounds (``--scheduler tcp://...``); each round sends the data to
  the workers again, as a new ``--compare`` run does.

Elsewhere each point trains on one fastdnn thread, so the ratios say what running grid points
side by side gains over splitting each fit across the threads. One epoch per point, on 40,000
training and 8,000 validation images of the bench data; the rounds of the three roles alternate
(the ``interleaved`` fixture), and the RATIO table prints ``in-process/processes`` and
``in-process/dask``.
"""

import contextlib
import io

import pytest

from fastdnn import __main__ as cli

distributed = pytest.importorskip("distributed")
pytest.importorskip("joblib")

N_TRAIN = 40_000
GROUP = f"grid 12 points 784-100-10 bs32 1 epoch ({N_TRAIN} samples)"


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster of one single-threaded worker process per CPU, on loopback."""
    from fastdnn import _grid

    with distributed.LocalCluster(n_workers=_grid._cpus(), threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local


def test_grid_in_process_vs_processes_vs_dask(benchmark, interleaved, data, cluster):
    x, y, _ = data
    images = x.reshape(-1, 28, 28)
    split = ((images[:N_TRAIN], y[:N_TRAIN]), (images[N_TRAIN:], y[N_TRAIN:]), None)

    def grid(scheduler):
        args = cli.build_parser().parse_args(["--compare", "--epochs", "1",
                                              "--scheduler", scheduler])
        return lambda: _quietly(cli.compare, args, split)

    benchmark.group = GROUP
    benchmark.extra_info["role"] = "in-process"
    interleaved(grid("in-process"), {"processes": grid("processes"),
                                     "dask": grid(cluster.scheduler_address)}, rounds=3)


def _quietly(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args, say=lambda text: None)
