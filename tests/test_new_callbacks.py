"""ReduceLROnPlateau, LearningRateScheduler, CSVLogger, LambdaCallback, and learning rates set
between epochs and between batches.

Expected behaviour: Keras 3's keras/src/callbacks/{reduce_lr_on_plateau,learning_rate_scheduler,
csv_logger,lambda_callback}.py; the learning-rate sequences below are worked out by hand from
those rules (a reduction when ``wait`` reaches ``patience``, ``cooldown`` epochs of rest, the
float32 learning-rate variable).
"""

import csv
import math
import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names, tiny_data, tiny_model  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

cbs = keras.callbacks
VAL_LOSSES = [1.0, 0.9, 0.95, 0.91, 0.92, 0.8, 0.85, 0.86, 0.87, 0.88]


class StubOptimizer:
    def __init__(self, learning_rate):
        self.learning_rate = learning_rate


class StubModel:
    def __init__(self, learning_rate=1.0):
        self.optimizer = StubOptimizer(learning_rate)
        self.stop_training = False


def drive(callback, values, monitor="val_loss", learning_rate=1.0):
    """Run fit's epoch loop on ``callback``; return the logged and the final learning rates."""
    model = StubModel(learning_rate)
    callback.set_model(model)
    callback.on_train_begin()
    logged = []
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    return logged, model.optimizer.learning_rate


@pytest.mark.parametrize("kwargs, logged, final", [
    ({"factor": 0.5, "patience": 2}, [1, 1, 1, 1, .5, .5, .5, .5, .25, .25], 0.125),
    ({"factor": 0.5, "patience": 1, "cooldown": 2}, [1, 1, 1, .5, .5, .25, .25, .125, .125, .0625],
     0.0625),
    ({"factor": 0.1, "patience": 1, "min_lr": 0.05}, None, 0.05),
    ({"factor": 0.5, "patience": 1, "min_delta": 0.2}, [1, 1, .5, .25, .125, .0625, .03125,
                                                        .015625, .0078125, .00390625], 0.001953125),
])
def test_reduce_lr_on_plateau_follows_keras_rules(kwargs, logged, final):
    got, lr = drive(cbs.ReduceLROnPlateau(**kwargs), VAL_LOSSES)
    if logged is not None:
        assert got == logged
    assert lr == pytest.approx(final, rel=1e-7)


def test_reduce_lr_on_plateau_max_mode_for_accuracy_and_messages(capsys):
    accuracies = [0.5, 0.6, 0.6, 0.55]
    got, lr = drive(cbs.ReduceLROnPlateau(monitor="val_accuracy", patience=2, verbose=1),
                    accuracies, monitor="val_accuracy", learning_rate=0.01)
    assert lr == pytest.approx(float(np.float32(0.01)) * 0.1)
    assert got[0] == float(np.float32(0.01))  # the float32 variable, as Keras logs it
    assert f"\nEpoch 4: ReduceLROnPlateau reducing learning rate to {lr}." in capsys.readouterr().out
    with pytest.raises(ValueError, match="factor >= 1.0"):
        cbs.ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="not available"):
        drive(cbs.ReduceLROnPlateau(), [1.0], monitor="loss")


def sgd_model(learning_rate=0.1):
    model = tiny_model()
    model.compile(keras.optimizers.SGD(learning_rate=learning_rate),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


DATA = tiny_data(6, dtype=np.float32)


def test_a_learning_rate_set_between_epochs_takes_effect():
    model = sgd_model()
    seen = []
    record = cbs.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(model.get_weights()))
    schedule = cbs.LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 0.0)
    history = model.fit(*DATA, epochs=3, batch_size=2, verbose=0, callbacks=[schedule, record])
    assert np.array_equal(seen[0][0], seen[2][0])  # lr 0 from epoch 1 on: no step
    assert history.history["learning_rate"] == [float(np.float32(0.1)), 0.0, 0.0]
    assert model.optimizer.iterations == 9


def test_a_learning_rate_set_in_a_batch_hook_applies_to_the_next_batch():
    model = sgd_model()
    before = model.get_weights()
    seen = []

    def after_batch(batch, logs):
        seen.append(model.get_weights())
        model.optimizer.learning_rate = 0.0

    model.fit(*DATA, epochs=1, batch_size=2, verbose=0,
              callbacks=[cbs.LambdaCallback(on_train_batch_end=after_batch)])
    assert len(seen) == 3
    assert not np.array_equal(before[0], seen[0][0])
    assert all(np.array_equal(seen[0][k], w) for k, w in enumerate(model.get_weights()))


def test_learning_rate_scheduler_keras_docstring_example():
    model = keras.Sequential([keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(), loss="mse")
    assert round(model.optimizer.learning_rate, 5) == 0.01

    def scheduler(epoch, lr):
        return lr if epoch < 10 else lr * math.exp(-0.1)

    # Keras' example fits np.arange(100).reshape(5, 20) to np.zeros(5), broadcast against the
    # (5, 10) output; unscaled, that diverges, which stops fastdnn (not Keras) at a NaN loss
    model.fit(np.arange(100).reshape(5, 20) / 100, np.zeros((5, 10)), epochs=15, verbose=0,
              callbacks=[cbs.LearningRateScheduler(scheduler)])
    assert round(model.optimizer.learning_rate, 5) == 0.00607


def test_learning_rate_scheduler_old_form_messages_and_errors(capsys):
    model = sgd_model()
    model.fit(*DATA, epochs=2, verbose=0,
              callbacks=[cbs.LearningRateScheduler(lambda epoch: 0.5 / (epoch + 1), verbose=1)])
    out = capsys.readouterr().out
    assert "\nEpoch 1: LearningRateScheduler setting learning rate to 0.5." in out
    assert "\nEpoch 2: LearningRateScheduler setting learning rate to 0.25." in out
    assert model.optimizer.learning_rate == 0.25
    with pytest.raises(ValueError, match="should be a float"):
        model.fit(*DATA, verbose=0, callbacks=[cbs.LearningRateScheduler(lambda e, lr: 1)])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_logger_writes_a_row_per_epoch_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    model = sgd_model()
    history = model.fit(*DATA, epochs=2, verbose=0, validation_data=tiny_data(3, seed=9),
                        callbacks=[cbs.CSVLogger(path)])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [int(r[0]) for r in rows[1:]] == [0, 1]
    for r, epoch in zip(rows[1:], range(2)):
        assert float(r[2]) == history.history["loss"][epoch]
        assert float(r[4]) == history.history["val_loss"][epoch]
    model.fit(*DATA, epochs=1, verbose=0, callbacks=[cbs.CSVLogger(path, append=True)])
    rows = read_rows(path)
    assert len(rows) == 4 and rows[3][0] == "0" and len(rows[3]) == 3  # no second header
    model.fit(*DATA, epochs=1, verbose=0, callbacks=[cbs.CSVLogger(path, separator=";")])
    with open(path) as f:
        assert f.readline().strip() == "epoch;accuracy;loss"


def test_lambda_callback_calls_its_functions_including_batch_and_other_hooks():
    calls = []
    callback = cbs.LambdaCallback(
        on_train_begin=lambda logs: calls.append("train_begin"),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, sorted(logs))),
        on_train_batch_end=lambda batch, logs: calls.append(("batch_end", batch)),
        on_test_end=lambda logs: calls.append("test_end"))
    assert callback.wants_every_batch() and not cbs.LambdaCallback().wants_every_batch()
    model = sgd_model()
    model.fit(*DATA, epochs=2, batch_size=2, verbose=0, validation_data=tiny_data(3, seed=9),
              callbacks=[callback])
    batches = [c for c in calls if isinstance(c, tuple) and c[0] == "batch_end"]
    assert batches == [("batch_end", b) for b in (0, 1, 2)] * 2
    assert calls[0] == "train_begin" and calls.count("test_end") == 2
    assert ("epoch_end", 1, ["accuracy", "loss", "val_accuracy", "val_loss"]) in calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(*DATA, verbose=0, callbacks=[cbs.LambdaCallback()])
