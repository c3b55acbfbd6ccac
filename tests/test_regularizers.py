"""Weight regularizers: ``kernel_regularizer=`` / ``bias_regularizer=`` on Dense.

Keras 3 (keras/src/regularizers/regularizers.py; the trainer adds ``model.losses`` to the batch
loss): L1 is ``l1·Σ|w|``, L2 ``l2·Σw²`` (default 0.01 each), L1L2 both (defaults 0); the
penalty of every trainable weight joins each batch's loss, so the reported loss (fit and
evaluate) is the data loss plus the penalty, and each weight's gradient gains
``l1·sign(w) + 2·l2·w``. The expected values are computed here in NumPy from those formulas.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")
regs = keras.regularizers


def test_penalty_values_and_defaults():
    value = np.random.default_rng(0).random((4, 4))
    assert regs.l1(0.1)(value) == pytest.approx(0.1 * np.abs(value).sum())
    assert regs.L2()(value) == pytest.approx(0.01 * np.square(value).sum())
    assert regs.l1_l2(l1=0.2, l2=0.3)(value) == pytest.approx(
        0.2 * np.abs(value).sum() + 0.3 * np.square(value).sum())
    assert regs.get("l1_l2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regs.get("l2").get_config() == {"l2": 0.01}
    with pytest.raises(ValueError, match="Could not interpret regularizer identifier: l3.*l1_l2"):
        regs.get("l3")
    with pytest.raises(ValueError, match="non-negative"):
        regs.L2(-1.0)
    assert keras.layers.Dense(2, activity_regularizer="l2").activity() == (0.0, 0.01)


def model_with(kernel=None, bias=None, engine="fastdnn", lr=0.5):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        3, activation="softmax", kernel_regularizer=kernel, bias_regularizer=bias,
        bias_initializer=keras.initializers.RandomNormal(seed=2))])
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy", engine=engine)
    return model


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n)


def test_the_reported_loss_adds_the_penalty(float64):
    x, y = data()
    model = model_with(regs.L1L2(l1=0.05, l2=0.2), regs.L1(0.3))
    kernel, bias = model.get_weights()
    p = model.predict(x, verbose=0)
    data_loss = -np.log(p[np.arange(len(y)), y]).mean()
    penalty = 0.05 * np.abs(kernel).sum() + 0.2 * np.square(kernel).sum() \
        + 0.3 * np.abs(bias).sum()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(data_loss + penalty, rel=1e-12)
    history = model.fit(x, y, batch_size=len(y), shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(data_loss + penalty, rel=1e-12)


def test_one_regularized_sgd_step_follows_the_formula(float64):
    x, y = data()
    model = model_with(regs.L1L2(l1=0.05, l2=0.2), regs.L2(0.4))
    kernel, bias = model.get_weights()
    p = model.predict(x, verbose=0)
    g = (p - np.eye(3)[y]) / len(y)
    model.fit(x, y, batch_size=len(y), shuffle=False, verbose=0)
    new_kernel, new_bias = model.get_weights()
    grad_kernel = x.T @ g + 0.05 * np.sign(kernel) + 2 * 0.2 * kernel
    grad_bias = g.sum(axis=0) + 2 * 0.4 * bias
    np.testing.assert_allclose(new_kernel, kernel - 0.5 * grad_kernel, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new_bias, bias - 0.5 * grad_bias, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_regularized_training_matches_the_reference_engine(optimizer, float64):
    x, y = data(40)

    def run(engine):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", kernel_regularizer=regs.L1(0.01),
                               trainable=False),
            keras.layers.Dense(8, activation="tanh", kernel_regularizer=regs.L2(0.05),
                               bias_regularizer="l1"),
            keras.layers.Dense(3, activation="softmax", kernel_regularizer="l1_l2")])
        model.compile(optimizer, "sparse_categorical_crossentropy", engine=engine)
        keras.utils.set_random_seed(4)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        return model.get_weights(), history.history["loss"], model.evaluate(x, y, verbose=0)

    (wa, la, ea), (wb, lb, eb) = run("fastdnn"), run("numpy")
    for u, v in zip(wa, wb):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(la, lb, rtol=1e-10)
    assert ea == pytest.approx(eb, rel=1e-10)


def test_a_frozen_layers_regularizer_is_not_counted(float64):
    x, y = data()
    model = model_with(regs.L2(1.0))
    model.layers[0].trainable = False
    p = model.predict(x, verbose=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(
        -np.log(p[np.arange(len(y)), y]).mean(), rel=1e-12)


def test_many_threads_regularize_as_one(kernel_threads):
    def run(threads):
        kernel_threads(threads)
        keras.utils.set_random_seed(5)
        model = keras.Sequential([
            keras.Input((400,)),
            keras.layers.Dense(300, activation="relu", kernel_regularizer=regs.L2(1e-3)),
            keras.layers.Dense(10, activation="softmax", kernel_regularizer=regs.L1(1e-3),
                               bias_regularizer=regs.L2(0.1))])
        model.compile("adam", "sparse_categorical_crossentropy")
        rng = np.random.default_rng(1)
        history = model.fit(rng.random((512, 400)), rng.integers(0, 10, 512), batch_size=256,
                            shuffle=False, verbose=0)
        return model.get_weights(), history.history["loss"]

    (wa, la), (wb, lb) = run(1), run(2)
    for u, v in zip(wa, wb):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_regularizers_survive_config_and_saving(tmp_path):
    model = model_with(regs.L1L2(l1=0.1, l2=0.2), "l2")
    config = model.layers[0].get_config()
    assert config["kernel_regularizer"] == {"module": "keras.regularizers", "class_name": "L1L2",
                                            "config": {"l1": 0.1, "l2": 0.2},
                                            "registered_name": None}
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    assert loaded.layers[0].kernel_regularizer.get_config() == {"l1": 0.1, "l2": 0.2}
    assert loaded.layers[0].bias_regularizer.get_config() == {"l2": 0.01}
    x, y = data()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_the_network_checks_its_penalties():
    from fastdnn import _kernels

    params = np.zeros(6)
    op = (_kernels.OP_DENSE, 3, _kernels.LINEAR, 0.0, 0, -1)
    for penalties, error in [([(0.0, -1.0, 0.0, 0.0)], "penalty"),
                             ([(0.0, np.nan, 0.0, 0.0)], "penalty"),
                             ([None, None], "one entry per op")]:
        with pytest.raises(ValueError, match=error):
            _kernels.Network(2, [op], params, _kernels.LOSS_MSE, _kernels.METRIC_NONE, False, 4,
                             penalties=penalties)
