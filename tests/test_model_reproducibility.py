"""Reproducibility: set_random_seed, the number of threads, set_floatx.

Expected behaviour is Keras 3's (docs/keras-reference.md section 11).
"""

import numpy as np
import pytest
from _api_helpers import (  # noqa: F401
    chapter_model,
    float64,
    fresh_names,
    image_data,
    same_weights,
    tiny_model,
)

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- reproducibility


def _seeded_run(seed):
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28)), keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = image_data(64)
    history = model.fit(x / 255.0, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
    return model.get_weights(), history.history


def test_set_random_seed_makes_training_bit_identical():
    w1, h1 = _seeded_run(7)
    w2, h2 = _seeded_run(7)
    assert same_weights(w1, w2)
    assert h1 == h2
    w3, h3 = _seeded_run(8)
    assert not same_weights(w1, w3)
    assert h1 != h3


@pytest.fixture
def restore_threads():
    saved = keras.get_num_threads()
    yield
    keras.set_num_threads(saved)


def test_results_do_not_depend_on_the_number_of_threads(restore_threads):
    x, y = image_data(512, seed=3)
    x = x / 255.0
    # Large enough for the kernels to cut the products into blocks (spec 14.3: a seed gives the
    # same numbers at any thread count).
    runs = []
    for threads in (1, 2, 3):
        keras.set_num_threads(threads)
        keras.utils.set_random_seed(5)
        model = chapter_model()
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        before = model.predict(x, batch_size=512, verbose=0)
        history = model.fit(x, y, batch_size=256, epochs=2, verbose=0)
        runs.append((before, history.history, model.get_weights()))
    for other in runs[1:]:
        assert np.array_equal(runs[0][0], other[0])
        assert runs[0][1] == other[1]
        assert same_weights(runs[0][2], other[2])


@pytest.mark.parametrize("seed", [1.0, "1", None, True])
def test_set_random_seed_refuses_non_integers(seed):
    with pytest.raises(ValueError, match="Expected `seed` argument to be an integer"):
        keras.utils.set_random_seed(seed)


def test_set_floatx_refuses_other_types_and_float64_builds_float64(float64):
    with pytest.raises(ValueError, match="Unknown `floatx` value"):
        keras.config.set_floatx("float16")
    assert keras.config.floatx() == "float64"
    assert tiny_model().params.dtype == np.float64
