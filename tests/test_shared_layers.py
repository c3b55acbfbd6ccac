"""A Sequential model as a layer of another, and layers shared between models: one copy of the
weights, as in Keras, so training either model moves both (TensorFlow's clothing tutorial wraps
a trained model with ``Sequential([model, Softmax()])``; transfer learning reuses
``model.layers``)."""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names, same_weights  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(64, 4)).astype(np.float32)
Y = RNG.integers(0, 3, 64)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def trained_logits_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(X, Y, epochs=2, verbose=0)
    return model


def test_a_model_wrapped_with_softmax_outputs_probabilities_and_follows_training():
    model = trained_logits_model()
    probability_model = keras.Sequential([model, keras.layers.Softmax()])
    assert [layer.name for layer in probability_model.layers] == ["sequential", "softmax"]
    assert len(probability_model.weights) == 4
    np.testing.assert_allclose(probability_model.predict(X, verbose=0),
                               softmax(model.predict(X, verbose=0)), atol=1e-6)
    model.fit(X, Y, epochs=1, verbose=0)  # training the inner model moves the outer one
    np.testing.assert_allclose(probability_model.predict(X, verbose=0),
                               softmax(model.predict(X, verbose=0)), atol=1e-6)


def test_a_new_head_on_shared_layers_trains_the_base_model_too():
    base = trained_logits_model()
    head = keras.Sequential([keras.Input((4,))] + base.layers + [keras.layers.Dense(2)])
    assert head.count_params() == base.count_params() + 8
    before = base.get_weights()
    head.compile("sgd", "mse")
    head.fit(X, RNG.normal(size=(64, 2)), verbose=0)
    assert not same_weights(base.get_weights(), before)
    assert same_weights(base.get_weights(), head.get_weights()[:4])
    base.fit(X, Y, epochs=1, verbose=0)  # and the other way round
    assert same_weights(base.get_weights(), head.get_weights()[:4])


def test_list_of_layers_plus_softmax_shares_instead_of_copying():
    model = trained_logits_model()
    copy_free = keras.Sequential(model.layers + [keras.layers.Softmax()])
    model.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_allclose(copy_free.predict(X, verbose=0),
                               softmax(model.predict(X, verbose=0)), atol=1e-6)


def test_assign_through_one_model_changes_the_other():
    model = trained_logits_model()
    wrapped = keras.Sequential([model, keras.layers.Softmax()])
    wrapped.weights[3].assign(np.full(3, 5.0))
    np.testing.assert_array_equal(model.get_layer(index=1).bias.numpy(), np.full(3, 5.0))


def test_a_sharing_the_flat_buffer_cannot_express_is_refused_naming_the_layers():
    model = trained_logits_model()
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    with pytest.raises(NotImplementedError, match=r"\['dense'\] hold weights of model "
                                                  "sequential"):
        other.add(model.layers[0])
    assert [layer.name for layer in other.layers] == ["dense_2"]  # the model as it was
    assert other.predict(X, verbose=0).shape == (64, 4)


def test_an_unbuilt_model_cannot_be_a_layer():
    with pytest.raises(ValueError, match="must be built"):
        keras.Sequential([keras.Sequential([keras.layers.Dense(2)]), keras.layers.Softmax()])


@pytest.mark.parametrize("name", ["w.keras", "w.fastdnn"])
def test_a_wrapped_model_saves_and_loads_as_its_layers(tmp_path, name):
    wrapped = keras.Sequential([trained_logits_model(), keras.layers.Softmax()])
    wrapped.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    wrapped.save(tmp_path / name)
    loaded = keras.models.load_model(tmp_path / name)
    assert [layer.name for layer in loaded.layers] == ["dense", "dense_1", "softmax"]
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), wrapped.predict(X, verbose=0))
