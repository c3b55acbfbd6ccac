"""Looking into a model as Keras 3 tutorials do: ``get_layer``, ``model.inputs``/``outputs``,
``layer.input``/``output`` (shape and dtype, None for the batch axis), ``weights`` as Variables
that write through to the model, and ``keras.utils.to_categorical``,
``keras.backend.clear_session``. Expected values follow Keras 3.15 (checked in a scratch
environment with its numpy backend).
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")


def model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="relu"),
                             keras.layers.Dropout(0.2), keras.layers.Dense(3, name="out")])


# --- to_categorical, clear_session


def test_to_categorical_one_hot_encodes_as_keras():
    np.testing.assert_array_equal(keras.utils.to_categorical([0, 2, 1]),
                                  [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert keras.utils.to_categorical(np.array([[1], [2]]), 4).shape == (2, 4)
    assert keras.utils.to_categorical(np.array([[0, 1], [2, 0]])).shape == (2, 2, 3)
    assert keras.utils.to_categorical([0, 1]).dtype == np.float64
    np.testing.assert_array_equal(keras.utils.to_categorical(np.array([3.0]), 5), [[0, 0, 0, 1, 0]])


@pytest.mark.parametrize("x, num_classes, message", [
    ([0, 3], 2, r"must lie in \[0, 2\)"),
    ([-1, 0], None, r"must lie in"),
    ([0.5], None, "integer class ids"),
    ([0, 1], 0, "positive integer"),
])
def test_to_categorical_refuses_bad_ids(x, num_classes, message):
    with pytest.raises(ValueError, match=message):
        keras.utils.to_categorical(x, num_classes)


def test_backend_clear_session_restarts_the_automatic_names():
    keras.layers.Dense(1)
    assert keras.layers.Dense(1).name == "dense_1"
    keras.backend.clear_session()
    assert keras.layers.Dense(1).name == "dense"
    keras.backend.clear_session(free_memory=False)
    assert keras.Sequential().name == "sequential"


# --- get_layer, inputs, outputs


def test_get_layer_by_name_and_index():
    m = model()
    assert m.get_layer("out") is m.layers[2]
    assert m.get_layer(index=0).name == "dense"
    assert m.get_layer(index=-1).name == "out"


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "nope"}, r"No such layer: nope. Existing layers are: \['dense', 'dropout', 'out'\]"),
    ({"index": 9}, "Was asked to retrieve layer at index 9 but model only has 3 layers."),
    ({}, "Provide either a layer name or layer index at `get_layer`."),
    ({"name": "out", "index": 0}, "Provide only a layer name or a layer index"),
])
def test_get_layer_refuses_as_keras(kwargs, message):
    with pytest.raises(ValueError, match=message):
        model().get_layer(**kwargs)


def test_inputs_outputs_and_layer_tensors_have_keras_symbolic_shapes():
    m = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(),
                          keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    assert [t.shape for t in m.inputs] == [(None, 28, 28)]
    assert [t.shape for t in m.outputs] == [(None, 10)]
    assert m.inputs[0].dtype == "float32"
    dense = m.get_layer("dense")
    assert dense.input.shape == (None, 784) and dense.output.shape == (None, 100)
    assert m.layers[0].input.shape == (None, 28, 28)
    assert m.layers[-1].output.dtype == "float32"
    assert repr(dense.output).startswith("<KerasTensor shape=(None, 100), dtype=float32")


def test_tensors_of_an_unbuilt_model_raise_attribute_error():
    m = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(AttributeError, match="has never been called"):
        m.layers[0].output
    with pytest.raises(AttributeError, match="not been built"):
        m.inputs


# --- weights as Variables


def test_weights_behave_like_keras_variables():
    m = model()
    kernel = m.weights[0]
    assert [w.path for w in m.weights] == ["sequential/dense/kernel", "sequential/dense/bias",
                                           "sequential/out/kernel", "sequential/out/bias"]
    assert (kernel.name, kernel.shape, kernel.dtype, kernel.trainable) == (
        "kernel", (4, 5), "float32", True)
    assert isinstance(kernel.numpy(), np.ndarray)
    np.testing.assert_array_equal(kernel.numpy(), m.get_weights()[0])
    np.testing.assert_array_equal(np.asarray(kernel) * 2, kernel * 2)
    assert m.layers[1].weights == [] and len(m.trainable_weights) == 4
    assert m.non_trainable_weights == []
    assert m.layers[0].kernel.path == "sequential/dense/kernel"
    assert m.layers[0].weights[0] is m.layers[0].weights[0]


def test_a_copy_from_numpy_does_not_alias_the_model():
    m = model()
    copy = m.weights[0].numpy()
    copy[...] = 7
    assert not np.any(m.get_weights()[0] == 7)


def test_assign_writes_through_to_what_the_model_computes():
    m = model()
    x = np.ones((2, 4), np.float32)
    m.weights[2].assign(np.zeros((5, 3)))
    m.get_layer("out").bias.assign([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(m.predict(x, verbose=0), [[1, 2, 3], [1, 2, 3]])
    m.weights[3].assign_add(np.ones(3))
    np.testing.assert_array_equal(m.predict(x, verbose=0)[0], [2, 3, 4])


def test_assign_refuses_another_shape_or_non_finite_values():
    m = model()
    before = m.get_weights()
    with pytest.raises(ValueError, match=r"variable.shape=\(4, 5\), Received: value.shape=\(4, 6\)"):
        m.weights[0].assign(np.zeros((4, 6)))
    with pytest.raises(ValueError, match="must be finite"):
        m.weights[0].assign(np.full((4, 5), np.nan))
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_variables_follow_the_weights_when_the_model_grows():
    m = model()
    kernel = m.weights[0]
    m.add(keras.layers.Dense(2))
    kernel.assign(np.ones((4, 5)))
    np.testing.assert_array_equal(m.get_weights()[0], np.ones((4, 5)))
