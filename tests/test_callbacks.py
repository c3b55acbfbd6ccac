"""Callbacks: hook order, logs, stop_training, History, EarlyStopping, ModelCheckpoint,
TerminateOnNaN and fastdnn's own stop on a non-finite loss.

Expected behaviour: docs/keras-reference.md section 10 (and 8.4 for History); fastdnn's file
suffixes (``.fastdnn``, ``.weights.fastdnn``) replace Keras' ``.keras``/``.weights.h5``.
"""

import math
import os
import re
import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import Recorder, fresh_names, same_weights, tiny_data, tiny_model  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

cbs = keras.callbacks


def compiled(optimizer=None, metrics=("accuracy",)):
    model = tiny_model()
    model.compile(optimizer or keras.optimizers.SGD(learning_rate=0.1),
                  "sparse_categorical_crossentropy", metrics=list(metrics))
    return model


DATA = tiny_data(6, dtype=np.float32)
VAL = tiny_data(3, seed=9, dtype=np.float32)


# --- order of the hooks (10.1)


def _expected_fit_calls(epochs, steps, with_validation, test_batches=0):
    calls = [("on_train_begin", None)]
    for epoch in range(epochs):
        calls.append(("on_epoch_begin", epoch))
        for batch in range(steps):
            calls += [("on_train_batch_begin", batch), ("on_train_batch_end", batch)]
        if with_validation:
            calls.append(("on_test_begin", None))
            for batch in range(test_batches):
                calls += [("on_test_batch_begin", batch), ("on_test_batch_end", batch)]
            calls.append(("on_test_end", None))
        calls.append(("on_epoch_end", epoch))
    return calls + [("on_train_end", None)]


def test_fit_calls_the_hooks_in_keras_order():
    recorder = Recorder()
    model = compiled()
    model.fit(*DATA, batch_size=2, epochs=2, validation_data=VAL, verbose=0,
              callbacks=[recorder])
    calls = [c for c in recorder.calls if not c[0].startswith("on_test_batch")]
    assert calls == _expected_fit_calls(2, 3, True)


def test_fit_without_validation_calls_no_test_hooks():
    recorder = Recorder()
    compiled().fit(*DATA, batch_size=4, epochs=1, verbose=0, callbacks=[recorder])
    assert recorder.calls == _expected_fit_calls(1, 2, False)


def test_validation_calls_the_test_batch_hooks():
    recorder = Recorder()
    compiled().fit(*DATA, batch_size=2, epochs=1, validation_data=VAL, verbose=0,
                   callbacks=[recorder])
    assert recorder.calls == _expected_fit_calls(1, 3, True, test_batches=2)


def test_evaluate_calls_the_test_batch_hooks():
    recorder = Recorder()
    compiled().evaluate(*DATA, batch_size=4, verbose=0, callbacks=[recorder])
    assert recorder.calls == [("on_test_begin", None), ("on_test_batch_begin", 0),
                              ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                              ("on_test_batch_end", 1), ("on_test_end", None)]


def test_predict_calls_the_predict_batch_hooks():
    recorder = Recorder()
    compiled().predict(DATA[0], batch_size=4, verbose=0, callbacks=[recorder])
    assert recorder.calls == [("on_predict_begin", None), ("on_predict_batch_begin", 0),
                              ("on_predict_batch_end", 0), ("on_predict_batch_begin", 1),
                              ("on_predict_batch_end", 1), ("on_predict_end", None)]


def test_evaluate_and_predict_call_their_begin_and_end_hooks():
    recorder = Recorder()
    model = compiled()
    model.evaluate(*DATA, verbose=0, callbacks=[recorder])
    model.predict(DATA[0], verbose=0, callbacks=[recorder])
    calls = [c for c in recorder.calls if "batch" not in c[0]]
    assert calls == [("on_test_begin", None), ("on_test_end", None),
                     ("on_predict_begin", None), ("on_predict_end", None)]


def test_callbacks_get_the_model_and_the_params():
    recorder = Recorder()
    model = compiled()
    model.fit(*DATA, batch_size=4, epochs=3, verbose=0, callbacks=[recorder])
    assert recorder.model is model
    assert recorder.params == {"verbose": 0, "epochs": 3, "steps": 2}


def test_old_style_batch_hooks_are_called_by_the_default_train_batch_hooks():
    class Old(cbs.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_batch_begin(self, batch, logs=None):
            self.seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            self.seen.append(("end", batch, round(logs["loss"], 12)))

    old = Old()
    compiled().fit(*DATA, batch_size=2, verbose=0, callbacks=[old])
    assert [s[:2] for s in old.seen] == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1),
                                         ("begin", 2), ("end", 2)]


# --- logs


def test_batch_end_logs_are_running_means_and_epoch_end_logs_add_validation():
    recorder = Recorder(keep_logs=True)
    x, y = tiny_data(5, dtype=np.float32)
    model = compiled(keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, batch_size=2, validation_data=VAL, shuffle=False, verbose=0,
                        callbacks=[recorder])
    logs = {(hook, arg): value for hook, arg, value in recorder.logs}
    for batch, seen in ((0, 2), (1, 4), (2, 5)):
        loss, acc = model.evaluate(x[:seen], y[:seen], verbose=0)
        got = logs[("on_train_batch_end", batch)]
        assert list(got) == ["accuracy", "loss"]
        assert got["loss"] == pytest.approx(loss, rel=1e-6)
        assert got["accuracy"] == pytest.approx(acc)
    val_loss, val_acc = model.evaluate(*VAL, verbose=0)
    assert logs[("on_test_end", None)] == {"accuracy": pytest.approx(val_acc),
                                           "loss": pytest.approx(val_loss, rel=1e-6)}
    epoch_logs = logs[("on_epoch_end", 0)]
    assert list(epoch_logs) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert epoch_logs == {k: v[0] for k, v in history.history.items()}
    assert logs[("on_train_end", None)] == epoch_logs


def test_user_callbacks_run_before_the_progress_bar(capsys):
    class Say(cbs.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(f"end of {epoch}")

    compiled().fit(*DATA, batch_size=2, epochs=2, callbacks=[Say()])
    lines = capsys.readouterr().out.splitlines()
    assert [l[:9] for l in lines] == ["Epoch 1/2", "end of 0", "3/3 ━━━━━", "Epoch 2/2",
                                      "end of 1", "3/3 ━━━━━"]


def test_batch_hooks_do_not_change_what_verbose_1_prints(capsys):
    model = compiled()
    model.fit(*DATA, batch_size=2, epochs=2, callbacks=[Recorder()])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert all(re.match("3/3 ━{20} ", line) for line in lines[1::2])


# --- stop_training


def test_stop_training_in_a_batch_hook_stops_after_that_batch_but_ends_the_epoch():
    class StopAt(Recorder):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if batch == 1:
                self.model.stop_training = True

    stopper = StopAt()
    model = compiled(keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(*DATA, batch_size=2, epochs=3, validation_data=VAL, verbose=0,
                        callbacks=[stopper])
    assert model.optimizer.iterations == 2
    assert history.epoch == [0]
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    hooks = [c[0] for c in stopper.calls if not c[0].startswith("on_test_batch")]
    assert hooks[-4:] == ["on_test_begin", "on_test_end", "on_epoch_end", "on_train_end"]
    assert ("on_train_batch_begin", 2) not in stopper.calls


def test_stop_training_in_an_epoch_hook_stops_after_that_epoch():
    class StopAfter(cbs.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model = compiled()
    history = model.fit(*DATA, batch_size=2, epochs=5, verbose=0, callbacks=[StopAfter()])
    assert history.epoch == [0, 1]
    assert model.optimizer.iterations == 6


def test_a_new_fit_starts_with_stop_training_false():
    class StopNow(cbs.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    model = compiled()
    model.fit(*DATA, batch_size=2, epochs=3, verbose=0, callbacks=[StopNow()])
    history = model.fit(*DATA, batch_size=2, epochs=3, verbose=0)
    assert history.epoch == [0, 1, 2]


# --- History (8.4)


def test_history_records_epochs_and_the_model_keeps_it():
    model = compiled()
    history = model.fit(*DATA, batch_size=3, epochs=4, initial_epoch=1, verbose=0)
    assert history.epoch == [1, 2, 3]
    assert history.params == {"verbose": 0, "epochs": 4, "steps": 2}
    assert model.history is history
    assert all(len(v) == 3 for v in history.history.values())


# --- EarlyStopping driven directly (10.2)

VAL_LOSSES = [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.86, 0.87, 0.88]


class StubModel:
    """What EarlyStopping needs from a model: weights (here: the epoch they come from)."""

    def __init__(self):
        self.stop_training = False
        self.epoch = 0
        self.restored = None

    def get_weights(self):
        return [np.array([self.epoch])]

    def set_weights(self, weights):
        self.restored = int(weights[0][0])


def drive(callback, values, monitor="val_loss"):
    """Run the epoch loop of fit on ``callback``; return (epochs run, stub model)."""
    model = StubModel()
    callback.set_model(model)
    callback.on_train_begin()
    run = 0
    for epoch, value in enumerate(values):
        model.epoch = epoch
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {monitor: value})
        run += 1
        if model.stop_training:
            break
    callback.on_train_end()
    return run, model


@pytest.mark.parametrize("kwargs, epochs", [
    ({"patience": 0}, 3),
    ({"patience": 2}, 4),
    ({"patience": 2, "baseline": 0.85}, 3),
    ({"patience": 2, "start_from_epoch": 3}, 8),
    ({"patience": 1, "min_delta": 0.2}, 2),
    ({"patience": 20}, 10),
])
def test_early_stopping_on_the_reference_sequences(kwargs, epochs):
    callback = cbs.EarlyStopping(**kwargs)
    run, model = drive(callback, VAL_LOSSES)
    assert run == epochs
    assert model.stop_training == (epochs < len(VAL_LOSSES))
    assert callback.stopped_epoch == (epochs - 1 if epochs < len(VAL_LOSSES) else 0)


def test_early_stopping_restores_the_best_epoch_weights(capsys):
    callback = cbs.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    run, model = drive(callback, VAL_LOSSES)
    assert run == 4
    assert model.restored == 1
    assert capsys.readouterr().out == ("Epoch 4: early stopping\n"
                                       "Restoring model weights from the end of the best "
                                       "epoch: 2.\n")


def test_early_stopping_restores_the_best_weights_also_without_stopping():
    callback = cbs.EarlyStopping(patience=5, restore_best_weights=True)
    run, model = drive(callback, [1.0, 0.5, 0.7])
    assert run == 3 and not model.stop_training
    assert model.restored == 1


def test_early_stopping_without_verbose_prints_nothing(capsys):
    drive(cbs.EarlyStopping(patience=0, restore_best_weights=True), VAL_LOSSES)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("monitor, mode, values, epochs", [
    ("val_accuracy", "auto", [0.5, 0.6, 0.55, 0.58], 3),
    ("accuracy", "auto", [0.5, 0.6, 0.55, 0.58], 3),
    ("val_loss", "max", [0.5, 0.6, 0.55, 0.58], 3),
    ("val_accuracy", "min", [0.5, 0.4, 0.45, 0.3], 3),
    ("loss", "auto", [0.5, 0.4, 0.45, 0.3], 3),
])
def test_early_stopping_direction(monitor, mode, values, epochs):
    run, _ = drive(cbs.EarlyStopping(monitor=monitor, mode=mode), values, monitor=monitor)
    assert run == epochs


def test_early_stopping_unknown_mode_warns_and_falls_back_to_auto():
    with pytest.warns(UserWarning, match="mode sideways is unknown, fallback to auto mode"):
        callback = cbs.EarlyStopping(mode="sideways")
    assert drive(callback, VAL_LOSSES)[0] == 3


def test_early_stopping_cannot_guess_the_direction_of_an_unknown_monitor():
    callback = cbs.EarlyStopping(monitor="foo")
    with pytest.raises(ValueError, match="isn't able to automatically determine whether that "
                                         "metric should be maximized or minimized"):
        drive(callback, [1.0, 0.5, 0.4], monitor="foo")


def test_early_stopping_unknown_monitor_raises_at_the_first_epoch_end():
    callback = cbs.EarlyStopping(monitor="foo")
    callback.set_model(StubModel())
    callback.on_train_begin()
    with pytest.raises(ValueError, match="isn't able to automatically determine"):
        callback.on_epoch_end(0, {"foo": 1.0})


def test_early_stopping_warns_about_a_missing_monitor_and_never_stops():
    model = compiled()
    with pytest.warns(UserWarning, match="Early stopping conditioned on metric `val_loss` which "
                                         "is not available. Available metrics are: "
                                         "accuracy,loss"):
        history = model.fit(*DATA, batch_size=2, epochs=3, verbose=0,
                            callbacks=[cbs.EarlyStopping(patience=0)])
    assert history.epoch == [0, 1, 2]


def test_early_stopping_end_to_end_on_a_constant_loss(capsys):
    model = compiled(keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(*DATA, batch_size=2, epochs=10, shuffle=False, verbose=0,
                        callbacks=[cbs.EarlyStopping(monitor="loss", patience=2, verbose=1)])
    assert history.epoch == [0, 1, 2]
    assert capsys.readouterr().out == "Epoch 3: early stopping\n"


class WeightSnapshots(cbs.Callback):
    """Keeps a copy of the model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_early_stopping_end_to_end_restores_the_best_weights():
    # The loss goes down while training; mode='max' makes epoch 0 the best, so training stops
    # after epoch 1 and the weights at the end of epoch 0 come back.
    snapshots = WeightSnapshots()
    model = compiled(keras.optimizers.SGD(learning_rate=0.5))
    history = model.fit(*DATA, batch_size=2, epochs=10, shuffle=False, verbose=0, callbacks=[
        snapshots, cbs.EarlyStopping(monitor="loss", mode="max", patience=1,
                                     restore_best_weights=True)])
    assert history.history["loss"][1] < history.history["loss"][0]
    assert history.epoch == [0, 1]
    assert same_weights(model.get_weights(), snapshots.weights[0])
    assert not same_weights(model.get_weights(), snapshots.weights[1])


# --- ModelCheckpoint (10.3)


def test_model_checkpoint_formats_file_names_from_epoch_and_logs(tmp_path):
    model = compiled()
    pattern = str(tmp_path / "ep{epoch:02d}-{val_loss:.2f}-{accuracy:.3f}.weights.fastdnn")
    history = model.fit(*DATA, batch_size=2, epochs=3, validation_data=VAL, verbose=0,
                        callbacks=[cbs.ModelCheckpoint(pattern, save_weights_only=True)])
    h = history.history
    expected = sorted(f"ep{e + 1:02d}-{h['val_loss'][e]:.2f}-{h['accuracy'][e]:.3f}"
                      ".weights.fastdnn" for e in range(3))
    assert sorted(os.listdir(tmp_path)) == expected


def test_model_checkpoint_weights_file_holds_that_epochs_weights(tmp_path):
    snapshots = WeightSnapshots()
    model = compiled()
    model.fit(*DATA, batch_size=2, epochs=2, verbose=0, callbacks=[
        snapshots, cbs.ModelCheckpoint(str(tmp_path / "w{epoch}.weights.fastdnn"),
                                       save_weights_only=True)])
    assert not same_weights(snapshots.weights[0], snapshots.weights[1])
    model.load_weights(str(tmp_path / "w1.weights.fastdnn"))
    assert same_weights(model.get_weights(), snapshots.weights[0])
    model.load_weights(str(tmp_path / "w2.weights.fastdnn"))
    assert same_weights(model.get_weights(), snapshots.weights[1])


def test_model_checkpoint_saves_a_whole_model(tmp_path):
    model = compiled(keras.optimizers.Adam())
    path = str(tmp_path / "sub" / "dir" / "model-{epoch}.fastdnn")
    model.fit(*DATA, batch_size=2, epochs=2, verbose=0, callbacks=[cbs.ModelCheckpoint(path)])
    loaded = keras.models.load_model(str(tmp_path / "sub" / "dir" / "model-2.fastdnn"))
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.optimizer.iterations == 6
    assert os.path.exists(tmp_path / "sub" / "dir" / "model-1.fastdnn")


def test_model_checkpoint_save_best_only_saves_on_strict_improvement(tmp_path, capsys):
    model = compiled(keras.optimizers.SGD(learning_rate=0.5))
    x, y = tiny_data(8, dtype=np.float32)
    path = str(tmp_path / "ep{epoch:02d}.weights.fastdnn")
    history = model.fit(x, y, batch_size=2, epochs=6, validation_split=0.25, verbose=0,
                        callbacks=[cbs.ModelCheckpoint(path, monitor="val_accuracy",
                                                       save_best_only=True,
                                                       save_weights_only=True, verbose=1)])
    values = history.history["val_accuracy"]
    best, improved = None, []
    for epoch, value in enumerate(values):
        if best is None or value > best:
            best = value
            improved.append(epoch)
    assert sorted(os.listdir(tmp_path)) == [f"ep{e + 1:02d}.weights.fastdnn" for e in improved]
    out = capsys.readouterr().out
    first = path.format(epoch=1)
    assert out.startswith(f"\nEpoch 1: val_accuracy improved from None to {values[0]:.5f}, "
                          f"saving model to {first}\n\nEpoch 1: finished saving model to "
                          f"{first}\n")
    for epoch in range(1, 6):
        if epoch not in improved:
            assert f"\nEpoch {epoch + 1}: val_accuracy did not improve from " in out


def test_model_checkpoint_verbose_messages_without_save_best_only(tmp_path, capsys):
    model = compiled()
    path = str(tmp_path / "m.fastdnn")
    model.fit(*DATA, batch_size=3, epochs=1, verbose=0,
              callbacks=[cbs.ModelCheckpoint(path, verbose=1)])
    assert capsys.readouterr().out == (f"\nEpoch 1: saving model to {path}\n"
                                       f"\nEpoch 1: finished saving model to {path}\n")


def test_model_checkpoint_initial_value_threshold_must_be_beaten(tmp_path):
    model = compiled(keras.optimizers.SGD(learning_rate=0.0))
    path = str(tmp_path / "m{epoch}.fastdnn")
    model.fit(*DATA, batch_size=3, epochs=2, validation_data=VAL, verbose=0,
              callbacks=[cbs.ModelCheckpoint(path, save_best_only=True,
                                             initial_value_threshold=0.0)])
    assert os.listdir(tmp_path) == []


def test_model_checkpoint_missing_monitor_warns_and_saves_anyway(tmp_path):
    model = compiled()
    path = str(tmp_path / "m{epoch}.fastdnn")
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        model.fit(*DATA, batch_size=3, epochs=2, verbose=0,
                  callbacks=[cbs.ModelCheckpoint(path, save_best_only=True)])
    assert sorted(os.listdir(tmp_path)) == ["m1.fastdnn", "m2.fastdnn"]


def test_model_checkpoint_every_n_batches_names_the_batch(tmp_path):
    model = compiled()
    x, y = tiny_data(8, dtype=np.float32)
    path = str(tmp_path / "b{batch}-e{epoch}.weights.fastdnn")
    model.fit(x, y, batch_size=2, epochs=2, verbose=0,
              callbacks=[cbs.ModelCheckpoint(path, save_weights_only=True, save_freq=3)])
    # 4 batches per epoch: the 3rd and the 6th batch overall are saved
    assert sorted(os.listdir(tmp_path)) == ["b2-e2.weights.fastdnn", "b3-e1.weights.fastdnn"]


@pytest.mark.parametrize("path, kwargs, message", [
    ("w.fastdnn", {"save_weights_only": True},
     "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end "
     "in `.weights.h5`"),
    ("w.h5", {"save_weights_only": True}, "must end in `.weights.h5`"),
    ("m.h5", {}, "The filepath provided must end in `.keras`"),
    ("m.fastdnn", {"save_freq": "batch"}, "Unrecognized save_freq: batch"),
    ("m.fastdnn", {"save_freq": 0}, "Unrecognized save_freq: 0"),
])
def test_model_checkpoint_refuses_bad_arguments(tmp_path, path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cbs.ModelCheckpoint(str(tmp_path / path), **kwargs)


def test_model_checkpoint_unknown_key_in_the_file_name_raises_key_error(tmp_path):
    model = compiled()
    path = str(tmp_path / "m{nokey}.fastdnn")
    with pytest.raises(KeyError, match="Failed to format this callback filepath"):
        model.fit(*DATA, batch_size=3, verbose=0, callbacks=[cbs.ModelCheckpoint(path)])


# --- TerminateOnNaN and fastdnn's own stop (10.4)


def diverging_model():
    """A linear unit trained with SGD(1.0) on x=10, y=0: w is multiplied by -199 each step,
    and the 9th batch's loss (batch 8) overflows float32."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    model.set_weights([np.ones((1, 1))])
    model.compile(keras.optimizers.SGD(learning_rate=1.0), "mse")
    return model, np.full((30, 1), 10.0), np.zeros(30)


class WeightLog(cbs.Callback):
    def __init__(self):
        super().__init__()
        self.after = []

    def on_train_batch_end(self, batch, logs=None):
        self.after.append(self.model.get_weights())


@pytest.mark.parametrize("with_callback", [False, True])
def test_non_finite_loss_stops_and_keeps_the_weights_before_the_bad_step(with_callback,
                                                                         capsys):
    model, x, y = diverging_model()
    log = WeightLog()
    extra = [cbs.TerminateOnNaN()] if with_callback else []
    history = model.fit(x, y, batch_size=1, epochs=3, shuffle=False, verbose=0,
                        validation_data=(np.ones((2, 1)), np.zeros(2)), callbacks=extra + [log])
    assert capsys.readouterr().out == "Batch 8: Invalid loss, terminating training\n"
    assert model.optimizer.iterations == 8
    assert history.epoch == [0]
    assert history.history["loss"] == [math.inf]
    assert math.isfinite(history.history["val_loss"][0])
    w = model.get_weights()[0][0, 0]
    assert w == pytest.approx((-199.0) ** 8, rel=1e-5)
    assert same_weights(model.get_weights(), log.after[7])


def test_terminate_on_nan_raise_error_raises_runtime_error():
    model, x, y = diverging_model()
    recorder = Recorder()
    with pytest.raises(RuntimeError, match="NaN or Inf found in loss at batch 8"):
        model.fit(x, y, batch_size=1, shuffle=False, verbose=0,
                  callbacks=[cbs.TerminateOnNaN(raise_error=True), recorder])
    assert ("on_train_end", None) not in recorder.calls
    assert model.get_weights()[0][0, 0] == pytest.approx((-199.0) ** 8, rel=1e-5)


def test_non_finite_loss_at_the_first_batch_changes_no_weight(capsys):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    weights = model.get_weights()
    weights[0][...] = 3e38
    model.set_weights(weights)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(np.full((6, 3), 10.0), [0, 1] * 3, batch_size=2, epochs=2,
                        verbose=0)
    assert capsys.readouterr().out == "Batch 0: Invalid loss, terminating training\n"
    assert same_weights(model.get_weights(), weights)
    assert model.optimizer.iterations == 0
    assert not math.isfinite(history.history["loss"][0])


def test_terminate_on_nan_stops_on_a_non_finite_logged_loss(capsys):
    class Stub:
        stop_training = False

    callback = cbs.TerminateOnNaN()
    callback.set_model(Stub())
    callback.on_train_batch_end(0, {"loss": 1.0})
    assert not callback.model.stop_training
    callback.on_train_batch_end(4, {"loss": float("nan")})
    assert callback.model.stop_training
    assert capsys.readouterr().out == "Batch 4: Invalid loss, terminating training\n"


def test_finite_training_emits_no_warning_and_no_stop_message(capsys):
    model = compiled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = model.fit(*DATA, batch_size=2, epochs=2, verbose=0,
                            callbacks=[cbs.TerminateOnNaN()])
    assert history.epoch == [0, 1]
    assert capsys.readouterr().out == ""
