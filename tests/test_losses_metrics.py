"""Losses and metrics: lookup, Keras' reference values, what fit/evaluate report, and how
``'accuracy'`` is resolved.

Expected behaviour: docs/keras-reference.md sections 4 and 5, and section 14.1 (fastdnn computes
cross-entropy after a softmax/sigmoid output exactly from the logits, where Keras clips).
"""

import math
import re

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names, same_weights  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

losses, metrics = keras.losses, keras.metrics


def dense_model(inputs, units, activation, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(6, activation="tanh"),
                             keras.layers.Dense(units, activation=activation)])


def data(n=20, inputs=4, seed=0):
    return np.random.default_rng(seed).normal(size=(n, inputs)).astype(np.float32)


# --- lookup (4.1)


@pytest.mark.parametrize("name, cls", [
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("CategoricalCrossentropy", losses.CategoricalCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy), ("bce", losses.BinaryCrossentropy),
    ("BCE", losses.BinaryCrossentropy), ("BinaryCrossentropy", losses.BinaryCrossentropy),
    ("mean_squared_error", losses.MeanSquaredError), ("mse", losses.MeanSquaredError),
    ("MSE", losses.MeanSquaredError), ("MeanSquaredError", losses.MeanSquaredError),
])
def test_loss_names_resolve_exactly(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls
    assert loss.from_logits is False


@pytest.mark.parametrize("name", ["Mse", "sparse_categorical_CE", "foo", "crossentropy_x"])
def test_unknown_or_miscased_loss_names_are_refused(name):
    with pytest.raises(ValueError, match=re.escape(f"Could not interpret loss identifier: {name}")):
        losses.get(name)


def test_loss_functions_and_objects_resolve():
    assert type(losses.get(losses.sparse_categorical_crossentropy)) is \
        losses.SparseCategoricalCrossentropy
    obj = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj


def test_loss_reduction_is_validated():
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        losses.MeanSquaredError(reduction="average")


# --- Keras' reference values (4.4)


def test_sparse_crossentropy_reference_values():
    probs = [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    per_sample = losses.sparse_categorical_crossentropy([1, 2], probs)
    assert per_sample == pytest.approx([0.0513, 2.3026], abs=1e-4)
    assert losses.SparseCategoricalCrossentropy()([1, 2], probs) == pytest.approx(1.1769,
                                                                                  abs=1e-4)


def test_binary_crossentropy_reference_values():
    per_sample = losses.binary_crossentropy([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
    assert per_sample == pytest.approx([0.9163, 0.7136], abs=1e-4)


def test_mean_squared_error_reference_value():
    assert losses.MeanSquaredError()([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(0.02)


def test_crossentropy_from_probabilities_is_clipped_and_from_logits_is_not():
    logits = np.array([[0.0, 20.0, -20.0]])
    probs = keras.activations.softmax(logits)
    assert losses.sparse_categorical_crossentropy([2], probs)[0] == pytest.approx(16.118095,
                                                                                  rel=1e-6)
    assert losses.sparse_categorical_crossentropy([2], logits, from_logits=True)[0] == \
        pytest.approx(40.0)
    onehot = np.array([[0.0, 0.0, 1.0]])
    logits = np.array([[0.0, 150.0, 0.0]])
    assert losses.categorical_crossentropy(onehot, keras.activations.softmax(logits))[0] == \
        pytest.approx(16.118095, rel=1e-6)
    assert losses.categorical_crossentropy(onehot, logits, from_logits=True)[0] == \
        pytest.approx(150.0)


def test_crossentropy_renormalises_unnormalised_probabilities():
    assert losses.sparse_categorical_crossentropy([0], [[2.0, 2.0]])[0] == \
        pytest.approx(math.log(2), abs=1e-4)


def test_loss_reductions():
    y, p = [1, 0, 1], [[0.9, 0.1, 0.8]]
    assert losses.MeanSquaredError(reduction="sum")([y], p) == pytest.approx(0.02)
    per = losses.SparseCategoricalCrossentropy(reduction="none")([1, 2], [[0.05, 0.95, 0],
                                                                         [0.1, 0.8, 0.1]])
    assert per == pytest.approx([0.0513, 2.3026], abs=1e-4)
    total = losses.SparseCategoricalCrossentropy(reduction="sum")([1, 2], [[0.05, 0.95, 0],
                                                                          [0.1, 0.8, 0.1]])
    assert total == pytest.approx(0.0513 + 2.3026, abs=2e-4)


def test_label_smoothing_of_the_loss_objects():
    cce = losses.CategoricalCrossentropy(label_smoothing=0.2)
    smoothed = np.array([[0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]])
    p = np.array([[0.7, 0.2, 0.1]])
    assert cce([[1, 0, 0]], p) == pytest.approx(float(-(smoothed * np.log(p)).sum()))
    bce = losses.BinaryCrossentropy(label_smoothing=0.2)
    assert bce([[1.0]], [[0.7]]) == pytest.approx(-(0.9 * math.log(0.7) + 0.1 * math.log(0.3)))


# --- what evaluate and fit report, per loss


def _numpy_loss(kind, y, out):
    out = out.astype(np.float64)
    if kind == "sparse":
        return float(np.mean(-np.log(out[np.arange(len(y)), y])))
    if kind == "categorical":
        return float(np.mean(-(y * np.log(out)).sum(axis=1)))
    if kind == "binary":
        return float(np.mean(-(y * np.log(out) + (1 - y) * np.log(1 - out))))
    return float(np.mean((y - out) ** 2))


@pytest.mark.parametrize("loss, kind, units, activation", [
    ("sparse_categorical_crossentropy", "sparse", 3, "softmax"),
    ("categorical_crossentropy", "categorical", 3, "softmax"),
    ("binary_crossentropy", "binary", 2, "sigmoid"),
    ("mse", "mse", 3, None),
    ("mse", "mse", 3, "softmax"),
])
def test_evaluate_reports_the_formula_loss_of_the_predictions(loss, kind, units, activation):
    x = data()
    rng = np.random.default_rng(1)
    y = {"sparse": rng.integers(0, 3, 20),
         "categorical": np.eye(3)[rng.integers(0, 3, 20)],
         "binary": rng.integers(0, 2, (20, 2)).astype(float),
         "mse": rng.normal(size=(20, 3))}[kind]
    model = dense_model(4, units, activation)
    model.compile("sgd", loss)
    expected = _numpy_loss(kind, y, model.predict(x, verbose=0))
    assert model.evaluate(x, y, batch_size=6, verbose=0) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss, y", [
    (losses.SparseCategoricalCrossentropy(from_logits=True), np.arange(20) % 3),
    (losses.CategoricalCrossentropy(from_logits=True), np.eye(3)[np.arange(20) % 3]),
])
def test_from_logits_losses_take_log_softmax_of_a_linear_output(loss, y):
    x = data()
    model = dense_model(4, 3, None)
    model.compile("sgd", loss, metrics=["accuracy"])
    logits = model.predict(x, verbose=0).astype(np.float64)
    log_p = logits - logits.max(1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(1, keepdims=True))
    labels = y if y.ndim == 1 else y.argmax(1)
    expected_loss = float(np.mean(-log_p[np.arange(20), labels]))
    loss_value, acc = model.evaluate(x, y, verbose=0)
    assert loss_value == pytest.approx(expected_loss, rel=1e-5)
    assert acc == pytest.approx(np.mean(logits.argmax(1) == labels))


def test_binary_crossentropy_from_logits():
    x = data()
    y = (np.arange(20) % 2).astype(float).reshape(20, 1)
    model = dense_model(4, 1, None)
    model.compile("sgd", losses.BinaryCrossentropy(from_logits=True))
    z = model.predict(x, verbose=0).astype(np.float64)
    expected = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_softmax_cross_entropy_is_exact_where_keras_clips():
    # fastdnn (14.1): a softmax output with sparse cross-entropy is computed from the logits.
    # Logits [0, 20, -20] with label 2 give 40.0 where Keras' clipped probabilities give 16.118.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3, activation="softmax")])
    model.set_weights([np.array([[0.0, 20.0, -20.0]]), np.zeros(3)])
    model.compile("sgd", "sparse_categorical_crossentropy")
    loss = model.evaluate(np.ones((1, 1)), [2], verbose=0)
    assert loss == pytest.approx(40.0, rel=1e-5)


def test_sigmoid_binary_cross_entropy_is_exact_where_keras_clips():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.array([[30.0]]), np.zeros(1)])
    model.compile("sgd", "binary_crossentropy")
    # -log(sigmoid(-30)) = 30 + log1p(exp(-30)); Keras' clip would give 16.118
    assert model.evaluate(np.ones((1, 1)), [0.0], verbose=0) == pytest.approx(30.0, rel=1e-5)


def test_crossentropy_without_the_matching_output_activation_is_refused():
    model = dense_model(4, 3, None)
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = model.get_weights()
    with pytest.raises(ValueError, match="expects a final softmax activation"):
        model.fit(data(), np.arange(20) % 3, verbose=0)
    assert same_weights(model.get_weights(), before)


def test_categorical_crossentropy_refuses_targets_of_another_shape():
    model = dense_model(4, 3, "softmax")
    model.compile("sgd", "categorical_crossentropy")
    with pytest.raises(ValueError, match="must have the same shape"):
        model.fit(data(), np.arange(20) % 3 + 0.0, verbose=0)


def test_label_smoothing_applies_in_evaluate():
    x = data()
    y = np.eye(3)[np.arange(20) % 3]
    model = dense_model(4, 3, "softmax")
    model.compile("sgd", losses.CategoricalCrossentropy(label_smoothing=0.3))
    p = model.predict(x, verbose=0).astype(np.float64)
    smoothed = y * 0.7 + 0.1
    expected = float(np.mean(-(smoothed * np.log(p)).sum(axis=1)))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)


# --- 'accuracy' resolution (5.1)


@pytest.mark.parametrize("case", ["sparse (N,)", "sparse (N,1)", "categorical", "mse one-hot"])
def test_accuracy_for_multi_unit_outputs(case):
    x = data(30)
    labels = np.arange(30) % 3
    loss, y = {
        "sparse (N,)": ("sparse_categorical_crossentropy", labels),
        "sparse (N,1)": ("sparse_categorical_crossentropy", labels.reshape(30, 1)),
        "categorical": ("categorical_crossentropy", np.eye(3)[labels]),
        "mse one-hot": ("mse", np.eye(3)[labels]),
    }[case]
    model = dense_model(4, 3, "softmax")
    model.compile(keras.optimizers.SGD(learning_rate=0.0), loss, metrics=["accuracy"])
    p = model.predict(x, verbose=0)
    expected = float(np.mean(p.argmax(1) == labels))
    result = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(result) == ["accuracy", "loss"]
    assert result["accuracy"] == pytest.approx(expected)
    history = model.fit(x, y, batch_size=7, verbose=0)
    assert history.history["accuracy"] == [pytest.approx(expected)]


@pytest.mark.parametrize("loss, activation, shape", [
    ("binary_crossentropy", "sigmoid", (30,)), ("binary_crossentropy", "sigmoid", (30, 1)),
    ("mse", None, (30,)), ("mse", "sigmoid", (30, 1)),
])
def test_accuracy_for_a_one_unit_output_is_binary(loss, activation, shape):
    x = data(30)
    y = (np.arange(30) % 2).astype(float)
    model = dense_model(4, 1, activation)
    model.compile(keras.optimizers.SGD(learning_rate=0.0), loss, metrics=["accuracy"])
    p = model.predict(x, verbose=0)[:, 0]
    expected = float(np.mean((p > 0.5) == y))
    assert model.evaluate(x, y.reshape(shape), verbose=0)[1] == pytest.approx(expected)


def test_accuracy_with_two_sigmoid_outputs_is_categorical_as_in_keras():
    # Rule 3 of 5.1: the output has 2 units and the targets its shape, so 'accuracy' compares
    # argmaxes, even under binary cross-entropy.
    x = data(30)
    y = np.random.default_rng(3).integers(0, 2, (30, 2)).astype(float)
    model = dense_model(4, 2, "sigmoid")
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "binary_crossentropy",
                  metrics=["accuracy"])
    p = model.predict(x, verbose=0)
    categorical = float(np.mean(p.argmax(1) == y.argmax(1)))
    binary = float(np.mean((p > 0.5) == y))
    assert categorical != pytest.approx(binary)
    assert model.evaluate(x, y, verbose=0)[1] == pytest.approx(categorical)


def test_binary_accuracy_threshold_is_strictly_greater_than_one_half():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.zeros((2, 1)), np.zeros(1)])
    model.compile("sgd", "binary_crossentropy", metrics=["accuracy"])
    x = np.ones((4, 2))
    assert model.predict(x, verbose=0)[:, 0] == pytest.approx(0.5)
    assert model.evaluate(x, np.zeros(4), verbose=0)[1] == 1.0
    assert model.evaluate(x, np.ones(4), verbose=0)[1] == 0.0


def test_argmax_ties_go_to_the_first_class():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.set_weights([np.zeros((2, 3)), np.zeros(3)])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.ones((6, 2))
    assert model.evaluate(x, [0, 1, 2, 0, 0, 1], verbose=0)[1] == pytest.approx(0.5)


def test_categorical_accuracy_ties_go_to_the_first_class():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.set_weights([np.zeros((2, 3)), np.zeros(3)])
    model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    y = np.eye(3)[[0, 0, 2, 0, 1, 1]]
    assert model.evaluate(np.ones((6, 2)), y, verbose=0)[1] == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["acc", "Accuracy", "ACC"])
def test_accuracy_keeps_the_name_it_was_given(name):
    model = dense_model(4, 3, "softmax")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=[name])
    history = model.fit(data(), np.arange(20) % 3, verbose=0, validation_split=0.25)
    assert sorted(history.history) == sorted([name, "loss", "val_" + name, "val_loss"])
    assert list(model.evaluate(data(), np.arange(20) % 3, verbose=0, return_dict=True)) == \
        sorted([name, "loss"])


@pytest.mark.parametrize("name, loss, y", [
    ("sparse_categorical_accuracy", "sparse_categorical_crossentropy", np.arange(20) % 3),
    ("categorical_accuracy", "categorical_crossentropy", np.eye(3)[np.arange(20) % 3]),
])
def test_explicit_accuracy_names(name, loss, y):
    model = dense_model(4, 3, "softmax")
    model.compile(keras.optimizers.SGD(learning_rate=0.0), loss, metrics=[name])
    expected = float(np.mean(model.predict(data(), verbose=0).argmax(1) == np.arange(20) % 3))
    assert model.evaluate(data(), y, verbose=0, return_dict=True) == {
        name: pytest.approx(expected), "loss": pytest.approx(model.evaluate(data(), y,
                                                                            verbose=0)[0])}


def test_binary_accuracy_by_name():
    model = dense_model(4, 2, "sigmoid")
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "binary_crossentropy",
                  metrics=["binary_accuracy"])
    y = np.random.default_rng(0).integers(0, 2, (20, 2)).astype(float)
    p = model.predict(data(), verbose=0)
    expected = float(np.mean((p > 0.5) == y))
    assert model.evaluate(data(), y, verbose=0)[1] == pytest.approx(expected)


def test_binary_accuracy_thresholds_the_probabilities_of_a_softmax_fused_into_the_loss():
    # the kernels fold the softmax into the cross-entropy and keep logits: the metric must see
    # the probabilities, as Keras' does
    model = dense_model(4, 3, "softmax")
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "categorical_crossentropy",
                  metrics=["binary_accuracy"])
    w1, b1, w2, b2 = model.get_weights()
    model.set_weights([w1, b1, w2 * 4, b2 + 1])
    y = np.eye(3)[np.arange(20) % 3]
    logits = np.tanh(data() @ w1 + b1) @ (w2 * 4) + (b2 + 1)
    p = model.predict(data(), verbose=0)
    expected = float(np.mean((p > 0.5) == y))
    assert expected != pytest.approx(float(np.mean((logits > 0.5) == y)))
    assert model.evaluate(data(), y, verbose=0)[1] == pytest.approx(expected)
    history = model.fit(data(), y, batch_size=20, verbose=0)
    assert history.history["binary_accuracy"][0] == pytest.approx(expected)


@pytest.mark.parametrize("value", ["accuracy", {"accuracy"}, "acc"])
def test_metrics_must_be_a_list_or_tuple(value):
    model = dense_model(4, 3, "softmax")
    with pytest.raises(ValueError, match="Expected `metrics` argument to be a list, tuple, or "
                                         "dict"):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=value)


def test_metrics_as_a_tuple_work():
    model = dense_model(4, 3, "softmax")
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=("accuracy",))
    assert len(model.evaluate(data(), np.arange(20) % 3, verbose=0)) == 2


@pytest.mark.parametrize("name", ["foo", "crossentropy", "MAE"])
def test_unknown_metrics_are_refused(name):
    model = dense_model(4, 3, "softmax")
    with pytest.raises(ValueError, match=re.escape(f"Could not interpret metric identifier: "
                                                   f"{name}")):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=[name])


# --- metric functions (5.2)


def test_metric_functions():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    assert np.array_equal(metrics.sparse_categorical_accuracy([1, 1, 2], p), [1, 0, 1])
    assert np.array_equal(metrics.categorical_accuracy(np.eye(3)[[1, 0, 0]], p), [1, 1, 0])
    assert np.array_equal(metrics.binary_accuracy([[1, 0], [0, 0]], [[0.6, 0.5], [0.5, 0.51]]),
                          [1.0, 0.5])
