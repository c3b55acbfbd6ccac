"""Optimizer options ``weight_decay`` (and ``AdamW``) and ``clipvalue``.

Keras 3 (keras/src/optimizers/base_optimizer.py, ``apply``): the gradient is clipped first
(``clipvalue``: each element to [-c, c]), then every trainable weight is decayed,
``w ← w − w·weight_decay·lr``, then the optimizer's own update runs with the clipped gradient.
``AdamW`` is Adam with ``weight_decay=0.004`` by default. Expected values: Keras' AdamW
single-step test (keras/src/optimizers/adamw_test.py) and the formulas, in NumPy.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names", "float64")


def one_step(optimizer, weights, grads):
    """One training step of a bias-free Dense(4) on input [[1]] under mse, whose kernel
    gradient is ``grads`` (mean over 4 outputs: dL/dp = 2(p - y)/4, so y = p - 2·grads)."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(4, use_bias=False)])
    model.set_weights([np.array([weights])])
    model.compile(optimizer, "mse")
    target = np.array([weights]) - 2 * np.array([grads])
    model.fit(np.ones((1, 1)), target, batch_size=1, verbose=0)
    return model.get_weights()[0][0]


def test_keras_adamw_single_step():
    got = one_step(keras.optimizers.AdamW(learning_rate=0.5), [1.0, 2.0, 3.0, 4.0],
                   [1.0, 6.0, 7.0, 2.0])
    np.testing.assert_allclose(got, [0.4980, 1.4960, 2.494, 3.492], rtol=1e-4, atol=1e-4)


def test_sgd_weight_decay_and_clipvalue_follow_the_formula():
    w, g = np.array([1.0, -2.0, 3.0, 0.5]), np.array([0.3, -4.0, 2.5, -0.1])
    got = one_step(keras.optimizers.SGD(0.1, weight_decay=0.2), w, g)
    np.testing.assert_allclose(got, w - w * 0.2 * 0.1 - 0.1 * g, rtol=1e-12)
    got = one_step(keras.optimizers.SGD(0.1, clipvalue=1.0), w, g)
    np.testing.assert_allclose(got, w - 0.1 * np.clip(g, -1.0, 1.0), rtol=1e-12)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1, clipvalue=0.05),
    lambda: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01),
    lambda: keras.optimizers.RMSprop(0.01, clipvalue=0.01),
    lambda: keras.optimizers.Adagrad(0.1, weight_decay=0.05),
])
def test_training_with_the_options_matches_the_reference_engine(optimizer):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)

    def run(engine):
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((5,)),
                                  keras.layers.Dense(8, activation="relu", trainable=False),
                                  keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer(), "sparse_categorical_crossentropy", engine=engine)
        keras.utils.set_random_seed(3)
        before = model.layers[0].get_weights()
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert all(np.array_equal(u, v) for u, v in zip(before, model.layers[0].get_weights()))
        return model.get_weights()

    for u, v in zip(run("fastdnn"), run("numpy")):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_options_are_checked_configured_and_saved(tmp_path):
    with pytest.raises(ValueError, match="Only one of"):
        keras.optimizers.SGD(clipvalue=1.0, clipnorm=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        keras.optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="weight_decay"):
        keras.optimizers.SGD(weight_decay=-0.1)
    opt = keras.optimizers.get("adamw")
    assert isinstance(opt, keras.optimizers.AdamW) and opt.weight_decay == 0.004
    config = keras.optimizers.AdamW(clipvalue=0.5).get_config()
    assert config["weight_decay"] == 0.004 and config["clipvalue"] == 0.5
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.AdamW(weight_decay=0.01, clipvalue=0.5),
                  "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    assert isinstance(loaded.optimizer, keras.optimizers.AdamW)
    assert (loaded.optimizer.weight_decay, loaded.optimizer.clipvalue) == (0.01, 0.5)
