"""The Sequential model's weights: the flat parameter buffer, optimizer slots, get/set_weights.
"""

import numpy as np
import pytest
from _api_helpers import (  # noqa: F401
    chapter_model,
    compiled_tiny,
    fresh_names,
    same_weights,
    tiny_data,
    tiny_model,
)

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- the flat parameter buffer


def test_all_weights_live_in_one_contiguous_buffer():
    model = chapter_model()
    params = model.params
    assert params.ndim == 1 and params.flags.c_contiguous
    assert params.size == model.count_params() == 79_510
    assert np.array_equal(params, np.concatenate([w.ravel() for w in model.get_weights()]))
    for layer in model.layers[1:]:
        assert np.shares_memory(layer.kernel.value.base, params)
        assert np.shares_memory(layer.bias.value, params)


def test_training_updates_the_buffer_in_place_and_the_layer_views_follow():
    model = compiled_tiny()
    params = model.params
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, verbose=0)
    assert model.params is params
    assert np.array_equal(model.layers[0].kernel.numpy().ravel(), params[:12])
    params[0] = 42.0
    assert model.layers[0].kernel[0, 0] == 42.0
    assert model.get_weights()[0][0, 0] == 42.0


@pytest.mark.parametrize("optimizer, rows", [
    (lambda: keras.optimizers.SGD(), 0),
    (lambda: keras.optimizers.SGD(momentum=0.9), 1),
    (lambda: keras.optimizers.Adagrad(), 1),
    (lambda: keras.optimizers.RMSprop(), 1),
    (lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True), 3),
    (lambda: keras.optimizers.Adam(), 2),
    (lambda: keras.optimizers.Adam(amsgrad=True), 3),
])
def test_optimizer_slots_are_one_array_of_n_slots_by_n_params(optimizer, rows):
    model = compiled_tiny(optimizer())
    assert model.optimizer.slots is None
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, verbose=0)
    assert model.optimizer.slots.shape == (rows, model.params.size)
    assert model.optimizer.slots.dtype == model.params.dtype


# --- get_weights / set_weights


def test_get_weights_returns_copies_in_kernel_bias_order():
    model = tiny_model()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(3, 4), (4,), (4, 2), (2,)]
    weights[0][...] = 99
    assert not np.any(model.get_weights()[0] == 99)
    assert same_weights(model.layers[1].get_weights(), model.get_weights()[2:])


@pytest.mark.parametrize("change", ["count", "shape", "nan"])
def test_set_weights_refuses_bad_lists_without_changing_anything(change):
    model = tiny_model()
    before = model.get_weights()
    weights = model.get_weights()
    if change == "count":
        weights, message = weights[:3], "expecting 4 weights"
    elif change == "shape":
        weights[2], message = np.zeros((2, 4)), "not compatible"
    else:
        weights[3][1], message = np.nan, "finite"
    weights[0] = weights[0] + 1  # a valid first entry must not be applied either
    with pytest.raises(ValueError, match=message):
        model.set_weights(weights)
    assert same_weights(model.get_weights(), before)
