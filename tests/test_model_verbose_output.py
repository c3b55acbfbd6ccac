"""What fit, evaluate and predict print for verbose 0, 1 and 2 (docs/keras-reference.md 8.6).
"""

import re

import numpy as np
import pytest
from _api_helpers import compiled_tiny, fmt, fresh_names, tiny_data  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

BAR = "━" * 20
STEP_TIME = r"\d+(s|ms|us)/step"


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
