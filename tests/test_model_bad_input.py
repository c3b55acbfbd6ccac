"""Bad input to fit/evaluate/predict is refused before any weight changes; array-likes train
exactly like the float32 array (fastdnn's documented improvements, docs/keras-reference.md
section 14).
"""

import re

import numpy as np
import pytest
from _api_helpers import (  # noqa: F401
    chapter_model,
    compiled_tiny,
    fresh_names,
    image_data,
    same_weights,
    tiny_data,
    tiny_model,
)

import fastdnn as keras

pytestmark = pytest.mark.usefixtures("fresh_names")


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
