"""The README's guarantees under hostile use: values that do not fit, failing calls on unbuilt
models, re-initialised networks, out-of-range hyper-parameters, steps that would write non-finite
weights, stale temporary files, and calls made from callbacks during fit.

Interrupts (Ctrl-C) are in ``test_interrupts.py``; random versions of these attacks run in the
fuzzer (``test_fuzz_api.py``).
"""

import datetime
import hashlib
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels as K


def small_model(units=3, activation="softmax", inputs=4, loss="sparse_categorical_crossentropy",
                optimizer="adam", build=True):
    layers = [keras.layers.Dense(8, activation="relu"),
              keras.layers.Dense(units, activation=activation)]
    model = keras.Sequential(([keras.Input((inputs,))] if build else []) + layers)
    model.compile(optimizer, loss, metrics=["accuracy"])
    return model


def data(n=32, inputs=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, inputs)).astype(np.float32), rng.integers(0, classes, n)


# --- set_weights: values that overflow float32, and arrays that are not real numbers


def assert_set_weights_refused(model, weights, error, match):
    """Both the model's and its first layer's set_weights refuse ``weights``, changing nothing."""
    before = model.get_weights()
    with pytest.raises(error, match=match):
        model.set_weights(weights)
    with pytest.raises(error, match=match):
        model.layers[0].set_weights(weights[:2])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("bad", [1e39, -1e39, np.nan, np.inf])
def test_set_weights_refuses_values_beyond_float32(bad):
    model = small_model()
    weights = [w.astype(np.float64) for w in model.get_weights()]
    weights[0][0, 0] = bad
    assert_set_weights_refused(model, weights, ValueError, "finite")


@pytest.mark.parametrize("make", [
    lambda w: w.astype(np.complex64),
    lambda w: np.full(w.shape, np.datetime64("2024-01-01")),
    lambda w: np.full(w.shape, datetime.timedelta(seconds=1), dtype="timedelta64[s]"),
    lambda w: np.full(w.shape, "1.0"),
], ids=["complex", "datetime", "timedelta", "str"])
def test_set_weights_refuses_arrays_that_are_not_real_numbers(make):
    model = small_model()
    assert_set_weights_refused(model, [make(w) for w in model.get_weights()], TypeError, "weights")


# --- a failing call on an unbuilt model leaves it unbuilt


@pytest.mark.parametrize("call", [
    lambda m, x, y: m.predict(np.full((4, 5), np.nan), verbose=0),
    lambda m, x, y: m.fit(x[:, :5].repeat(2, 1)[:, :5], y, verbose=0,
                          validation_data=(np.zeros((4, 6)), y[:4])),
    lambda m, x, y: m.fit(np.hstack([x, x[:, :1]]), y, verbose=0, validation_split=0.999),
    lambda m, x, y: m.evaluate(np.hstack([x, x[:, :1]]), np.full(len(y), 7), verbose=0),
], ids=["predict-nan", "fit-bad-validation-data", "fit-validation-split", "evaluate-bad-labels"])
def test_a_failing_call_does_not_build_the_model(call):
    model = small_model(build=False)
    x, y = data(inputs=4)
    with pytest.raises(ValueError):
        call(model, x, y)
    assert not model.built and model.input_shape is None
    model.fit(x, y, epochs=1, verbose=0)  # the corrected call builds it with its own shape
    assert model.input_shape == (None, 4)


# --- files: stale temporary files of killed saves, headers nested too deep


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _temp_name(target, pid, host=None):
    return f".{os.path.basename(target)}.tmp-{pid}-{host or socket.gethostname()}-abc123xy"


@pytest.mark.parametrize("then", ["save", "load"])
def test_a_later_save_or_load_clears_only_dead_writers_temporary_files(tmp_path, then):
    model = small_model()
    target = tmp_path / "m.fastdnn"
    model.save(target)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / _temp_name(target, _dead_pid())
        live = tmp_path / _temp_name(target, sleeper.pid)
        elsewhere = tmp_path / _temp_name(target, _dead_pid(), host="another-host")
        other_target = tmp_path / _temp_name(tmp_path / "other.fastdnn", _dead_pid())
        for f in (dead, live, elsewhere, other_target):
            f.write_bytes(b"partial")
        if then == "save":
            model.save(target)
        else:
            keras.models.load_model(target)
        assert not dead.exists()
        assert live.exists() and elsewhere.exists() and other_target.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_save_killed_mid_write_leaves_a_temporary_file_the_next_save_removes(tmp_path):
    target = tmp_path / "big.fastdnn"
    script = ("import sys, fastdnn as keras\n"
              "m = keras.Sequential([keras.Input((2000,)), keras.layers.Dense(4000)])\n"
              "m.save(sys.argv[1])\nprint('ready', flush=True)\n"
              "while True:\n    m.save(sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".big.fastdnn.tmp-*")) and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        child.kill()
        child.wait()
    assert list(tmp_path.glob(".big.fastdnn.tmp-*")), "the kill never landed mid-write"
    keras.models.load_model(target)  # the previous file is intact ...
    small_model().save(target)  # ... and the next save clears the dead writer's file
    assert not list(tmp_path.glob(".big.fastdnn.tmp-*"))


def _file_with_header(path, text):
    from fastdnn import _fastdnn_format as file_format
    body = file_format._PREFIX.pack(file_format.MAGIC, file_format.VERSION, len(text)) + text
    path.write_bytes(body + hashlib.sha256(body).digest())


def test_a_header_nested_100000_deep_is_refused_with_value_error(tmp_path):
    path = tmp_path / "deep.fastdnn"
    _file_with_header(path, b'{"kind": "model", "arrays": [], "x": ' + b"[" * 100_000
                      + b"]" * 100_000 + b"}")
    with pytest.raises(ValueError, match="corrupted"):
        keras.models.load_model(path)
    with pytest.raises(ValueError, match="corrupted"):
        small_model().load_weights(path)


# --- callbacks that change the model during fit; Keras-valid models fastdnn refused


class CallDuringFit(keras.callbacks.Callback):
    """Call ``action(model)`` at the end of the second training batch; keep what it raised."""

    def __init__(self, action):
        super().__init__()
        self.action, self.raised = action, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == 1:
            try:
                self.action(self.model)
            except Exception as e:  # noqa: BLE001 - the test inspects it
                self.raised = e
                raise


@pytest.mark.parametrize("action", [
    lambda m: m.compile("sgd", "sparse_categorical_crossentropy"),
    lambda m: m.add(keras.layers.Dense(3)),
    lambda m: m.pop(),
    lambda m: m.build((None, 4)),
], ids=["compile", "add", "pop", "build"])
def test_changing_the_model_from_a_callback_during_fit_is_a_clear_error(action):
    model = small_model()
    x, y = data()
    callback = CallDuringFit(action)
    with pytest.raises(RuntimeError, match="while `fit\\(\\)` is running"):
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[callback])
    assert isinstance(callback.raised, RuntimeError)
    assert model.optimizer.iterations == 2 and len(model.layers) == 2
    model.compile("sgd", "sparse_categorical_crossentropy")  # allowed again once fit is over
    model.fit(x, y, verbose=0)


def test_one_unit_softmax_with_sparse_cross_entropy_and_accuracy_trains_as_in_keras():
    # Keras: the loss of a one-class softmax is 0 (up to its clipping), and 'accuracy' on a
    # one-unit output is binary accuracy: the output 1.0 > 0.5 never equals the label 0.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, _ = data()
    history = model.fit(x, np.zeros(len(x), int), verbose=0).history
    assert history == {"accuracy": [0.0], "loss": [0.0]}
    assert model.evaluate(x, np.zeros(len(x), int), verbose=0) == [0.0, 0.0]


# --- Network: re-initialisation and calls on a network whose __init__ did not complete


def _network(units=(8, 3), inputs=4, capacity=4, seed=0):
    ops, offset, width = [], 0, inputs
    for u in units:
        ops.append((K.OP_DENSE, u, K.RELU, 0.0, offset, offset + width * u))
        offset += width * u + u
        width = u
    params = np.random.default_rng(0).normal(size=offset).astype(np.float32)
    return K.Network(inputs, ops, params, K.LOSS_MSE, K.METRIC_NONE, False, capacity, seed), ops


def test_network_init_again_is_refused_and_the_network_keeps_working():
    net, _ = _network()
    x = np.ones((64, 4), np.float32)
    before = np.empty((64, 3), np.float32)
    net.predict(x, before)
    bigger, bigger_ops = _network(units=(512, 3), capacity=256)
    for args in ((4, _network()[1], net.params, K.LOSS_MSE, K.METRIC_NONE, False, 4, -1),
                 (4, bigger_ops, bigger.params, K.LOSS_MSE, K.METRIC_NONE, False, 256)):
        with pytest.raises(RuntimeError, match="already initialised"):
            net.__init__(*args)
    after = np.empty((64, 3), np.float32)
    net.predict(x, after)
    np.testing.assert_array_equal(before, after)
    assert net.capacity == 4


def test_a_network_whose_init_failed_or_never_ran_refuses_every_call():
    x, y = np.ones((8, 4), np.float32), np.ones((8, 3), np.float32)
    failed = K.Network.__new__(K.Network)
    _, ops = _network()
    params = np.zeros(4 * 8 + 8 + 8 * 3 + 3, np.float32)
    with pytest.raises(ValueError, match="seed"):
        failed.__init__(4, ops, params, K.LOSS_MSE, K.METRIC_NONE, False, 4, -1)
    for net in (failed, K.Network.__new__(K.Network)):
        with pytest.raises(RuntimeError, match="not initialised"):
            net.predict(x, np.empty((8, 3), np.float32))
        with pytest.raises(RuntimeError, match="not initialised"):
            net.evaluate(x, y)
        with pytest.raises(RuntimeError, match="not initialised"):
            net.reserve(8)
        with pytest.raises(RuntimeError, match="not initialised"):
            net.train(x, y, None, 4, 0, 2, {"kind": "sgd"}, np.zeros((0, params.size), np.float32),
                      0, np.zeros(2), np.zeros(2))
    failed.__init__(4, ops, params, K.LOSS_MSE, K.METRIC_NONE, False, 4, 0)  # now it completes
    failed.predict(x, np.empty((8, 3), np.float32))


# --- hyper-parameters out of range; a step that would write non-finite weights or slots


@pytest.mark.parametrize("settings", [
    {"kind": "adam", "beta_2": 5.0}, {"kind": "adam", "beta_1": 1.0},
    {"kind": "rmsprop", "rho": 2.0}, {"kind": "rmsprop", "epsilon": -1e-7},
    {"kind": "sgd", "learning_rate": -0.1}, {"kind": "rmsprop", "momentum": -0.5},
], ids=["beta_2", "beta_1", "rho", "epsilon", "learning_rate", "momentum"])
def test_network_train_refuses_hyper_parameters_out_of_range(settings):
    net, _ = _network()
    x, y = np.ones((8, 4), np.float32), np.ones((8, 3), np.float32)
    name = next(k for k in settings if k != "kind")
    rows = {"adam": 2, "rmsprop": 1 + (settings.get("momentum", 0) > 0), "sgd": 0}
    slots = np.zeros((rows[settings["kind"]], net.params.size), np.float32)
    before = net.params.copy()
    with pytest.raises(ValueError, match=name):
        net.train(x, y, None, 4, 0, 2, settings, slots, 0, np.zeros(2), np.zeros(2))
    np.testing.assert_array_equal(net.params, before)


def test_network_train_caps_the_iteration_counter_like_adam_update():
    net, _ = _network()
    x, y = np.ones((8, 4), np.float32), np.ones((8, 3), np.float32)
    slots = np.zeros((2, net.params.size), np.float32)
    with pytest.raises(ValueError, match="iteration"):
        net.train(x, y, None, 4, 0, 2, {"kind": "adam"}, slots, 2**62 - 1, np.zeros(2), np.zeros(2))
    counter = np.array([2**62 - 2], np.int64)
    assert net.train(x, y, None, 4, 0, 2, {"kind": "adam"}, slots, counter, np.zeros(2),
                     np.zeros(2)) == (2, 2**62)
    assert counter[0] == 2**62


def _diverging_data(good, n_features=4):
    """``good`` ordinary samples, then one whose finite loss has a gradient whose square
    overflows float32 (Adam's second moment would become inf, then the weights NaN)."""
    rng = np.random.default_rng(1)
    x = np.abs(rng.normal(size=(good + 4, n_features))).astype(np.float32)
    y = rng.normal(size=good + 4).astype(np.float32)
    x[good:] *= 1e4
    y[good:] = 1e17
    return x, y


def assert_stopped_before_the_bad_step(stopped, reference):
    """``stopped`` (fit on all the data, the bad step at batch 10) equals ``reference`` (fit on the
    10 good batches alone): weights, finite slots and the step counter."""
    assert stopped.optimizer.iterations == reference.optimizer.iterations == 10
    for a, b in zip(stopped.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(stopped.optimizer.slots, reference.optimizer.slots)
    assert np.isfinite(stopped.optimizer.slots).all()


@pytest.mark.parametrize("engine", ["fastdnn", "numpy"])
@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad"])
def test_a_step_that_would_make_weights_or_slots_non_finite_is_never_applied(engine, optimizer):
    x, y = _diverging_data(good=10)
    models = []
    for rows in (len(x), 10):  # all the data (the bad step is batch 10), and the good part alone
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer, "mse", engine=engine)
        model.fit(x[:rows], y[:rows], batch_size=1, shuffle=False, verbose=0)
        models.append(model)
    assert_stopped_before_the_bad_step(*models)


@pytest.mark.parametrize("engine", ["fastdnn", "numpy"])
def test_the_guard_holds_with_a_frozen_layer_a_regularizer_and_sample_weights(engine):
    x, y = _diverging_data(good=10)
    weights = np.linspace(0.5, 2.0, len(x))
    models = []
    for rows in (len(x), 10):
        keras.utils.set_random_seed(7)
        model = keras.Sequential([
            keras.Input((4,)), keras.layers.Dense(8, activation="relu", trainable=False),
            keras.layers.Dense(1, kernel_regularizer=keras.regularizers.L2(0.01))])
        model.compile("adam", "mse", engine=engine)
        model.fit(x[:rows], y[:rows], sample_weight=weights[:rows], batch_size=1, shuffle=False,
                  verbose=0)
        models.append(model)
    assert_stopped_before_the_bad_step(*models)


# --- what holds after an exception from fit (the README's sentence)


class RaiseAt(keras.callbacks.Callback):
    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.batch:
            raise ValueError("raised by a callback")


def _trained(batches, x, y, callbacks=()):
    keras.utils.set_random_seed(5)
    model = small_model()
    rows = batches * 4
    model.fit(x[:rows], y[:rows], batch_size=4, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model


def test_after_an_exception_from_fit_the_state_is_that_of_the_batches_applied():
    x, y = data()
    keras.utils.set_random_seed(5)
    raised = small_model()
    with pytest.raises(ValueError, match="raised by a callback"):
        raised.fit(x, y, batch_size=4, shuffle=False, verbose=0, callbacks=[RaiseAt(2)])
    applied = _trained(3, x, y)  # batches 0, 1 and 2 ran before the callback raised
    assert raised.optimizer.iterations == applied.optimizer.iterations == 3
    for a, b in zip(raised.get_weights(), applied.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(raised.optimizer.slots, applied.optimizer.slots)


@pytest.mark.parametrize("bad", [
    {"validation_split": 0.999}, {"validation_data": (np.zeros((4, 5)), np.zeros(4))},
    {"batch_size": 0}, {"x": np.full((8, 4), np.nan)}, {"y": np.full(32, 9)},
], ids=["split", "validation-shape", "batch_size", "nan-x", "labels"])
def test_an_exception_from_fit_before_training_changes_nothing(bad):
    x, y = data()
    model = _trained(4, x, y)
    before = model.get_weights(), model.optimizer.slots.copy(), model.optimizer.iterations
    args = {"x": x, "y": y, **bad}
    with pytest.raises(ValueError):
        model.fit(args.pop("x"), args.pop("y"), verbose=0, **args)
    for a, b in zip(before[0], model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before[1], model.optimizer.slots)
    assert model.optimizer.iterations == before[2]
