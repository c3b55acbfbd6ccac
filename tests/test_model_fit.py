"""Sequential.fit: the History it returns, initial_epoch, validation, the epoch loss, the
iteration counter (docs/keras-reference.md sections 1.3, 8).
"""

import warnings

import numpy as np
import pytest
from _api_helpers import (  # noqa: F401
    compiled_tiny,
    fresh_names,
    same_weights,
    tiny_data,
    tiny_model,
)

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


# --- fit: returns, history, validation


def test_fit_returns_history_with_alphabetical_keys_and_float_values():
    model = compiled_tiny()
    x, y = tiny_data(8, dtype=np.float32)
    history = model.fit(x, y, batch_size=2, epochs=3, validation_split=0.25, verbose=0)
    assert isinstance(history, keras.callbacks.History)
    assert model.history is history
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for values in history.history.values():
        assert len(values) == 3 and all(type(v) is float for v in values)
    assert history.epoch == [0, 1, 2]
    assert history.params == {"verbose": 0, "epochs": 3, "steps": 3}


def test_history_params_default_verbose_is_auto_and_steps_count_the_short_batch(capsys):
    model = compiled_tiny()
    x, y = tiny_data(7, dtype=np.float32)
    history = model.fit(x, y, batch_size=3)
    capsys.readouterr()
    assert history.params == {"verbose": "auto", "epochs": 1, "steps": 3}


def test_each_fit_call_makes_a_new_history():
    model = compiled_tiny()
    x, y = tiny_data(6, dtype=np.float32)
    first = model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    second = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert first is not second
    assert len(first.history["loss"]) == 2 and len(second.history["loss"]) == 1
    assert model.history is second


def test_initial_epoch_runs_the_remaining_epochs_and_numbers_them(capsys):
    model = compiled_tiny()
    x, y = tiny_data(6, dtype=np.float32)
    history = model.fit(x, y, batch_size=2, epochs=4, initial_epoch=2)
    out = capsys.readouterr().out
    assert history.epoch == [2, 3]
    assert len(history.history["loss"]) == 2
    assert [l for l in out.splitlines() if l.startswith("Epoch")] == ["Epoch 3/4", "Epoch 4/4"]


def test_epochs_not_above_initial_epoch_trains_nothing():
    model = compiled_tiny()
    before = model.get_weights()
    x, y = tiny_data(6, dtype=np.float32)
    history = model.fit(x, y, epochs=2, initial_epoch=2, verbose=0)
    assert history.history == {} and history.epoch == []
    assert same_weights(model.get_weights(), before)


@pytest.mark.parametrize("shuffle", [False, True])
def test_validation_split_takes_the_last_samples_before_shuffling(shuffle):
    x, y = tiny_data(8, seed=5, dtype=np.float32)
    model = compiled_tiny(keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, batch_size=3, validation_split=0.25, shuffle=shuffle, verbose=0)
    val_loss, val_acc = model.evaluate(x[6:], y[6:], verbose=0)
    train_loss, train_acc = model.evaluate(x[:6], y[:6], verbose=0)
    assert history.history["val_loss"] == [pytest.approx(val_loss, rel=1e-6)]
    assert history.history["val_accuracy"] == [pytest.approx(val_acc)]
    assert history.history["loss"] == [pytest.approx(train_loss, rel=1e-6)]
    head_loss = model.evaluate(x[:2], y[:2], verbose=0)[0]
    assert head_loss != pytest.approx(val_loss, rel=1e-3)


def test_validation_data_overrides_validation_split():
    x, y = tiny_data(8, seed=5, dtype=np.float32)
    model = compiled_tiny(keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, batch_size=4, validation_split=0.5,
                        validation_data=(x[:3], y[:3]), verbose=0)
    assert history.history["val_loss"] == [
        pytest.approx(model.evaluate(x[:3], y[:3], verbose=0)[0], rel=1e-6)]
    assert history.history["loss"] == [
        pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-6)]


def test_validation_split_too_small_for_the_data_is_an_error():
    model = compiled_tiny()
    with pytest.raises(ValueError, match="Training data contains 1 samples, which is not "
                                         "sufficient to split it"):
        model.fit(np.ones((1, 3)), [0], validation_split=0.5, verbose=0)


def test_epoch_loss_is_the_sample_weighted_mean_with_a_short_last_batch():
    # Learning rate 0: every batch sees the same weights, so the epoch loss must be the plain
    # mean over all samples, the short last batch weighing as much as its one sample.
    x, y = tiny_data(5, seed=2, dtype=np.float32)
    model = compiled_tiny(keras.optimizers.SGD(learning_rate=0.0))
    history = model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    p = model.predict(x, verbose=0).astype(np.float64)
    expected = np.mean(-np.log(p[np.arange(5), y]))
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert history.history["accuracy"][0] == pytest.approx(np.mean(p.argmax(1) == y))


def test_fit_with_zero_learning_rate_changes_no_weight():
    model = compiled_tiny(keras.optimizers.Adam(learning_rate=0.0))
    before = model.get_weights()
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert same_weights(model.get_weights(), before)


# --- iteration counter (1.3)


def test_iteration_counter_is_not_reset_by_a_new_fit():
    opt = keras.optimizers.SGD()
    model = tiny_model()
    model.compile(opt, "sparse_categorical_crossentropy")
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0)
    assert opt.iterations == 6
    model.fit(x[:2], y[:2], batch_size=2, epochs=2, verbose=0)
    assert opt.iterations == 8
    model.compile(opt, "sparse_categorical_crossentropy")
    assert model.optimizer.iterations == 8
    model.compile("sgd", "sparse_categorical_crossentropy")
    assert model.optimizer is not opt and model.optimizer.iterations == 0


def test_warnings_are_not_emitted_by_an_ordinary_fit():
    model = compiled_tiny("adam")
    x, y = tiny_data(6, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x, y, batch_size=2, epochs=2, validation_split=0.3, verbose=0)
        model.evaluate(x, y, verbose=0)
        model.predict(x, verbose=0)
