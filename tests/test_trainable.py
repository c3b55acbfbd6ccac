"""Freezing: ``layer.trainable = False`` and ``model.trainable = False``.

Keras 3: a frozen layer's weights take no optimizer step (its gradient still flows to the layers
below it); ``model.trainable = False`` freezes every layer; ``summary()`` counts frozen weights
as Non-trainable params, and the optimizer creates slots for the trainable weights only.
"""

import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names, same_weights  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")


def three_layers(freeze=(), width=6):
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(width, activation="relu"),
                              keras.layers.Dense(width, activation="tanh"),
                              keras.layers.Dense(3, activation="softmax")])
    for i in freeze:
        model.layers[i].trainable = False
    return model


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)), rng.integers(0, 3, n)


def fit(model, engine="fastdnn", optimizer="adam", epochs=2):
    model.compile(optimizer, "sparse_categorical_crossentropy", engine=engine)
    model.fit(*data(), batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("freeze", [(0,), (1,), (2,), (0, 2)])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_frozen_layers_keep_their_weights_and_the_rest_trains_as_the_reference(
        freeze, optimizer, float64):
    before = three_layers(freeze).get_weights()
    trained = fit(three_layers(freeze), optimizer=optimizer)
    twin = fit(three_layers(freeze), "numpy", optimizer=optimizer)
    for k, (old, new, ref) in enumerate(zip(before, trained, twin)):
        if k // 2 in freeze:
            assert np.array_equal(old, new)
        else:
            assert not np.allclose(old, new)
        assert np.allclose(new, ref, rtol=1e-10, atol=1e-12)


def test_many_threads_train_frozen_models_as_one(kernel_threads):
    def run(threads):
        kernel_threads(threads)
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((400,)), keras.layers.Dense(300, activation="relu"),
                                  keras.layers.Dense(200, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.layers[1].trainable = False
        model.compile("adam", "sparse_categorical_crossentropy")
        rng = np.random.default_rng(1)
        before = model.get_weights()
        model.fit(rng.random((512, 400)), rng.integers(0, 10, 512), batch_size=256,
                  shuffle=False, verbose=0)
        after = model.get_weights()
        assert np.array_equal(before[2], after[2]) and np.array_equal(before[3], after[3])
        assert not np.array_equal(before[0], after[0])
        return after

    for a, b in zip(run(1), run(2)):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_model_trainable_false_freezes_everything_and_warns():
    model = three_layers()
    model.trainable = False
    assert all(not layer.trainable for layer in model.layers)
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 6
    before = model.get_weights()
    model.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.warns(UserWarning, match="does not have any trainable weights"):
        history = model.fit(*data(), verbose=0)
    assert same_weights(before, model.get_weights())
    assert np.isfinite(history.history["loss"][0])
    model.trainable = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(*data(), verbose=0)
    assert not same_weights(before, model.get_weights())


def test_freezing_between_fits_takes_effect():
    model = three_layers()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(*data(), verbose=0)
    model.layers[0].trainable = False
    kept = model.layers[0].get_weights()
    model.fit(*data(), verbose=0)
    assert same_weights(kept, model.layers[0].get_weights())
    assert model.layers[0].trainable_weights == []


def test_summary_counts_non_trainable_and_optimizer_params():
    model = three_layers(freeze=(1,))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    total = 5 * 6 + 6 + 6 * 6 + 6 + 6 * 3 + 3
    frozen = 6 * 6 + 6
    assert f"Total params: {total} (" in text
    assert f"Trainable params: {total - frozen} (" in text
    assert f"Non-trainable params: {frozen} ({frozen * 4:.2f} B)" in text
    fit(model)
    lines.clear()
    model.summary(print_fn=lines.append)
    optimizer_params = 2 + 2 * (total - frozen)  # Adam: m and v per trainable weight
    assert f"Optimizer params: {optimizer_params} " in lines[0]


def test_trainable_survives_saving(tmp_path):
    model = three_layers(freeze=(0,))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    assert [layer.trainable for layer in loaded.layers] == [False, True, True]
    before = loaded.layers[0].get_weights()
    loaded.fit(*data(), verbose=0)
    assert same_weights(before, loaded.layers[0].get_weights())
