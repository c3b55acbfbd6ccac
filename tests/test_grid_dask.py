"""Grids beyond this process: ``python -m fastdnn --compare --scheduler ...`` and a GridSearchCV
through joblib's ``dask`` backend, on a real ``distributed.LocalCluster`` (two single-threaded
worker processes on 127.0.0.1, started and closed here), must give the in-process numbers
exactly; the local process pool too."""

import random
import sys

import numpy as np
import pytest

import fastdnn
from fastdnn import __main__ as cli

from _helpers import tiny_fashion_mnist

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")

from sklearn.datasets import make_classification  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastdnn.wrappers import SKLearnClassifier  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of two worker processes, one thread each, on loopback; its client is the
    default one (the one joblib's dask backend uses)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local, \
            distributed.Client(local) as client:
        yield client


@pytest.fixture(scope="module")
def split():
    """The chapter's split of a tiny Fashion-MNIST look-alike: 200 training, 50 validation
    images."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fastdnn.datasets.fashion_mnist, "load_data",
                      lambda path=None: tiny_fashion_mnist(250, 10))
        return cli.load_split(None, 42)


def grid(split, scheduler):
    """The compare grid's results (histories and all) and its progress lines."""
    args = cli.build_parser().parse_args(["--compare", "--epochs", "2",
                                          "--scheduler", scheduler])
    lines = []
    results = cli.compare(args, split, say=lines.append)
    return results, lines


def table_rows(out):
    """The table's rows without the s/epoch column (a time, not a result)."""
    return [line.rsplit(maxsplit=1)[0] for line in out.splitlines()
            if line.split()[:1] in (["sigmoid"], ["relu"])]


@pytest.fixture(scope="module")
def in_process(split):
    """The grid's results in this process, and its table's rows (printed as the points
    finish)."""
    with pytest.MonkeyPatch.context() as patch:
        out = []
        patch.setattr("builtins.print", lambda *a, **k: out.append(" ".join(map(str, a))))
        results, lines = grid(split, "in-process")
    assert lines == []  # no progress lines: the table's rows are the progress
    return results, table_rows("\n".join(out))


def test_compare_on_a_dask_cluster_gives_the_in_process_results(split, in_process, cluster,
                                                                capsys):
    local, local_rows = in_process
    remote, lines = grid(split, cluster.scheduler.address)
    remote_rows = table_rows(capsys.readouterr().out)
    assert [r["history"] for r in remote] == [r["history"] for r in local]
    assert remote_rows == local_rows and len(remote_rows) == 12
    assert lines[0].startswith(f"Dask cluster {cluster.scheduler.address}: 2 workers, 2 threads")
    progress = lines[1:]
    assert len(progress) == 12 and progress[-1].startswith("[12/12]")
    assert sorted(line.split("]")[1].split(":")[0].strip() for line in progress) == \
        sorted(f"{a} {o}" for a, o in fastdnn._chapter.GRID)


def test_compare_in_a_process_pool_gives_the_in_process_results(split, in_process):
    pooled, lines = grid(split, "processes")
    assert [r["history"] for r in pooled] == [r["history"] for r in in_process[0]]
    assert lines[0].startswith("a pool of ") and len(lines) == 13


def test_a_seeded_build_ignores_other_draws_from_pythons_random():
    def weights(draw_between):
        fastdnn.utils.set_random_seed(3)
        if draw_between:
            random.sample(range(100), 10)  # as a Dask worker's event loop does, sizing data
        model = fastdnn.Sequential([fastdnn.Input((6,)), fastdnn.layers.Dense(4)])
        return model.get_weights()[0]

    np.testing.assert_array_equal(weights(True), weights(False))


def test_each_worker_trains_on_one_fastdnn_thread(cluster):
    from fastdnn import _grid

    index, threads = cluster.submit(_grid.on_worker, fastdnn.get_num_threads, 7).result()
    assert (index, threads) == (7, 1)


def build(X, y, units=8):
    model = fastdnn.Sequential([fastdnn.Input(X.shape[1:]),
                                fastdnn.layers.Dense(units, activation="relu"),
                                fastdnn.layers.Dense(y.shape[1], activation="softmax")])
    model.compile("adam", "categorical_crossentropy")
    return model


def test_grid_search_through_joblibs_dask_backend_gives_the_in_process_results(cluster):
    x, y = make_classification(n_samples=240, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    estimator = SKLearnClassifier(build, fit_kwargs={"epochs": 3, "verbose": 0}, random_state=0)
    space = {"model_kwargs": [{"units": 4}, {"units": 8}, {"units": 16}]}
    local = GridSearchCV(estimator, space, cv=3).fit(x, y)
    with joblib.parallel_backend("dask"):
        remote = GridSearchCV(estimator, space, cv=3, n_jobs=-1).fit(x, y)
    for key in ("split0_test_score", "split1_test_score", "split2_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.best_estimator_.model_.params,
                                  local.best_estimator_.model_.params)


def test_compare_plot_draws_the_grids_curves(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(fastdnn.datasets.fashion_mnist, "load_data",
                        lambda path=None: tiny_fashion_mnist(250, 10))
    path = tmp_path / "grid.png"
    threads = fastdnn.get_num_threads()
    fastdnn.set_num_threads(1)  # tiny fits: one thread is quicker, and the numbers are the same
    try:
        status = cli.main(["--compare", "--epochs", "2", "--plot", str(path)])
    finally:
        fastdnn.set_num_threads(threads)
    assert status == 0
    assert f"wrote the grid's validation curves to {path}" in capsys.readouterr().out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000  # twelve curves in two panels, not an empty canvas


@pytest.mark.parametrize("argv,message", [
    (["--compare", "--scheduler", "threads"], "must be one of in-process, processes, dask"),
    (["--compare", "--scheduler", "http://127.0.0.1:8786"], "tcp://HOST:PORT"),
    (["--scheduler", "dask"], "--scheduler applies to --compare"),
])
def test_a_wrong_scheduler_is_a_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_without_distributed_the_usage_error_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--compare", "--scheduler", "dask"])
    assert exit_info.value.code == 2
    assert "pip install 'fastdnn[distributed]'" in capsys.readouterr().err
