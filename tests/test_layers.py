"""Layers and activations: constructors, validation, shapes, parameters, what they compute.

Expected behaviour: docs/keras-reference.md sections 2 and 3. fastdnn computes only inside a
model, so a layer's arithmetic is checked through ``predict`` (inference) and ``fit`` (training).
"""

import math
import re
import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names, same_weights  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

layers = keras.layers


def identity_model(*extra, width=4, **input_kwargs):
    """Input(width) -> Dense(width, identity weights, zero bias, linear) -> extra layers."""
    model = keras.Sequential([keras.Input((width,)), layers.Dense(width), *extra])
    model.layers[0].set_weights([np.eye(width), np.zeros(width)])
    return model


# --- names, repr, config


def test_auto_names_are_the_snake_case_of_the_class():
    made = [layers.Dense(1), layers.Flatten(), layers.Dropout(0.1), layers.Activation("relu"),
            layers.ReLU(), layers.Softmax(), layers.Dense(1), layers.ReLU()]
    assert [l.name for l in made] == ["dense", "flatten", "dropout", "activation", "re_lu",
                                      "softmax", "dense_1", "re_lu_1"]
    assert keras.Input((3,)).name == "input_layer"
    assert layers.InputLayer(shape=(3,)).name == "input_layer_1"


@pytest.mark.parametrize("layer", [
    lambda: layers.Dense(3, activation="tanh", use_bias=False, name="d"),
    lambda: layers.Flatten(name="f"),
    lambda: layers.Dropout(0.25, name="drop"),
    lambda: layers.Activation("sigmoid", name="a"),
    lambda: layers.ReLU(name="r"),
    lambda: layers.Softmax(name="s"),
])
def test_config_round_trip_rebuilds_an_equal_layer(layer):
    original = layer()
    rebuilt = layers.deserialize(layers.serialize(original))
    assert type(rebuilt) is type(original)
    assert rebuilt.get_config() == original.get_config()
    assert rebuilt.name == original.name


def test_dense_config_holds_its_arguments():
    config = layers.Dense(5, activation="relu", name="h").get_config()
    assert config["units"] == 5 and config["activation"] == "relu"
    assert config["use_bias"] is True and config["name"] == "h"


def test_deserialize_refuses_an_unknown_class():
    with pytest.raises(ValueError, match="Unknown layer class 'Conv2D'"):
        layers.deserialize({"class_name": "Conv2D", "config": {}})


def test_unknown_keyword_arguments_are_refused():
    with pytest.raises(ValueError, match=re.escape("Unrecognized keyword arguments passed to "
                                                   "Dense: {'foo': 3}")):
        layers.Dense(2, foo=3)


# --- Input / InputLayer


def test_input_shape_and_batch_shape():
    inp = keras.Input(shape=(28, 28))
    assert isinstance(inp, layers.InputLayer)
    assert inp.output_shape == (None, 28, 28)
    assert keras.Input(batch_shape=(None, 7)).output_shape == (None, 7)


@pytest.mark.parametrize("kwargs, message", [
    ({"shape": 28}, "Cannot convert '28' to a shape."),
    ({}, "You must pass a `shape` argument."),
    ({"shape": (0, 3)}, "Cannot convert"),
])
def test_input_refuses_bad_shapes(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        keras.Input(**kwargs)


def test_input_layer_input_shape_argument_is_deprecated_but_works():
    with pytest.warns(UserWarning, match="Argument `input_shape` is deprecated. Use `shape`"):
        inp = layers.InputLayer(input_shape=(5,))
    model = keras.Sequential([inp, layers.Dense(2)])
    assert model.built and model.input_shape == (None, 5)


def test_input_layer_object_first_builds_the_model():
    model = keras.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(3)])
    assert model.built and model.count_params() == 15


# --- Dense


@pytest.mark.parametrize("units", [0, -1, 2.0, True, "3"])
def test_dense_units_must_be_a_positive_int(units):
    with pytest.raises(ValueError, match="expected a positive integer"):
        layers.Dense(units)


@pytest.mark.parametrize("inputs, units, count", [(784, 100, 78_500), (100, 10, 1_010),
                                                  (784, 128, 100_480), (128, 10, 1_290)])
def test_dense_parameter_count(inputs, units, count):
    model = keras.Sequential([keras.Input((inputs,)), layers.Dense(units)])
    assert model.layers[0].count_params() == count
    assert model.layers[0].kernel.shape == (inputs, units)
    assert model.layers[0].bias.shape == (units,)


def test_dense_without_bias_has_only_a_kernel():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(4, use_bias=False)])
    dense = model.layers[0]
    assert dense.bias is None
    assert [w.shape for w in dense.get_weights()] == [(3, 4)]
    assert model.count_params() == 12
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(model.predict(x, verbose=0), x @ dense.kernel, rtol=1e-6)


def test_glorot_uniform_kernel_and_zero_bias():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), layers.Dense(100)])
    kernel, bias = model.get_weights()
    limit = math.sqrt(6 / (784 + 100))
    assert limit == pytest.approx(0.0823853, abs=1e-7)
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.99 * limit
    assert abs(kernel.mean()) < 0.01 * limit
    # uniform on [-L, L]: standard deviation L / sqrt(3)
    assert kernel.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    assert np.all(bias == 0)


def test_initial_weights_follow_the_seed_set_before_construction():
    def build(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((5,)), layers.Dense(3), layers.Dense(2)])

    assert same_weights(build(1).get_weights(), build(1).get_weights())
    assert not same_weights(build(1).get_weights(), build(2).get_weights())
    first = build(1).get_weights()
    assert not np.array_equal(first[0][:2, :2], first[2][:2, :2])  # each layer its own draw


def test_dense_on_a_rank_3_input_asks_for_flatten():
    model = keras.Sequential([keras.Input((28, 28))])
    with pytest.raises(ValueError, match="Add a Flatten"):
        model.add(layers.Dense(4))
    assert model.layers == []


@pytest.mark.parametrize("activation", ["linear", None, "relu", "sigmoid", "tanh", "softmax"])
def test_dense_computes_activation_of_x_times_kernel_plus_bias(activation):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((5,)), layers.Dense(4, activation=activation)])
    rng = np.random.default_rng(0)
    bias = rng.normal(size=4)
    model.layers[0].set_weights([model.layers[0].get_weights()[0], bias])
    x = rng.normal(size=(6, 5)).astype(np.float32)
    z = x.astype(np.float64) @ model.layers[0].kernel.numpy().astype(np.float64) + \
        model.layers[0].bias.numpy().astype(np.float64)
    expected = {"linear": z, None: z, "relu": np.maximum(z, 0), "sigmoid": 1 / (1 + np.exp(-z)),
                "tanh": np.tanh(z),
                "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)}[activation]
    assert np.allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_dense_accepts_activation_functions():
    assert layers.Dense(2, activation=keras.activations.relu).activation == "relu"
    assert layers.Activation(keras.activations.softmax).activation == "softmax"


@pytest.mark.parametrize("name", ["ReLU", "Sigmoid", "foo", "elu_not_there"])
def test_activation_names_are_case_sensitive_and_unknown_ones_refused(name):
    with pytest.raises(ValueError, match=re.escape(f"Could not interpret activation function "
                                                   f"identifier: {name}")):
        layers.Activation(name)


def test_layer_set_weights_refuses_bad_arrays_without_changes():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    dense = model.layers[0]
    before = dense.get_weights()
    with pytest.raises(ValueError, match="expects 2 weights"):
        dense.set_weights(before[:1])
    with pytest.raises(ValueError, match="not compatible"):
        dense.set_weights([before[0] + 1, np.zeros(3)])
    with pytest.raises(ValueError, match="finite"):
        dense.set_weights([before[0] + 1, np.array([np.inf, 0.0])])
    assert same_weights(dense.get_weights(), before)


def test_layer_get_weights_returns_copies():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    weights = model.layers[0].get_weights()
    weights[0][...] = 7
    assert not np.any(model.layers[0].kernel == 7)


# --- Flatten


@pytest.mark.parametrize("shape, out", [((28, 28), (None, 784)), ((4,), (None, 4)),
                                        ((), (None, 1)), ((2, 3, 4), (None, 24)),
                                        ((None, 3), (None, None))])
def test_flatten_output_shape(shape, out):
    flatten = layers.Flatten()
    model = keras.Sequential([keras.Input(shape), flatten])
    assert model.output_shape == out
    assert flatten.count_params() == 0 and model.count_params() == 0


def test_flatten_keeps_the_c_order_of_the_pixels():
    model = keras.Sequential([keras.Input((2, 3)), layers.Flatten(), layers.Dense(6)])
    model.layers[1].set_weights([np.eye(6), np.zeros(6)])
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    assert np.array_equal(model.predict(x, verbose=0), x.reshape(2, 6))


def test_flatten_channels_first_is_not_supported():
    with pytest.raises(NotImplementedError, match="channels_last"):
        layers.Flatten(data_format="channels_first")


# --- Activation, ReLU, Softmax layers


@pytest.mark.parametrize("layer, fn", [
    (lambda: layers.ReLU(), lambda z: np.maximum(z, 0)),
    (lambda: layers.Activation("relu"), lambda z: np.maximum(z, 0)),
    (lambda: layers.Activation("tanh"), np.tanh),
    (lambda: layers.Activation("sigmoid"), lambda z: 1 / (1 + np.exp(-z))),
    (lambda: layers.Activation("linear"), lambda z: z),
    (lambda: layers.Softmax(), lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)),
    (lambda: layers.Activation("softmax"),
     lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)),
])
def test_activation_layers_compute_their_function_and_keep_the_shape(layer, fn):
    act = layer()
    model = identity_model(act)
    assert act.count_params() == 0
    assert model.output_shape == (None, 4)
    x = np.array([[-2.0, -0.5, 0.5, 3.0], [1.0, 0.0, -1.0, 2.0]], np.float32)
    assert np.allclose(model.predict(x, verbose=0), fn(x.astype(np.float64)), rtol=1e-6,
                       atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_value": -1.0}, "max_value of a ReLU layer cannot be a negative value"),
    ({"negative_slope": -0.1}, "must be non-negative"),
    ({"negative_slope": None}, "must be non-negative"),
    ({"threshold": -1.0}, "must be non-negative"),
    ({"threshold": None}, "must be non-negative"),
])
def test_relu_refuses_negative_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.ReLU(**kwargs)


@pytest.mark.parametrize("kwargs", [{"max_value": 6.0}, {"negative_slope": 0.1},
                                    {"threshold": 0.5}])
def test_relu_variants_are_not_supported(kwargs):
    with pytest.raises(NotImplementedError):
        layers.ReLU(**kwargs)


def test_softmax_other_axis_is_not_supported():
    with pytest.raises(NotImplementedError):
        layers.Softmax(axis=0)


def test_softmax_layer_after_a_linear_dense_trains_with_cross_entropy():
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2), layers.Softmax()])
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(8, 3))
    history = model.fit(x, np.arange(8) % 2, batch_size=4, epochs=2, verbose=0)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert np.allclose(model.predict(x, verbose=0).sum(axis=1), 1, atol=1e-6)


# --- Dropout


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", True])
def test_dropout_rate_must_be_between_0_and_1(rate):
    with pytest.raises(ValueError, match="Invalid value received for argument `rate`"):
        layers.Dropout(rate)


def test_dropout_has_no_weights_and_keeps_the_shape():
    model = keras.Sequential([keras.Input((5,)), layers.Dropout(0.5), layers.Dense(2)])
    assert model.layers[0].count_params() == 0
    assert model.layers[0].output_shape == (None, 5)
    assert model.count_params() == 12


@pytest.mark.parametrize("rate", [0.0, 0.5, 1.0])
def test_dropout_is_the_identity_in_predict_and_evaluate(rate):
    keras.utils.set_random_seed(4)
    with_dropout = keras.Sequential([keras.Input((5,)), layers.Dense(8, activation="relu"),
                                     layers.Dropout(rate), layers.Dense(3, activation="softmax")])
    without = keras.Sequential([keras.Input((5,)), layers.Dense(8, activation="relu"),
                                layers.Dense(3, activation="softmax")])
    without.set_weights(with_dropout.get_weights())
    x = np.random.default_rng(1).normal(size=(20, 5))
    y = np.arange(20) % 3
    assert np.array_equal(with_dropout.predict(x, verbose=0), without.predict(x, verbose=0))
    for model in (with_dropout, without):
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    assert with_dropout.evaluate(x, y, verbose=0) == without.evaluate(x, y, verbose=0)


class _BatchLosses(keras.callbacks.Callback):
    """Recovers each batch's own loss from the running means in the batch-end logs."""

    def __init__(self):
        super().__init__()
        self.running = []

    def on_train_batch_end(self, batch, logs=None):
        self.running.append(logs["loss"])

    def per_batch(self):
        running = np.array(self.running)
        counts = np.arange(1, len(running) + 1)
        totals = running * counts
        return np.diff(np.concatenate([[0.0], totals]))


def test_dropout_in_fit_zeroes_or_scales_each_unit_by_one_over_keep():
    # One input of 1, Dropout(0.5), then Dense(1) with weight 1 and bias 0, target 0, mse: a
    # kept input gives output 1 / 0.5 = 2 (loss 4), a dropped one 0 (loss 0).
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), layers.Dropout(0.5), layers.Dense(1)])
    model.set_weights([np.ones((1, 1)), np.zeros(1)])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "mse")
    recorder = _BatchLosses()
    model.fit(np.ones((200, 1)), np.zeros(200), batch_size=1, shuffle=False, verbose=0,
              callbacks=[recorder])
    losses = recorder.per_batch()
    assert np.allclose(losses, np.round(losses / 4) * 4, atol=1e-4)
    kept = np.round(losses / 4)
    assert set(kept) == {0.0, 1.0}
    assert 60 < kept.sum() < 140  # about half of 200 kept
    assert np.array_equal(model.predict(np.ones((3, 1)), verbose=0), np.ones((3, 1)))


def test_dropout_rate_one_zeroes_everything_in_fit():
    # The last layer sees only zeros: softmax of a zero bias is uniform, loss log(3) for every
    # sample; without dropout the loss differs.
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(6, activation="relu"),
                              layers.Dropout(1.0), layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(12, 4)) * 3
    y = np.arange(12) % 3
    history = model.fit(x, y, batch_size=4, verbose=0)
    assert history.history["loss"][0] == pytest.approx(math.log(3), rel=1e-6)
    assert model.evaluate(x, y, verbose=0) != pytest.approx(math.log(3), rel=1e-3)


def test_dropout_zero_rate_changes_nothing_in_fit():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(6, activation="relu"),
                              layers.Dropout(0.0), layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(12, 4))
    y = np.arange(12) % 3
    history = model.fit(x, y, batch_size=4, verbose=0)
    assert history.history["loss"][0] == pytest.approx(model.evaluate(x, y, verbose=0),
                                                       rel=1e-6)


def test_dropout_in_fit_makes_the_training_loss_differ_from_inference():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(32, activation="relu"),
                              layers.Dropout(0.5), layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 4)) * 3
    y = np.arange(64) % 3
    history = model.fit(x, y, batch_size=8, verbose=0)
    assert history.history["loss"][0] != pytest.approx(model.evaluate(x, y, verbose=0),
                                                       rel=1e-3)


# --- fastdnn.activations


def test_activation_functions():
    x = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    acts = keras.activations
    assert np.array_equal(acts.linear(x), x)
    assert np.array_equal(acts.relu(x), [0, 0, 0, 0.5, 3])
    assert np.allclose(acts.sigmoid(x), 1 / (1 + np.exp(-x)))
    assert np.allclose(acts.tanh(x), np.tanh(x))
    s = acts.softmax(np.array([[1.0, 2.0, 3.0]]))
    assert np.allclose(s, np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_sigmoid_and_softmax_are_stable_for_large_inputs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = keras.activations.sigmoid(np.array([-1000.0, 1000.0]))
        p = keras.activations.softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.array_equal(s, [0.0, 1.0])
    assert np.allclose(p, [[1, 0, 0]])


def test_softmax_over_an_axis_of_size_one_is_one():
    assert np.array_equal(keras.activations.softmax(np.array([[5.0], [-2.0]])), [[1.0], [1.0]])


def test_activations_get_resolves_names_functions_and_none():
    get = keras.activations.get
    assert get(None) == "linear"
    assert get("tanh") == "tanh"
    assert get(keras.activations.sigmoid) == "sigmoid"
    with pytest.raises(ValueError, match="Could not interpret activation"):
        get(np.exp)
