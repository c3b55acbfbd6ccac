"""Metrics as Keras names and computes them, several per model, in the kernels' pass.

Expected values come from real Keras 3 (``tests/fixtures/keras/make_fixtures.py``: each case a
one-layer model with fixed weights, Keras' ``evaluate(return_dict=True)`` and its history keys)
and from formulas written out here in NumPy, independent of the kernels.
"""

import math
import os
import re

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

EXPECTED = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "keras", "expected.npz"))
M = keras.metrics

# The cases of make_fixtures.metric_cases(), as fastdnn spells them.
CASES = {
    "sparse": ("softmax", "sparse_categorical_crossentropy",
               lambda: ["accuracy", M.SparseCategoricalAccuracy(),
                        M.SparseTopKCategoricalAccuracy(k=2)]),
    "one_hot": ("softmax", "categorical_crossentropy",
                lambda: ["acc", M.CategoricalAccuracy(), "mae", "mse", M.RootMeanSquaredError(),
                         M.Precision(), M.Recall()]),
    "binary": ("sigmoid", "binary_crossentropy",
               lambda: ["accuracy", M.BinaryAccuracy(), M.Precision(), M.Recall(), "mae"]),
    "multi_label": ("sigmoid", "binary_crossentropy",
                    lambda: ["accuracy", M.Precision(), M.Recall()]),
    "regression": (None, "mse",
                   lambda: ["mae", "mse", "RootMeanSquaredError", M.MeanAbsoluteError(),
                            "mean_squared_error"]),
}


def keras_case(case, engine="fastdnn"):
    activation, loss, metrics = CASES[case]
    x, y = EXPECTED[f"metrics/{case}/x"], EXPECTED[f"metrics/{case}/y"]
    weights = [EXPECTED[f"metrics/{case}/w{i}"] for i in range(2)]
    model = keras.Sequential([keras.Input((5,)),
                              keras.layers.Dense(weights[1].shape[0], activation=activation)])
    model.set_weights(weights)
    model.compile("sgd", loss, metrics=metrics(), engine=engine)
    return model, x, y


def keras_values(case):
    prefix = f"metrics/{case}/value/"
    # Keras numbers the names of Precision/Recall objects made earlier in its process
    return {re.sub(r"_\d+$", "", k[len(prefix):]): float(EXPECTED[k])
            for k in EXPECTED.files if k.startswith(prefix)}


@pytest.mark.parametrize("engine", ["fastdnn", "numpy"])
@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_gives_keras_metric_values(case, engine):
    model, x, y = keras_case(case, engine)
    got = model.evaluate(x, y, verbose=0, return_dict=True)
    expected = keras_values(case)
    assert list(got) == sorted(expected)
    for key, value in expected.items():
        # the loss differs by Keras' clipping of probabilities; the metrics are exact counts
        # or float32 means
        assert got[key] == pytest.approx(value, rel=1e-5 if key != "loss" else 1e-3), key


@pytest.mark.parametrize("case", list(CASES))
def test_history_has_keras_keys(case):
    model, x, y = keras_case(case)
    history = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    keys = [re.sub(r"_\d+$", "", k) for k in EXPECTED[f"metrics/{case}/history_keys"]]
    assert list(history.history) == keys


def test_evaluate_returns_loss_then_metrics_in_compile_order():
    model, x, y = keras_case("regression")
    result = model.evaluate(x, y, verbose=0)
    assert model.metrics_names == ["loss", "mae", "mse", "RootMeanSquaredError",
                                   "mean_absolute_error", "mean_squared_error"]
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert result == [as_dict[name] for name in model.metrics_names]


def test_precision_and_recall_objects_are_numbered_as_in_keras():
    assert [M.Precision().name, M.Precision().name, M.Recall().name] == [
        "precision", "precision_1", "recall"]
    assert M.Precision(name="p").name == "p"


# --- values against formulas written out here


def predictions(model, x):
    return model.predict(x, verbose=0).astype(np.float64)


def test_regression_metrics_match_their_formulas():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(70, 3)), rng.normal(size=(70, 2))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse", metrics=[M.MeanAbsoluteError(), M.MeanSquaredError(),
                                         M.RootMeanSquaredError()])
    got = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    d = y - predictions(model, x)
    assert got["mean_absolute_error"] == pytest.approx(np.abs(d).mean(), rel=1e-5)
    assert got["mean_squared_error"] == pytest.approx((d ** 2).mean(), rel=1e-5)
    assert got["root_mean_squared_error"] == pytest.approx(math.sqrt((d ** 2).mean()), rel=1e-5)


def test_top_k_precision_and_recall_match_their_formulas():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    labels = rng.integers(0, 5, 90)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy",
                  metrics=[M.SparseTopKCategoricalAccuracy(k=3)])
    p = predictions(model, x)
    rank = (p > p[np.arange(90), labels][:, None]).sum(axis=1)
    assert model.evaluate(x, labels, verbose=0)[1] == pytest.approx((rank < 3).mean())

    targets = rng.integers(0, 2, (90, 3)).astype(float)
    multi = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    multi.compile("sgd", "binary_crossentropy", metrics=[M.Precision(), M.Recall()])
    got = multi.evaluate(x, targets, batch_size=7, verbose=0, return_dict=True)
    predicted, actual = predictions(multi, x) > 0.5, targets > 0.5
    assert got["precision"] == pytest.approx((predicted & actual).sum() / predicted.sum())
    assert got["recall"] == pytest.approx((predicted & actual).sum() / actual.sum())


def test_training_metrics_are_the_running_means_of_each_batch_before_its_update():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(10, 1))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.0), "mse", metrics=["mae", "RootMeanSquaredError"])
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    d = y - predictions(model, x)  # a zero learning rate: the same weights for every batch
    assert history.history["mae"][0] == pytest.approx(np.abs(d).mean(), rel=1e-5)
    assert history.history["RootMeanSquaredError"][0] == pytest.approx(
        math.sqrt((d ** 2).mean()), rel=1e-5)


def test_progress_bar_shows_every_metric(capsys):
    model, x, y = keras_case("regression")
    model.fit(x, y, epochs=1, verbose=2, validation_split=0.25)
    line = capsys.readouterr().out.splitlines()[-1]
    for key in ("loss", "mae", "RootMeanSquaredError", "val_mean_absolute_error"):
        assert f" - {key}: " in line


def test_metrics_survive_save_and_load(tmp_path):
    model, x, y = keras_case("one_hot")
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    for name in ("m.keras", "m.fastdnn"):
        model.save(tmp_path / name)
        loaded = keras.models.load_model(tmp_path / name)
        assert loaded.metrics_names == model.metrics_names
        assert loaded.evaluate(x, y, verbose=0, return_dict=True) == before


@pytest.mark.parametrize("metrics, loss, y, message", [
    (["mae"], "sparse_categorical_crossentropy", np.arange(6) % 3, "needs targets shaped"),
    ([M.SparseTopKCategoricalAccuracy()], "categorical_crossentropy",
     np.eye(3)[np.arange(6) % 3], "needs integer labels"),
])
def test_a_metric_that_cannot_read_the_targets_is_refused(metrics, loss, y, message):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("sgd", loss, metrics=metrics)
    with pytest.raises(ValueError, match=message):
        model.fit(np.ones((6, 2)), y, verbose=0)


@pytest.mark.parametrize("metrics, message", [
    (lambda: ["mae", "mae"], "distinct names"),
    (lambda: [M.Precision(thresholds=0.3)], "defaults only"),
    (lambda: {"out": "mae"}, "Expected `metrics` argument to be a list"),
])
def test_bad_metric_lists_are_refused(metrics, message):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises((ValueError, NotImplementedError), match=message):
        model.compile("sgd", "mse", metrics=metrics())
