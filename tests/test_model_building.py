"""The Sequential model's structure: Keras names, add, layers, pop, naming, building.

Expected behaviour is Keras 3's (docs/keras-reference.md sections 6, 9).
"""

import numpy as np
import pytest
from _api_helpers import chapter_model, fresh_names, same_weights  # noqa: F401

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- namespaces


def test_public_namespaces_expose_the_keras_names():
    assert keras.Sequential is keras.models.Sequential
    assert keras.Input is keras.layers.Input
    for name in ("Input", "InputLayer", "Dense", "Flatten", "Dropout", "Activation", "ReLU",
                 "Softmax"):
        assert callable(getattr(keras.layers, name)), name
    for name in ("SGD", "Adagrad", "RMSprop", "Adam"):
        assert isinstance(getattr(keras.optimizers, name)(), keras.optimizers.Optimizer)
    for name in ("History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN"):
        assert issubclass(getattr(keras.callbacks, name), keras.callbacks.Callback)
    assert isinstance(keras.optimizers.get("adam"), keras.optimizers.Adam)
    assert callable(keras.models.load_model)
    assert callable(keras.utils.set_random_seed)
    assert callable(keras.config.set_floatx)
    assert callable(keras.activations.relu)
    assert callable(keras.losses.sparse_categorical_crossentropy)
    assert callable(keras.metrics.sparse_categorical_accuracy)


# --- structure: add, layers, pop, names


def test_three_ways_of_building_give_the_same_built_model():
    shapes = []
    for how in ("list", "add", "input_shape"):
        model = chapter_model(how)
        assert model.built
        assert model.input_shape == (None, 28, 28)
        assert model.output_shape == (None, 10)
        shapes.append([w.shape for w in model.get_weights()])
        assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense", "Dense"]
    assert shapes[0] == shapes[1] == shapes[2] == [(784, 100), (100,), (100, 10), (10,)]


def test_layers_are_auto_named_in_creation_order_across_models():
    first = chapter_model()
    second = chapter_model()
    assert first.name == "sequential" and second.name == "sequential_1"
    assert [l.name for l in first.layers] == ["flatten", "dense", "dense_1"]
    assert [l.name for l in second.layers] == ["flatten_1", "dense_2", "dense_3"]


def test_explicit_names_consume_no_number():
    assert keras.Sequential().name == "sequential"
    assert keras.Sequential(name="x").name == "x"
    assert keras.Sequential().name == "sequential_1"
    assert keras.layers.Dense(2, name="hidden").name == "hidden"
    assert keras.layers.Dense(2).name == "dense"


def test_clear_session_resets_the_name_counters():
    keras.layers.Dense(1)
    keras.Sequential()
    keras.utils.clear_session()
    assert keras.layers.Dense(1).name == "dense"
    assert keras.Sequential().name == "sequential"


def test_unicode_names_work_everywhere():
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="relu", name="은닉층"),
        keras.layers.Dense(2, activation="softmax", name="출력층"),
    ], name="패션 MNIST 모델")
    assert model.name == "패션 MNIST 모델"
    assert [l.name for l in model.layers] == ["은닉층", "출력층"]
    texts = []
    model.summary(print_fn=texts.append)
    assert texts[0].startswith('Model: "패션 MNIST 모델"\n')
    assert "은닉층 (Dense)" in texts[0]


def test_name_with_a_slash_is_refused():
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        keras.Sequential(name="a/b")
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        keras.layers.Dense(2, name="a/b")


def test_duplicate_layer_names_are_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="Name 'd' is already the name of a layer in this model"):
        model.add(keras.layers.Dense(2, name="d"))
    assert [l.name for l in model.layers] == ["d"]


@pytest.mark.parametrize("thing", [3, "relu", np.zeros(3)])
def test_adding_something_that_is_not_a_layer_is_an_error(thing):
    model = keras.Sequential()
    with pytest.raises(ValueError, match="Only instances of `keras.Layer` can be added"):
        model.add(thing)


def test_a_second_input_is_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has already been configured to use input shape "
                                         r"\(None, 3\)"):
        model.add(keras.Input((3,)))


def test_layers_attribute_omits_the_input_and_cannot_be_assigned():
    model = chapter_model()
    assert len(model.layers) == 3
    assert not any(isinstance(l, keras.layers.InputLayer) for l in model.layers)
    model.layers.append(keras.layers.Dense(1))  # a copy: the model is unchanged
    assert len(model.layers) == 3
    with pytest.raises(AttributeError, match="`Sequential.layers` attribute is reserved"):
        model.layers = []


def test_pop_removes_the_top_layer_and_keeps_the_others_weights():
    model = chapter_model()
    before = model.layers[1].get_weights()
    top = model.pop()
    assert top.name == "dense_1"
    assert [l.name for l in model.layers] == ["flatten", "dense"]
    assert model.output_shape == (None, 100)
    assert same_weights(model.layers[1].get_weights(), before)
    assert model.count_params() == 78_500
    assert np.shares_memory(model.layers[1].kernel.value, model.params)


def test_pop_on_an_empty_model_raises_index_error():
    with pytest.raises(IndexError):
        keras.Sequential().pop()


def test_adding_to_a_built_model_keeps_the_existing_weights():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    before = model.get_weights()
    model.add(keras.layers.Dense(2, activation="softmax"))
    assert same_weights(model.get_weights()[:2], before)
    assert model.count_params() == 16 + 10


def test_model_without_input_stays_unbuilt_until_first_use():
    model = keras.Sequential([keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    assert not model.built
    assert model.weights == [] and model.get_weights() == []
    out = model.predict(np.ones((5, 7)), verbose=0)
    assert model.built
    assert model.input_shape == (None, 7)
    assert out.shape == (5, 2)
    assert [w.shape for w in model.get_weights()] == [(7, 4), (4,), (4, 2), (2,)]


def test_build_with_an_input_shape():
    model = keras.Sequential([keras.layers.Dense(3)])
    model.build((None, 5))
    assert model.built and model.input_shape == (None, 5)
    assert model.count_params() == 18


def test_building_an_empty_model_is_an_error():
    with pytest.raises(ValueError, match="cannot be built because it has no layers"):
        keras.Sequential().build((None, 3))


def test_input_shape_on_the_first_layer_builds_the_model_and_warns():
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`/`input_dim` argument"):
        dense = keras.layers.Dense(4, input_dim=3)
    model = keras.Sequential([dense])
    assert model.built and model.input_shape == (None, 3)


def test_input_shape_on_a_later_layer_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`"):
        later = keras.layers.Dense(2, input_shape=(99,))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), later])
    assert model.input_shape == (None, 3)
    assert later.kernel.shape == (4, 2)


def test_repr_of_model_and_layer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert repr(model) == "<Sequential name=sequential, built=True>"
    assert repr(model.layers[0]) == "<Dense name=dense, built=True>"
