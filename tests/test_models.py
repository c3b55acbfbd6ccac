"""The Sequential model API: building, naming, compile, fit/evaluate/predict, bad input.

Expected behaviour is Keras 3's (docs/keras-reference.md sections 6, 8, 9, 11) and fastdnn's
documented improvements (section 14: array-likes accepted, bad data refused before training).
"""

import re
import warnings

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import (chapter_model, float64, fresh_names, image_data,  # noqa: F401
                          same_weights, tiny_data, tiny_model)

pytestmark = pytest.mark.usefixtures("fresh_names")

BAR = "━" * 20
STEP_TIME = r"\d+(s|ms|us)/step"


def fmt(v):
    """A metric value as the verbose=1 line prints it (8.6)."""
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def compiled_tiny(optimizer="sgd", metrics=("accuracy",), **kwargs):
    model = tiny_model(**kwargs)
    model.compile(optimizer, "sparse_categorical_crossentropy",
                  metrics=list(metrics) if metrics else None)
    return model


# --- namespaces


def test_public_namespaces_expose_the_keras_names():
    assert keras.Sequential is keras.models.Sequential
    assert keras.Input is keras.layers.Input
    for name in ("Input", "InputLayer", "Dense", "Flatten", "Dropout", "Activation", "ReLU",
                 "Softmax"):
        assert callable(getattr(keras.layers, name)), name
    for name in ("SGD", "Adagrad", "RMSprop", "Adam"):
        assert isinstance(getattr(keras.optimizers, name)(), keras.optimizers.Optimizer)
    for name in ("History", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN"):
        assert issubclass(getattr(keras.callbacks, name), keras.callbacks.Callback)
    assert isinstance(keras.optimizers.get("adam"), keras.optimizers.Adam)
    assert callable(keras.models.load_model)
    assert callable(keras.utils.set_random_seed)
    assert callable(keras.config.set_floatx)
    assert callable(keras.activations.relu)
    assert callable(keras.losses.sparse_categorical_crossentropy)
    assert callable(keras.metrics.sparse_categorical_accuracy)


# --- structure: add, layers, pop, names


def test_three_ways_of_building_give_the_same_built_model():
    shapes = []
    for how in ("list", "add", "input_shape"):
        model = chapter_model(how)
        assert model.built
        assert model.input_shape == (None, 28, 28)
        assert model.output_shape == (None, 10)
        shapes.append([w.shape for w in model.get_weights()])
        assert [type(l).__name__ for l in model.layers] == ["Flatten", "Dense", "Dense"]
    assert shapes[0] == shapes[1] == shapes[2] == [(784, 100), (100,), (100, 10), (10,)]


def test_layers_are_auto_named_in_creation_order_across_models():
    first = chapter_model()
    second = chapter_model()
    assert first.name == "sequential" and second.name == "sequential_1"
    assert [l.name for l in first.layers] == ["flatten", "dense", "dense_1"]
    assert [l.name for l in second.layers] == ["flatten_1", "dense_2", "dense_3"]


def test_explicit_names_consume_no_number():
    assert keras.Sequential().name == "sequential"
    assert keras.Sequential(name="x").name == "x"
    assert keras.Sequential().name == "sequential_1"
    assert keras.layers.Dense(2, name="hidden").name == "hidden"
    assert keras.layers.Dense(2).name == "dense"


def test_clear_session_resets_the_name_counters():
    keras.layers.Dense(1)
    keras.Sequential()
    keras.utils.clear_session()
    assert keras.layers.Dense(1).name == "dense"
    assert keras.Sequential().name == "sequential"


def test_unicode_names_work_everywhere():
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="relu", name="은닉층"),
        keras.layers.Dense(2, activation="softmax", name="출력층"),
    ], name="패션 MNIST 모델")
    assert model.name == "패션 MNIST 모델"
    assert [l.name for l in model.layers] == ["은닉층", "출력층"]
    texts = []
    model.summary(print_fn=texts.append)
    assert texts[0].startswith('Model: "패션 MNIST 모델"\n')
    assert "은닉층 (Dense)" in texts[0]


def test_name_with_a_slash_is_refused():
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        keras.Sequential(name="a/b")
    with pytest.raises(ValueError, match="cannot contain character `/`"):
        keras.layers.Dense(2, name="a/b")


def test_duplicate_layer_names_are_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    with pytest.raises(ValueError, match="Name 'd' is already the name of a layer in this model"):
        model.add(keras.layers.Dense(2, name="d"))
    assert [l.name for l in model.layers] == ["d"]


@pytest.mark.parametrize("thing", [3, "relu", np.zeros(3)])
def test_adding_something_that_is_not_a_layer_is_an_error(thing):
    model = keras.Sequential()
    with pytest.raises(ValueError, match="Only instances of `keras.Layer` can be added"):
        model.add(thing)


def test_a_second_input_is_an_error():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has already been configured to use input shape "
                                         r"\(None, 3\)"):
        model.add(keras.Input((3,)))


def test_layers_attribute_omits_the_input_and_cannot_be_assigned():
    model = chapter_model()
    assert len(model.layers) == 3
    assert not any(isinstance(l, keras.layers.InputLayer) for l in model.layers)
    model.layers.append(keras.layers.Dense(1))  # a copy: the model is unchanged
    assert len(model.layers) == 3
    with pytest.raises(AttributeError, match="`Sequential.layers` attribute is reserved"):
        model.layers = []


def test_pop_removes_the_top_layer_and_keeps_the_others_weights():
    model = chapter_model()
    before = model.layers[1].get_weights()
    top = model.pop()
    assert top.name == "dense_1"
    assert [l.name for l in model.layers] == ["flatten", "dense"]
    assert model.output_shape == (None, 100)
    assert same_weights(model.layers[1].get_weights(), before)
    assert model.count_params() == 78_500
    assert np.shares_memory(model.layers[1].kernel.value, model.params)


def test_pop_on_an_empty_model_raises_index_error():
    with pytest.raises(IndexError):
        keras.Sequential().pop()


def test_adding_to_a_built_model_keeps_the_existing_weights():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    before = model.get_weights()
    model.add(keras.layers.Dense(2, activation="softmax"))
    assert same_weights(model.get_weights()[:2], before)
    assert model.count_params() == 16 + 10


def test_model_without_input_stays_unbuilt_until_first_use():
    model = keras.Sequential([keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    assert not model.built
    assert model.weights == [] and model.get_weights() == []
    out = model.predict(np.ones((5, 7)), verbose=0)
    assert model.built
    assert model.input_shape == (None, 7)
    assert out.shape == (5, 2)
    assert [w.shape for w in model.get_weights()] == [(7, 4), (4,), (4, 2), (2,)]


def test_build_with_an_input_shape():
    model = keras.Sequential([keras.layers.Dense(3)])
    model.build((None, 5))
    assert model.built and model.input_shape == (None, 5)
    assert model.count_params() == 18


def test_building_an_empty_model_is_an_error():
    with pytest.raises(ValueError, match="cannot be built because it has no layers"):
        keras.Sequential().build((None, 3))


def test_input_shape_on_the_first_layer_builds_the_model_and_warns():
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`/`input_dim` argument"):
        dense = keras.layers.Dense(4, input_dim=3)
    model = keras.Sequential([dense])
    assert model.built and model.input_shape == (None, 3)


def test_input_shape_on_a_later_layer_is_ignored_with_a_warning():
    with pytest.warns(UserWarning, match="Do not pass an `input_shape`"):
        later = keras.layers.Dense(2, input_shape=(99,))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), later])
    assert model.input_shape == (None, 3)
    assert later.kernel.shape == (4, 2)


def test_repr_of_model_and_layer():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert repr(model) == "<Sequential name=sequential, built=True>"
    assert repr(model.layers[0]) == "<Dense name=dense, built=True>"


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


# --- compile


def test_compile_defaults_to_rmsprop_and_accepts_optimizer_strings_in_any_case():
    model = tiny_model()
    model.compile(loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    for name, cls in (("Adam", keras.optimizers.Adam), ("SGD", keras.optimizers.SGD),
                      ("adagrad", keras.optimizers.Adagrad), ("RMSPROP", keras.optimizers.RMSprop)):
        model.compile(name, "sparse_categorical_crossentropy")
        assert type(model.optimizer) is cls


def test_compile_uses_an_optimizer_object_as_given():
    opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    model = tiny_model()
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    assert model.optimizer is opt


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "foo", "loss": "mse"}, "Could not interpret optimizer identifier: foo"),
    ({"optimizer": "nesterov", "loss": "mse"}, "Could not interpret optimizer identifier: nesterov"),
    ({"optimizer": "adam", "loss": "foo"}, "Could not interpret loss identifier: foo"),
    ({"optimizer": "adam", "loss": "Mse"}, "Could not interpret loss identifier: Mse"),
    ({"optimizer": "adam", "loss": "mse", "metrics": ["foo"]},
     "Could not interpret metric identifier: foo"),
    ({"optimizer": "adam", "loss": "mse", "metrics": "accuracy"},
     "Expected `metrics` argument to be a list, tuple, or dict"),
    ({"optimizer": "adam", "loss": "mse", "engine": "torch"}, "`engine` must be one of"),
])
def test_compile_refuses_unknown_names(kwargs, message):
    model = tiny_model()
    with pytest.raises(ValueError, match=re.escape(message)):
        model.compile(**kwargs)


def test_unknown_activation_string_is_refused_at_construction():
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: "
                                         "ReLU"):
        keras.layers.Dense(3, activation="ReLU")


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


# --- printing


def test_verbose_1_into_a_pipe_prints_each_finished_line_once(capsys):
    model = compiled_tiny()
    x, y = tiny_data(8, dtype=np.float32)
    history = model.fit(x, y, batch_size=3, epochs=2, validation_split=0.25)
    out = capsys.readouterr().out
    assert not re.search("[\r\b\x1b]", out)
    lines = out.splitlines()
    assert len(lines) == 4
    h = history.history
    for epoch in range(2):
        assert lines[2 * epoch] == f"Epoch {epoch + 1}/2"
        metrics = (f" - accuracy: {fmt(h['accuracy'][epoch])} - loss: {fmt(h['loss'][epoch])}"
                   f" - val_accuracy: {fmt(h['val_accuracy'][epoch])}"
                   f" - val_loss: {fmt(h['val_loss'][epoch])}")
        assert re.fullmatch(rf"2/2 {BAR} \d+s {STEP_TIME}" + re.escape(metrics),
                            lines[2 * epoch + 1]), lines[2 * epoch + 1]


def test_verbose_1_with_one_epoch_prints_no_epoch_line(capsys):
    model = compiled_tiny()
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(rf"3/3 {BAR} \d+s {STEP_TIME} - accuracy: \S+ - loss: \S+", lines[0])


def test_verbose_2_prints_one_plain_line_per_epoch(capsys):
    model = compiled_tiny()
    x, y = tiny_data(6, dtype=np.float32)
    history = model.fit(x, y, batch_size=2, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    h = history.history
    for epoch, line in ((0, lines[1]), (1, lines[3])):
        acc, loss = h["accuracy"][epoch], h["loss"][epoch]
        acc_text = f"{acc:.4f}" if acc > 1e-3 else f"{acc:.4e}"
        assert re.fullmatch(rf"3/3 - \d+s - {STEP_TIME} - accuracy: {re.escape(acc_text)} - "
                            rf"loss: {loss:.4f}", line), line
    assert len(lines) == 4


def test_verbose_0_prints_nothing(capsys):
    model = compiled_tiny()
    x, y = tiny_data(6, dtype=np.float32)
    model.fit(x, y, batch_size=2, epochs=2, validation_split=0.3, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


def test_evaluate_and_predict_print_one_bar_line(capsys):
    model = compiled_tiny()
    x, y = tiny_data(70, dtype=np.float32)
    loss, acc = model.evaluate(x, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(rf"3/3 {BAR} \d+s {STEP_TIME} - accuracy: {re.escape(fmt(acc))} - "
                        rf"loss: {re.escape(fmt(loss))}", lines[0]), lines[0]
    model.evaluate(x, y, verbose=2)
    line = capsys.readouterr().out
    assert re.fullmatch(rf"3/3 - \d+s - {STEP_TIME} - accuracy: \S+ - loss: \S+\n", line), line
    model.predict(x)
    assert re.fullmatch(rf"3/3 {BAR} \d+s {STEP_TIME}\n", capsys.readouterr().out)
    model.predict(x, verbose=2)
    assert re.fullmatch(rf"3/3 - \d+s - {STEP_TIME}\n", capsys.readouterr().out)


def test_validation_during_fit_prints_no_extra_line(capsys):
    model = compiled_tiny()
    x, y = tiny_data(8, dtype=np.float32)
    model.fit(x, y, batch_size=2, validation_data=(x, y), verbose=1)
    assert len(capsys.readouterr().out.splitlines()) == 1


# --- evaluate and predict


def test_evaluate_return_forms():
    x, y = tiny_data(6, dtype=np.float32)
    model = compiled_tiny()
    result = model.evaluate(x, y, verbose=0)
    assert isinstance(result, list) and len(result) == 2
    assert all(type(v) is float for v in result)
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(as_dict) == ["accuracy", "loss"]
    assert as_dict == {"accuracy": result[1], "loss": result[0]}
    bare = compiled_tiny(metrics=None)
    loss = bare.evaluate(x, y, verbose=0)
    assert type(loss) is float and loss == pytest.approx(result[0])
    assert bare.evaluate(x, y, verbose=0, return_dict=True) == {"loss": loss}


def test_evaluate_is_independent_of_batch_size():
    x, y = tiny_data(11, dtype=np.float32)
    model = compiled_tiny()
    a = model.evaluate(x, y, batch_size=32, verbose=0)
    b = model.evaluate(x, y, batch_size=3, verbose=0)
    assert a == pytest.approx(b, rel=1e-6)


def test_evaluate_builds_the_optimizer_but_changes_no_weight():
    model = compiled_tiny("adam")
    before = model.get_weights()
    x, y = tiny_data(6, dtype=np.float32)
    model.evaluate(x, y, verbose=0)
    assert model.optimizer.built and model.optimizer.iterations == 0
    assert same_weights(model.get_weights(), before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int64])
def test_predict_returns_float32_probabilities_of_shape_n_by_units(dtype):
    model = chapter_model()
    x, _ = image_data(37)
    out = model.predict(x.astype(dtype), verbose=0)
    assert out.dtype == np.float32
    assert out.shape == (37, 10)
    assert np.allclose(out.sum(axis=1), 1, atol=1e-5)
    assert np.all(out >= 0)


def test_predict_does_not_need_compile_and_equals_calling_the_model():
    model = tiny_model()
    x, _ = tiny_data(5, dtype=np.float32)
    out = model.predict(x, batch_size=2, verbose=0)
    assert np.array_equal(out, model(x))
    assert np.array_equal(out, model.predict(x, batch_size=32, verbose=0))


def test_predict_in_float64_returns_the_model_float_type(float64):
    model = tiny_model()
    assert model.params.dtype == np.float64
    assert model.predict(tiny_data(3)[0], verbose=0).dtype == np.float64


# --- bad input: refused with a clear message before any weight changes


def _bad_fit_cases():
    x, y = image_data(32)
    y = y.astype(np.int64)
    x_nan = x.astype(np.float64)
    x_nan[3, 4, 5] = np.nan
    x_inf = x.astype(np.float64)
    x_inf[0, 0, 0] = -np.inf
    return {
        "length mismatch": (dict(x=x, y=y[:-1]), "x has 32 samples but y has 31"),
        "feature shape": (dict(x=x[:, :27], y=y), "the model expects (None, 28, 28)"),
        "flattened features": (dict(x=x.reshape(32, -1), y=y), "each sample must have shape"),
        "label too large": (dict(x=x, y=np.where(y == y[0], 10, y)),
                            "labels must lie in [0, 10)"),
        "negative label": (dict(x=x, y=np.where(y == y[0], -1, y)), "labels from -1"),
        "fractional label": (dict(x=x, y=y + 0.5), "must hold integer class ids"),
        "one-hot with sparse loss": (dict(x=x, y=np.eye(10)[y]), "same shape up until the last"),
        "NaN in x": (dict(x=x_nan, y=y), "`x` contains 1 NaN or infinite values"),
        "inf in x": (dict(x=x_inf, y=y), "`x` contains 1 NaN or infinite values"),
        "NaN in y": (dict(x=x, y=np.where(y == y[0], np.nan, y)), "`y` contains NaN"),
        "NaN in validation x": (dict(x=x, y=y, validation_data=(x_nan, y)),
                                "`validation_data[0]` contains 1 NaN"),
        "bad validation label": (dict(x=x, y=y, validation_data=(x, y + 10)),
                                 "labels must lie in [0, 10)"),
        "batch_size 0": (dict(x=x, y=y, batch_size=0), "`batch_size` must be a positive integer"),
        "batch_size -1": (dict(x=x, y=y, batch_size=-1), "`batch_size` must be a positive integer"),
        "batch_size 2.5": (dict(x=x, y=y, batch_size=2.5),
                           "`batch_size` must be a positive integer"),
        "validation_split 1": (dict(x=x, y=y, validation_split=1.0),
                               "`validation_split` must be a float in [0, 1)"),
        "validation_split negative": (dict(x=x, y=y, validation_split=-0.1),
                                      "`validation_split` must be a float in [0, 1)"),
        "validation_split 1.5": (dict(x=x, y=y, validation_split=1.5),
                                 "`validation_split` must be a float in [0, 1)"),
        "epochs negative": (dict(x=x, y=y, epochs=-1), "`epochs` must be a non-negative integer"),
        "verbose 3": (dict(x=x, y=y, verbose=3), "`verbose` must be 'auto', 0, 1 or 2"),
        "strings": (dict(x=np.full((2, 28, 28), "a"), y=[0, 1]), "`x` must hold numbers"),
        "ragged": (dict(x=[[1, 2], [3]], y=[0, 1]), "`x` cannot be converted to a numeric array"),
        "empty": (dict(x=x[:0], y=y[:0]), "`x` is empty"),
        "validation_data of one array": (dict(x=x, y=y, validation_data=(x,)),
                                         "`validation_data` must be a tuple (x_val, y_val)"),
        "validation_data length mismatch": (dict(x=x, y=y, validation_data=(x, y[:5])),
                                            "x has 32 samples but validation_data[1] has 5"),
    }


_BAD_FIT = _bad_fit_cases()


@pytest.mark.parametrize("case", sorted(_BAD_FIT))
def test_bad_fit_input_is_refused_before_any_weight_changes(case, capsys):
    kwargs, message = _BAD_FIT[case]
    model = chapter_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    before = model.get_weights()
    kwargs = {"verbose": 0, **kwargs}
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        model.fit(**kwargs)
    assert same_weights(model.get_weights(), before)
    assert model.optimizer.iterations == 0
    assert capsys.readouterr().out == ""


def test_fit_and_evaluate_before_compile_are_refused():
    model = chapter_model()
    before = model.get_weights()
    x, y = image_data(4)
    with pytest.raises(ValueError, match=re.escape("You must call `compile()` before using the "
                                                   "model.")):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=re.escape("You must call `compile()`")):
        model.evaluate(x, y, verbose=0)
    assert same_weights(model.get_weights(), before)


def test_fit_without_a_loss_is_refused():
    model = tiny_model()
    model.compile("adam")
    with pytest.raises(ValueError, match="No loss to compute"):
        model.fit(*tiny_data(4), verbose=0)


@pytest.mark.parametrize("call", ["evaluate", "predict"])
def test_evaluate_and_predict_refuse_bad_input_naming_it(call):
    model = chapter_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = image_data(8)
    x_nan = x.astype(np.float32)
    x_nan[0, 0, 0] = np.nan
    run = (lambda xs, **kw: model.evaluate(xs, y, verbose=0, **kw)) if call == "evaluate" else \
        (lambda xs, **kw: model.predict(xs, verbose=0, **kw))
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        run(x_nan)
    with pytest.raises(ValueError, match=re.escape("the model expects (None, 28, 28)")):
        run(x[:, :, :5])
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        run(x, batch_size=0)


def test_evaluate_refuses_out_of_range_labels():
    model = chapter_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = image_data(8)
    with pytest.raises(ValueError, match=re.escape("labels must lie in [0, 10)")):
        model.evaluate(x, y.astype(np.int64) + 10, verbose=0)


# --- array-likes


def _reference_run(x, y):
    model = compiled_tiny(keras.optimizers.SGD(learning_rate=0.1))
    history = model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0)
    return model.get_weights(), history.history


@pytest.mark.parametrize("form", ["nested lists", "float64", "uint8", "int32", "fortran",
                                  "strided", "float labels", "list labels", "column labels"])
def test_array_likes_train_exactly_like_the_float32_array(form):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 5, (6, 3)).astype(np.float32)
    labels = np.array([0, 1, 1, 0, 1, 0])
    x, y = base, labels
    if form == "nested lists":
        x = base.tolist()
    elif form in ("float64", "uint8", "int32"):
        x = base.astype(form)
    elif form == "fortran":
        x = np.asfortranarray(base)
    elif form == "strided":
        wide = np.zeros((12, 6), np.float32)
        wide[::2, ::2] = base
        x = wide[::2, ::2]
        assert not x.flags.c_contiguous
    elif form == "float labels":
        y = labels.astype(np.float64)
    elif form == "list labels":
        y = labels.tolist()
    else:
        y = labels.reshape(6, 1)
    expected = _reference_run(base, labels)
    got = _reference_run(x, y)
    assert same_weights(got[0], expected[0])
    assert got[1] == expected[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_input_arrays_are_not_modified(dtype):
    x, y = tiny_data(6, dtype=dtype)
    x_copy, y_copy = x.copy(), y.copy()
    model = compiled_tiny()
    model.fit(x, y, batch_size=2, verbose=0, validation_split=0.3)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert np.array_equal(x, x_copy) and np.array_equal(y, y_copy)


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
