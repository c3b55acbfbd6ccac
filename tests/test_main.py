"""The command line, ``python -m fastdnn``: options, the --compare table, --plot, --save, errors.

In-process tests replace the loader with a small synthetic Fashion-MNIST; one test runs the real
command on the real data when Debian's package is installed.
"""

import os
import subprocess
import sys

import pytest

import fastdnn
from fastdnn import __main__ as cli

from _helpers import tiny_fashion_mnist

REAL_DATA = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def small_data(monkeypatch):
    """500 training and 100 test 28x28 uint8 images whose class is two bright rows."""
    data = tiny_fashion_mnist(500, 100)
    monkeypatch.setattr(fastdnn.datasets.fashion_mnist, "load_data", lambda path=None: data)
    return data


def run(capsys, *argv):
    status = cli.main(list(argv))
    return status, capsys.readouterr().out


def test_default_run_prints_summary_progress_and_accuracies(small_data, capsys):
    status, out = run(capsys, "--epochs", "2")
    assert status == 0
    assert 'Model: "fashion_mnist"' in out
    assert "│ dense (Dense)" in out or "(Dense)" in out
    assert "Epoch 2/2" in out
    assert "13/13 ━━━━━━━━━━━━━━━━━━━━" in out  # 400 training images in batches of 32
    assert "val_accuracy:" in out
    lines = {line.split(":")[0]: line for line in out.splitlines() if ":" in line}
    assert float(lines["validation accuracy"].split()[-1]) > 0.5
    assert lines["test accuracy"].startswith("test accuracy: ")
    assert "wall time:" in out


@pytest.mark.parametrize("argv", [["--activation", "sigmoid", "--optimizer", "rmsprop"],
                                  ["--hidden", "20", "--hidden", "10", "--dropout", "0.2"],
                                  ["--optimizer", "nesterov", "--batch-size", "64"],
                                  ["--engine", "numpy", "--activation", "tanh"]])
def test_options_train_the_requested_network(small_data, capsys, argv):
    status, out = run(capsys, "--epochs", "1", *argv)
    assert status == 0
    assert "validation accuracy:" in out
    if "--hidden" in argv:
        assert "(None, 20)" in out and "(None, 10)" in out and "(Dropout)" in out


def test_the_same_seed_gives_the_same_run(small_data, capsys):
    first = run(capsys, "--epochs", "1", "--seed", "7")[1]
    second = run(capsys, "--epochs", "1", "--seed", "7")[1]
    strip = [line for line in first.splitlines() if "accuracy" in line and "step" not in line]
    assert strip == [line for line in second.splitlines()
                     if "accuracy" in line and "step" not in line]


def test_compare_prints_one_row_per_activation_and_optimizer(small_data, capsys):
    status, out = run(capsys, "--compare", "--epochs", "1")
    assert status == 0
    rows = [line.split() for line in out.splitlines()[1:] if line.split()[:1] in
            (["sigmoid"], ["relu"])]
    assert [(r[0], r[1]) for r in rows] == [(a, o) for a in ("sigmoid", "relu")
                                             for o in cli.OPTIMIZERS]
    for row in rows:
        train_acc, val_acc, val_loss, seconds = map(float, row[2:])
        assert 0 <= train_acc <= 1 and 0 <= val_acc <= 1 and val_loss > 0 and seconds > 0


def test_save_writes_a_loadable_model(small_data, capsys, tmp_path):
    path = tmp_path / "m.fastdnn"
    status, out = run(capsys, "--epochs", "1", "--save", str(path))
    assert status == 0 and f"saved the model to {path}" in out
    model = fastdnn.models.load_model(path)
    assert model.predict(small_data[1][0][:3] / 255, verbose=0).shape == (3, 10)


def test_plot_writes_a_png(small_data, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "history.png"
    status, out = run(capsys, "--epochs", "2", "--plot", str(path))
    assert status == 0 and f"wrote the curves to {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # two panels with curves, not an empty canvas


def test_plot_without_matplotlib_is_a_usage_error(small_data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--plot", "x.png"])
    assert exit_info.value.code == 2
    assert "--plot needs matplotlib: pip install 'fastdnn[plot]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--optimizer", "foo"], "invalid choice: 'foo'"),
    (["--activation", "ReLU"], "invalid choice: 'ReLU'"),
    (["--epochs", "0"], "must be positive"),
    (["--batch-size", "-3"], "must be positive"),
    (["--hidden", "x"], "invalid"),
    (["--dropout", "1.5"], "must lie in [0, 1)"),
    (["--save", "model.keras"], "--save needs a path ending in .fastdnn"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_arguments_get_a_usage_error_not_a_traceback(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("usage: fastdnn")
    assert message in err
    assert "Traceback" not in err


def test_missing_data_is_reported_without_a_traceback(capsys, monkeypatch):
    def nowhere(path=None):
        raise fastdnn.datasets.DatasetError("Fashion-MNIST was not found (looked in ...)")
    monkeypatch.setattr(fastdnn.datasets.fashion_mnist, "load_data", nowhere)
    assert cli.main([]) == 1
    assert "fastdnn: Fashion-MNIST was not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(REAL_DATA),
                    reason=f"real Fashion-MNIST not installed ({REAL_DATA}; "
                           "apt-get install dataset-fashion-mnist)")
def test_the_main_job_trains_on_the_real_fashion_mnist():
    result = subprocess.run([sys.executable, "-m", "fastdnn", "--epochs", "1"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1500/1500" in result.stdout  # 48,000 training images, batch 32
    accuracy = float(result.stdout.split("validation accuracy:")[1].split()[0])
    assert accuracy > 0.8
