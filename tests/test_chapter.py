"""The textbook chapter's scripts (deep neural networks on Fashion-MNIST), run unchanged with
``import fastdnn as keras`` on small synthetic data.

Each test follows one part of the chapter: the sigmoid network on flattened inputs, the three
ways of building a model, ``summary()``, ReLU with Flatten, and the optimizers. The summary text
is compared line by line with Keras 3's real output (docs/keras-reference.md 7.6), the rest with
Keras' shapes, printed formats and formulas.
"""

import re
from pathlib import Path

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import chapter_model, fresh_names, image_data, softmax  # noqa: F401
from _helpers import KERAS_SUMMARY

pytestmark = pytest.mark.usefixtures("fresh_names")


# The same model after compile("adam", ...) and fit (observed, 7.6).
KERAS_ADAM_FOOTER = """\
 Total params: 238,532 (931.77 KB)
 Trainable params: 79,510 (310.59 KB)
 Non-trainable params: 0 (0.00 B)
 Optimizer params: 159,022 (621.18 KB)
"""

# The chapter's first model: Dense(100, sigmoid, input_shape=(784,)) then Dense(10, softmax).
DENSE_ONLY_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 100)            │        78,500 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │         1,010 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 79,510 (310.59 KB)
 Trainable params: 79,510 (310.59 KB)
 Non-trainable params: 0 (0.00 B)
"""

BAR = "━" * 20


@pytest.fixture(autouse=True)
def captured_width(monkeypatch):
    """Keras' width rule reads $COLUMNS first; the reference text is for a pipe (80 columns)."""
    monkeypatch.delenv("COLUMNS", raising=False)


def fashion_like(n=256, seed=0):
    """The chapter's data preparation on synthetic images: x/255, a train/validation split."""
    train_input, train_target = image_data(n, seed)
    train_scaled = train_input / 255.0
    cut = n * 4 // 5
    return (train_scaled[:cut], train_target[:cut]), (train_scaled[cut:], train_target[cut:])


def assert_lines_equal(actual, expected):
    actual_lines, expected_lines = actual.splitlines(), expected.splitlines()
    for i, (a, e) in enumerate(zip(actual_lines, expected_lines)):
        assert a == e, f"line {i}: {a!r} != {e!r}"
    assert len(actual_lines) == len(expected_lines)
    assert actual.endswith("\n")


def test_the_embedded_keras_text_is_the_reference_documents():
    doc = Path(__file__).resolve().parent / "fixtures" / "keras_summary_example.md"
    section = doc.read_text(encoding="utf-8").split("### 7.6", 1)[1]
    blocks = re.findall(r"```\n(.*?)```", section, re.S)
    assert blocks[0] == KERAS_SUMMARY
    assert blocks[1] == KERAS_ADAM_FOOTER
    assert "(with `\"sgd\"`: ` Optimizer params: 2 (8.00 B)`)" in section


# --- building and summary


@pytest.mark.parametrize("how", ["list", "add", "input_shape"])
def test_each_way_of_building_prints_the_keras_summary(how, capsys):
    model = chapter_model(how)
    model.summary()
    assert_lines_equal(capsys.readouterr().out, KERAS_SUMMARY)


def test_summary_print_fn_gets_the_whole_text_once():
    calls = []
    chapter_model().summary(print_fn=calls.append)
    assert calls == [KERAS_SUMMARY]


def test_every_table_line_is_76_characters_and_nothing_trails(capsys):
    chapter_model().summary()
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) == 76 for line in lines[1:10])
    assert all(line == line.rstrip() for line in lines)


def test_summary_after_adam_fit_adds_the_optimizer_footer(capsys):
    (x, y), _ = fashion_like(64)
    model = chapter_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    assert_lines_equal(capsys.readouterr().out, KERAS_SUMMARY)  # not after compile alone
    model.fit(x, y, epochs=1, verbose=0)
    model.summary()
    expected = KERAS_SUMMARY.replace(KERAS_SUMMARY[KERAS_SUMMARY.index(" Total"):],
                                     KERAS_ADAM_FOOTER)
    assert_lines_equal(capsys.readouterr().out, expected)


def test_summary_after_sgd_fit_counts_two_optimizer_scalars(capsys):
    (x, y), _ = fashion_like(64)
    model = chapter_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    model.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4:] == [" Total params: 79,512 (310.59 KB)",
                          " Trainable params: 79,510 (310.59 KB)",
                          " Non-trainable params: 0 (0.00 B)",
                          " Optimizer params: 2 (8.00 B)"]


def test_summary_after_evaluate_already_counts_the_optimizer(capsys):
    _, (x_val, y_val) = fashion_like(64)
    model = chapter_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.evaluate(x_val, y_val, verbose=0)
    model.summary()
    assert capsys.readouterr().out.endswith(KERAS_ADAM_FOOTER)


def test_unbuilt_model_summary_shows_question_marks(capsys):
    model = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(10)])
    model.summary()
    lines = capsys.readouterr().out.splitlines()
    assert lines[4] == "│ flatten (Flatten)               │ ?                      │   0 (unbuilt) │"
    assert lines[6] == "│ dense (Dense)                   │ ?                      │   0 (unbuilt) │"
    assert lines[-3:] == [" Total params: 0 (0.00 B)", " Trainable params: 0 (0.00 B)",
                          " Non-trainable params: 0 (0.00 B)"]


def test_empty_model_summary_prints_the_header_then_the_bottom_border():
    calls = []
    keras.Sequential().summary(print_fn=calls.append)
    lines = calls[0].splitlines()
    assert lines[:5] == KERAS_SUMMARY.splitlines()[:4] + [
        "└─────────────────────────────────┴────────────────────────┴───────────────┘"]
    assert lines[5:] == [" Total params: 0 (0.00 B)", " Trainable params: 0 (0.00 B)",
                         " Non-trainable params: 0 (0.00 B)"]


def test_summary_line_length_88_is_the_wide_terminal_layout(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    calls = []
    chapter_model().summary(print_fn=calls.append)
    lines = calls[0].splitlines()
    assert all(len(line) == 88 for line in lines[1:10])
    assert lines[4] == ("│ flatten (Flatten)                    │ (None, 784)                 │"
                        "               0 │")


# --- the chapter's scripts


def test_chapter_sigmoid_network_on_flattened_inputs(capsys):
    (train_scaled, train_target), (val_scaled, val_target) = fashion_like()
    train_scaled = train_scaled.reshape(-1, 28 * 28)
    val_scaled = val_scaled.reshape(-1, 28 * 28)

    with pytest.warns(UserWarning, match="input_shape"):
        dense1 = keras.layers.Dense(100, activation="sigmoid", input_shape=(784,))
    dense2 = keras.layers.Dense(10, activation="softmax")
    model = keras.Sequential([dense1, dense2])
    model.summary()
    assert_lines_equal(capsys.readouterr().out, DENSE_ONLY_SUMMARY)

    with pytest.warns(UserWarning, match="input_shape"):
        hidden = keras.layers.Dense(100, activation="sigmoid", input_shape=(784,), name="hidden")
    model = keras.Sequential([hidden, keras.layers.Dense(10, activation="softmax",
                                                         name="output")],
                             name="패션 MNIST 모델")
    model.summary()
    named = DENSE_ONLY_SUMMARY.replace('"sequential"', '"패션 MNIST 모델"').replace(
        "│ dense (Dense)                   │", "│ hidden (Dense)                  │").replace(
        "│ dense_1 (Dense)                 │", "│ output (Dense)                  │")
    assert "hidden (Dense)" in named and "output (Dense)" in named
    assert_lines_equal(capsys.readouterr().out, named)

    model = keras.Sequential()
    with pytest.warns(UserWarning, match="input_shape"):
        model.add(keras.layers.Dense(100, activation="sigmoid", input_shape=(784,)))
    model.add(keras.layers.Dense(10, activation="softmax"))
    capsys.readouterr()

    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    history = model.fit(train_scaled, train_target, epochs=5)
    out = capsys.readouterr().out.splitlines()
    assert out[0::2] == [f"Epoch {i}/5" for i in range(1, 6)]
    for line in out[1::2]:
        assert re.fullmatch(rf"7/7 {BAR} \d+s \d+(s|ms|us)/step - accuracy: \d\.\d{{4}} - "
                            rf"loss: \d\.\d{{4}}", line), line
    assert list(history.history) == ["accuracy", "loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]

    result = model.evaluate(val_scaled, val_target)
    line = capsys.readouterr().out
    assert isinstance(result, list) and len(result) == 2
    assert line.startswith(f"2/2 {BAR} ") and f"loss: {result[0]:.4f}" in line


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_chapter_relu_vs_sigmoid_predictions_follow_the_formulas(activation):
    (train_scaled, train_target), (val_scaled, _) = fashion_like()
    keras.utils.set_random_seed(1)
    model = keras.Sequential()
    with pytest.warns(UserWarning):
        model.add(keras.layers.Flatten(input_shape=(28, 28)))
    model.add(keras.layers.Dense(100, activation=activation))
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_scaled, train_target, epochs=2, verbose=0)
    w1, b1, w2, b2 = (w.astype(np.float64) for w in model.get_weights())
    z = val_scaled.reshape(len(val_scaled), -1) @ w1 + b1
    h = np.maximum(z, 0) if activation == "relu" else 1 / (1 + np.exp(-z))
    expected = softmax(h @ w2 + b2)
    got = model.predict(val_scaled, verbose=0)
    assert got.shape == (len(val_scaled), 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_relu_learns_the_synthetic_task_better_than_chance():
    (train_scaled, train_target), (val_scaled, val_target) = fashion_like(512)
    keras.utils.set_random_seed(42)
    model = chapter_model("input_shape", "relu")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train_scaled, train_target, epochs=5, verbose=0,
                        validation_data=(val_scaled, val_target))
    assert history.history["val_accuracy"][-1] > 0.5
    loss, accuracy = model.evaluate(val_scaled, val_target, verbose=0)
    assert accuracy == pytest.approx(history.history["val_accuracy"][-1])
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)


OPTIMIZERS = {
    "sgd string": lambda: "sgd",
    "SGD(learning_rate=0.1)": lambda: keras.optimizers.SGD(learning_rate=0.1),
    "SGD(momentum=0.9, nesterov=True)": lambda: keras.optimizers.SGD(momentum=0.9,
                                                                     nesterov=True),
    "SGD(learning_rate=0.1, momentum=0.9, nesterov=True)":
        lambda: keras.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    "Adagrad()": lambda: keras.optimizers.Adagrad(),
    "RMSprop()": lambda: keras.optimizers.RMSprop(),
    "Adam()": lambda: keras.optimizers.Adam(),
    "adam string": lambda: "adam",
}

# Optimizer params line after fit: 2 scalars + slots per weight (1.1), 4 bytes each.
OPTIMIZER_FOOTER = {
    "sgd string": " Optimizer params: 2 (8.00 B)",
    "SGD(learning_rate=0.1)": " Optimizer params: 2 (8.00 B)",
    "SGD(momentum=0.9, nesterov=True)": " Optimizer params: 79,512 (310.59 KB)",
    "SGD(learning_rate=0.1, momentum=0.9, nesterov=True)":
        " Optimizer params: 79,512 (310.59 KB)",
    "Adagrad()": " Optimizer params: 79,512 (310.59 KB)",
    "RMSprop()": " Optimizer params: 79,512 (310.59 KB)",
    "Adam()": " Optimizer params: 159,022 (621.18 KB)",
    "adam string": " Optimizer params: 159,022 (621.18 KB)",
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_chapter_optimizers_train_the_relu_model(name, capsys):
    (train_scaled, train_target), (val_scaled, val_target) = fashion_like()
    keras.utils.set_random_seed(0)
    model = chapter_model("add", "relu")
    model.compile(optimizer=OPTIMIZERS[name](), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(train_scaled, train_target, epochs=3, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.optimizer.iterations == 3 * 7
    loss, accuracy = model.evaluate(val_scaled, val_target, verbose=0)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    capsys.readouterr()
    model.summary()
    assert capsys.readouterr().out.splitlines()[-1] == OPTIMIZER_FOOTER[name]


def test_chapter_dropout_model_and_predict():
    (train_scaled, train_target), (val_scaled, val_target) = fashion_like()
    model = keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(train_scaled, train_target, epochs=2, verbose=0,
                        validation_data=(val_scaled, val_target))
    assert list(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    preds = model.predict(val_scaled[:10], verbose=0)
    assert preds.shape == (10, 10)
    labels = np.argmax(preds, axis=-1)
    assert labels.shape == (10,) and labels.dtype.kind == "i"
    assert [l.name for l in model.layers] == ["flatten", "dense", "dropout", "dense_1"]
