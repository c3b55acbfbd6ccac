"""Numerical faults: a loss that turns NaN or inf stops training cleanly and keeps the weights.

fastdnn checks every batch's loss inside the kernels, before that batch's update: a non-finite
loss ends the epoch (Keras' TerminateOnNaN semantics, with its message, even without the
callback), and the weights, the optimizer's slots and its iteration counter stay those of the
last good step. Bad data (NaN/inf in x or y) is refused before any weight changes, and
``set_weights`` refuses non-finite values. The caller's floating-point state is restored after
every kernel (the kernels flush subnormals only while they run).
"""

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels as K

N, FEATURES, BATCH = 64, 6, 8


class Recorder(keras.callbacks.Callback):
    """Weights, optimizer state and logs after every training batch (forces per-batch calls)."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_begin(self, logs=None):
        self.initial = self.snapshot(None, {})

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(self.snapshot(batch, logs))

    def snapshot(self, batch, logs):
        opt = self.model.optimizer
        return {"batch": batch, "logs": dict(logs or {}), "weights": self.model.get_weights(),
                "iterations": opt.iterations,
                "slots": None if opt.slots is None else opt.slots.copy()}


def regression_model(optimizer, seed=3):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(4, "tanh"),
                              keras.layers.Dense(2)])
    model.compile(optimizer, "mse")
    return model


def regression_data(scale=1.0):
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(N, FEATURES)) * scale).astype(np.float32)
    return x, (rng.normal(size=(N, 2)) * scale).astype(np.float32)


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def diverging_fit(callbacks=(), optimizer=None, epochs=3, capsys=None):
    """A learning rate of 1e12 on MSE: the loss overflows float32 after a few steps."""
    model = regression_model(optimizer or keras.optimizers.SGD(1e12))
    x, y = regression_data()
    history = model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
                        callbacks=list(callbacks))
    return model, history


def test_a_loss_that_overflows_stops_training_and_keeps_the_last_good_weights(capsys):
    recorder = Recorder()
    model, history = diverging_fit([recorder])
    out = capsys.readouterr().out
    bad = recorder.batches[-1]
    assert not np.isfinite(bad["logs"]["loss"])
    assert all(np.isfinite(b["logs"]["loss"]) for b in recorder.batches[:-1])
    assert out.count("Invalid loss, terminating training") == 1
    assert f"Batch {bad['batch']}: Invalid loss, terminating training" in out
    # The bad batch's update was not applied: weights, slots, iterations as after the last good.
    last_good = recorder.batches[-2] if len(recorder.batches) > 1 else recorder.initial
    assert_same_weights(bad["weights"], last_good["weights"])
    assert_same_weights(model.get_weights(), last_good["weights"])
    assert bad["iterations"] == last_good["iterations"] == len(recorder.batches) - 1
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    # Keras semantics: the epoch ends normally, so History holds the partial epoch; no more.
    losses = history.history["loss"]
    assert len(losses) == 1 + (len(recorder.batches) - 1) // (N // BATCH)
    assert not np.isfinite(losses[-1])
    assert model.stop_training


def test_batched_and_per_batch_calls_stop_at_the_same_step_with_the_same_weights(capsys):
    """Without batch callbacks fit runs many batches per kernel call: same stop, same weights."""
    per_batch, h1 = diverging_fit([Recorder()])
    chunked, h2 = diverging_fit([])
    assert_same_weights(per_batch.get_weights(), chunked.get_weights())
    assert per_batch.optimizer.iterations == chunked.optimizer.iterations
    np.testing.assert_array_equal(h1.history["loss"], h2.history["loss"])
    assert capsys.readouterr().out.count("Invalid loss") == 2


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad", "sgd_momentum"])
def test_optimizer_state_is_not_touched_by_the_bad_step(optimizer, capsys):
    # Adam and RMSprop move each weight by about the learning rate per step: 1e20 overflows
    # the squared error of a float32 output within a few steps.
    opt = {"adam": lambda: keras.optimizers.Adam(1e20),
           "rmsprop": lambda: keras.optimizers.RMSprop(1e20),
           "adagrad": lambda: keras.optimizers.Adagrad(1e20),
           "sgd_momentum": lambda: keras.optimizers.SGD(1e20, momentum=0.9)}[optimizer]()
    recorder = Recorder()
    model = regression_model(opt)
    x, y = regression_data(scale=1e3)
    model.fit(x, y, batch_size=BATCH, epochs=5, shuffle=False, verbose=0, callbacks=[recorder])
    bad = recorder.batches[-1]
    assert not np.isfinite(bad["logs"]["loss"]), "expected the loss to overflow"
    last_good = recorder.batches[-2] if len(recorder.batches) > 1 else recorder.initial
    np.testing.assert_array_equal(bad["slots"], last_good["slots"])
    assert bad["iterations"] == last_good["iterations"]
    assert_same_weights(model.get_weights(), last_good["weights"])


def test_terminate_on_nan_prints_keras_message_once_and_stops(capsys):
    cb = keras.callbacks.TerminateOnNaN()
    model, history = diverging_fit([cb])
    out = capsys.readouterr().out
    assert out.count("Invalid loss, terminating training") == 1
    assert model.stop_training
    assert not np.isfinite(history.history["loss"][-1])


def test_terminate_on_nan_with_raise_error_raises_runtime_error_and_keeps_weights():
    recorder = Recorder()
    with pytest.raises(RuntimeError, match="NaN or Inf found in loss"):
        diverging_fit([recorder, keras.callbacks.TerminateOnNaN(raise_error=True)])
    bad, last_good = recorder.batches[-1], recorder.batches[-2]
    assert_same_weights(bad["weights"], last_good["weights"])


def test_huge_but_finite_weights_make_the_first_loss_overflow_and_are_kept_bit_for_bit(capsys):
    model = regression_model(keras.optimizers.SGD(0.01))
    huge = [np.full_like(w, 3e37) for w in model.get_weights()]
    model.set_weights(huge)  # finite: accepted
    x, y = regression_data()
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0)
    assert history.history["loss"] == [np.inf] or not np.isfinite(history.history["loss"][0])
    assert len(history.history["loss"]) == 1
    assert_same_weights(model.get_weights(), huge)
    assert model.optimizer.iterations == 0
    assert "Batch 0: Invalid loss, terminating training" in capsys.readouterr().out
    # Inference on such weights reports non-finite numbers; it does not crash or raise.
    assert not np.isfinite(model.evaluate(x, y, verbose=0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_set_weights_refuses_non_finite_values_and_changes_nothing(bad):
    model = regression_model("adam")
    before = model.get_weights()
    weights = [w.copy() for w in before]
    weights[-1].flat[0] = bad
    with pytest.raises(ValueError, match="finite"):
        model.set_weights(weights)
    assert_same_weights(model.get_weights(), before)
    layer = model.layers[0]
    layer_weights = layer.get_weights()
    layer_weights[0].flat[-1] = bad
    with pytest.raises(ValueError, match="finite"):
        layer.set_weights(layer_weights)
    assert_same_weights(model.get_weights(), before)


@pytest.mark.parametrize("where", ["x", "y", "validation_x", "validation_y"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_data_is_refused_before_any_weight_changes(where, bad):
    model = regression_model("adam")
    x, y = regression_data()
    xv, yv = x[:8].copy(), y[:8].copy()
    target = {"x": x, "y": y, "validation_x": xv, "validation_y": yv}[where]
    target[3, 1] = bad
    before = model.get_weights()
    with pytest.raises(ValueError, match="NaN or inf"):
        model.fit(x, y, validation_data=(xv, yv), epochs=1, verbose=0)
    assert_same_weights(model.get_weights(), before)
    assert model.optimizer.iterations == 0


def test_x_that_overflows_the_model_float_type_is_refused_before_training():
    model = regression_model("adam")
    x, y = regression_data()
    x = x.astype(np.float64)
    x[0, 0] = 1e39  # finite in float64, inf in the model's float32
    before = model.get_weights()
    with pytest.raises(ValueError, match="x"):
        model.fit(x, y, epochs=1, verbose=0)
    assert_same_weights(model.get_weights(), before)


def test_y_that_overflows_the_model_float_type_is_refused_before_training():
    model = regression_model("adam")
    x, y = regression_data()
    y = y.astype(np.float64)
    y[0, 0] = 1e39
    with pytest.raises(ValueError, match="y"):
        model.fit(x, y, epochs=1, verbose=0)


def test_nan_loss_from_logits_path_also_stops(capsys):
    """A classifier whose logits overflow: the fused cross-entropy becomes inf, training stops."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(3, "softmax")])
    model.compile(keras.optimizers.SGD(1e30), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, _ = regression_data(scale=1e4)
    y = np.arange(N) % 3
    recorder = Recorder()
    model.fit(x, y, batch_size=BATCH, epochs=4, shuffle=False, verbose=0, callbacks=[recorder])
    bad = recorder.batches[-1]
    assert not np.isfinite(bad["logs"]["loss"]), "expected the loss to overflow"
    assert_same_weights(model.get_weights(), recorder.batches[-2]["weights"]
                        if len(recorder.batches) > 1 else recorder.initial["weights"])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_the_callers_floating_point_state_is_restored_after_kernels():
    """The kernels flush subnormals to zero only while they run."""
    tiny = np.float32(1e-40)  # subnormal in float32
    assert tiny * np.float32(1) != 0
    model = regression_model("adam")
    x, y = regression_data()
    model.fit(x, y, epochs=1, verbose=0)
    model.predict(x, verbose=0)
    K.activation_forward(x, np.empty_like(x), "tanh")
    assert np.float32(1e-40) * np.float32(1) != 0
    assert np.float64(1e-310) * np.float64(1) != 0


def test_nan_and_inf_through_the_kernels_propagate_without_crashing():
    """The kernels themselves take any float values: NaN/inf give NaN/inf, never a crash."""
    z = np.array([[np.nan, 1.0, np.inf], [-np.inf, np.inf, 0.0]])
    for act in ("linear", "relu", "sigmoid", "tanh", "softmax"):
        out = np.empty_like(z)
        K.activation_forward(z, out, act)
    loss = K.sparse_softmax_cross_entropy(z, np.array([0, 1], np.int32), np.empty_like(z))
    assert not np.isfinite(loss)
    params = np.ones(4)
    K.adam_update(params, np.array([np.nan, np.inf, -np.inf, 1.0]), np.zeros(4), np.zeros(4), 0)
    assert np.isfinite(params[3]) and not np.all(np.isfinite(params[:3]))
