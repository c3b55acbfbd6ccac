"""``compile(..., engine=...)``: the compiled kernels (``'fastdnn'``) and the plain-NumPy
reference (``'numpy'``) must train, evaluate and predict alike, for every optimizer.

Same seed, same data, same model: the two engines differ only in how they compute, so histories
agree to 1e-4 (float64; in practice to rounding) and weights closely.
"""

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import float64, fresh_names, image_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(learning_rate=0.1),
    "sgd_momentum": lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "sgd_nesterov": lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda: keras.optimizers.Adagrad(learning_rate=0.05),
    "rmsprop": lambda: keras.optimizers.RMSprop(),
    "rmsprop_centered_momentum": lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True),
    "adam": lambda: keras.optimizers.Adam(),
    "adam_amsgrad": lambda: keras.optimizers.Adam(amsgrad=True),
}


def run(engine, optimizer, dropout=0.0, loss="sparse_categorical_crossentropy", shuffle=True,
        hidden="relu"):
    keras.utils.clear_session()
    keras.utils.set_random_seed(123)
    layers = [keras.Input((28, 28)), keras.layers.Flatten(),
              keras.layers.Dense(24, activation=hidden)]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer, loss, metrics=["accuracy"], engine=engine)
    x, y = image_data(90, seed=4)
    x = x / 255.0
    if loss == "categorical_crossentropy":
        y = np.eye(10)[y]
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=shuffle, validation_split=0.2,
                        verbose=0)
    return model, history.history, x, y


def assert_same_training(a, b, history_rtol=1e-4, weight_atol=1e-6):
    model_a, hist_a, x, y = a
    model_b, hist_b, _, _ = b
    assert list(hist_a) == list(hist_b)
    for key in hist_a:
        np.testing.assert_allclose(hist_a[key], hist_b[key], rtol=history_rtol, err_msg=key)
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=weight_atol)
    np.testing.assert_allclose(model_a.optimizer.slots, model_b.optimizer.slots, rtol=1e-5,
                               atol=weight_atol)
    assert model_a.optimizer.iterations == model_b.optimizer.iterations == 15


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_engines_give_the_same_history_in_float64(name, float64):
    fast = run("fastdnn", OPTIMIZERS[name]())
    slow = run("numpy", OPTIMIZERS[name]())
    assert fast[0].engine == "fastdnn" and slow[0].engine == "numpy"
    assert_same_training(fast, slow, weight_atol=1e-9)


@pytest.mark.parametrize("name", ["sgd_nesterov", "adam", "rmsprop"])
def test_engines_agree_in_float32(name):
    assert_same_training(run("fastdnn", OPTIMIZERS[name]()), run("numpy", OPTIMIZERS[name]()),
                         weight_atol=1e-5)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_engines_draw_the_same_dropout_masks(name, float64):
    assert_same_training(run("fastdnn", OPTIMIZERS[name](), dropout=0.4),
                         run("numpy", OPTIMIZERS[name](), dropout=0.4), weight_atol=1e-9)


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh"])
def test_engines_agree_for_other_activations_and_categorical_targets(hidden, float64):
    assert_same_training(
        run("fastdnn", keras.optimizers.Adam(), loss="categorical_crossentropy", hidden=hidden),
        run("numpy", keras.optimizers.Adam(), loss="categorical_crossentropy", hidden=hidden),
        weight_atol=1e-9)


def test_engines_agree_on_evaluate_and_predict(float64):
    fast, _, x, y = run("fastdnn", keras.optimizers.Adam())
    slow, _, _, _ = run("numpy", keras.optimizers.Adam())
    slow.set_weights(fast.get_weights())
    np.testing.assert_allclose(fast.predict(x, verbose=0), slow.predict(x, verbose=0),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(fast.evaluate(x, y, verbose=0), slow.evaluate(x, y, verbose=0),
                               rtol=1e-10)


def test_engine_can_be_switched_by_recompiling(float64):
    model, _, x, y = run("fastdnn", keras.optimizers.SGD(learning_rate=0.1))
    fast_eval = model.evaluate(x, y, verbose=0)
    model.compile(model.optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"],
                  engine="numpy")
    assert model.engine == "numpy"
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0), fast_eval, rtol=1e-10)
    history = model.fit(x, y, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_default_engine_is_fastdnn_and_unknown_engines_are_refused():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.engine == "fastdnn"
    with pytest.raises(ValueError, match="`engine` must be one of \\['fastdnn', 'numpy'\\]"):
        model.compile("sgd", "sparse_categorical_crossentropy", engine="jax")


# --- layers large enough to be cut into thread-owned blocks (see fastdnn._kernels, dense layer)

BLOCKED = {
    # both hidden layers cut by kernel rows (the second one's input gradient too), the first
    # one gathering its shuffled batch block by block
    "rows": (200, 256, 128),
    # the second hidden layer has too few inputs (80) to cut by rows: cut by columns, its input
    # gradient summed over the blocks
    "columns": (300, 80, 1024),
}


def run_blocked(engine, optimizer, threads, widths, dropout=0.0):
    """Input -> Dense(relu) [-> Dropout] -> Dense(tanh) -> Dense(10, softmax) at batch 64, both
    hidden layers large enough (2^20 multiply-adds) for their products, gradients and optimizer
    steps to run in blocks owned by threads (see fastdnn._kernels, dense layer)."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(321)
    keras.set_num_threads(threads)
    n_in, first, second = widths
    between = [keras.layers.Dropout(dropout)] if dropout else []
    model = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(first, activation="relu")]
                             + between + [keras.layers.Dense(second, activation="tanh"),
                                          keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"],
                  engine=engine)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(320, n_in)), rng.integers(0, 10, 320)
    history = model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model, history.history, x, y


@pytest.mark.parametrize("layout", sorted(BLOCKED))
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_engines_agree_on_layers_cut_into_blocks(name, layout, float64, kernel_threads):
    slow = run_blocked("numpy", OPTIMIZERS[name](), 1, BLOCKED[layout])
    for threads in (1, 2, 3):
        fast = run_blocked("fastdnn", OPTIMIZERS[name](), threads, BLOCKED[layout])
        for key in slow[1]:
            np.testing.assert_allclose(fast[1][key], slow[1][key], rtol=1e-10, err_msg=key)
        for wf, ws in zip(fast[0].get_weights(), slow[0].get_weights()):
            np.testing.assert_allclose(wf, ws, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast[0].optimizer.slots, slow[0].optimizer.slots, rtol=1e-9,
                                   atol=1e-12)
        assert fast[0].optimizer.iterations == slow[0].optimizer.iterations == 15


@pytest.mark.parametrize("layout", sorted(BLOCKED))
def test_engines_agree_on_cut_layers_around_dropout_and_in_inference(layout, float64,
                                                                     kernel_threads):
    # the dropout runs on one thread between two layers whose blocks run on all of them; predict
    # and evaluate cut the layers too (batches of 32 and 64 rows)
    slow, slow_history, x, y = run_blocked("numpy", keras.optimizers.Adam(), 1, BLOCKED[layout],
                                           dropout=0.3)
    for threads in (1, 2, 3):
        fast, fast_history, _, _ = run_blocked("fastdnn", keras.optimizers.Adam(), threads,
                                               BLOCKED[layout], dropout=0.3)
        for key in slow_history:
            np.testing.assert_allclose(fast_history[key], slow_history[key], rtol=1e-10,
                                       err_msg=key)
        for wf, ws in zip(fast.get_weights(), slow.get_weights()):
            np.testing.assert_allclose(wf, ws, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast.predict(x, verbose=0), slow.predict(x, verbose=0),
                                   rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(fast.evaluate(x, y, batch_size=64, verbose=0),
                                   slow.evaluate(x, y, batch_size=64, verbose=0), rtol=1e-10)
