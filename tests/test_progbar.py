"""Tests of the progress bar against Keras 3's printed text (reference 8.5-8.7, 9.1, 9.2, 14.4)."""

import contextlib
import io
import re

import pytest

from fastdnn._progbar import Progbar, format_metric, format_step_time

BAR = "━" * 20
B, G, W, R = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


class FakeClock:
    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


class Recorder(io.StringIO):
    """A stream that keeps each write apart and can pose as a terminal."""

    def __init__(self, tty=False):
        super().__init__()
        self.tty = tty
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return super().write(text)

    def isatty(self):
        return self.tty


def make(target, verbose=1, interactive=True):
    clock, stream = FakeClock(), Recorder()
    bar = Progbar(target, verbose, stream=stream, interactive=interactive, clock=clock)
    return bar, clock, stream


def step(bar, clock, at, current, values=None, finalize=None):
    clock.now = at
    bar.update(current, values, finalize)


def visible(message):
    """What a terminal shows after `message`: the text after the last "\\r", unstyled."""
    return re.sub(r"\x1b\[\d+m", "", message.rsplit("\r", 1)[-1])


# --- interactive redraws (8.6) ---


def test_first_redraw_is_exactly_keras_escape_sequence():
    bar, clock, stream = make(10)
    step(bar, clock, 0.5, 1, [("loss", 0.5)])
    assert stream.writes == [
        f"\r{B} 1/10{R} {G}━━{R}{W}{'━' * 18}{R} {B}4s{R} 500ms/step - loss: 0.5000"
    ]


def test_final_redraw_backspaces_over_previous_line_and_ends_the_line():
    bar, clock, stream = make(10)
    step(bar, clock, 0.5, 1, [("loss", 0.5)])
    step(bar, clock, 1.4, 10, [("loss", 0.125)])
    # The previous line was 55 visible characters; the grey group is written even empty.
    assert stream.writes[-1] == (
        "\b" * 55 + f"\r{B}10/10{R} {G}{BAR}{R}{W}{R} {B}1s{R} 100ms/step - loss: 0.1250\n"
    )


def test_step_time_leaves_the_first_step_out():
    bar, clock, stream = make(100)
    step(bar, clock, 10.0, 1)  # a slow first step (compilation, warm-up)
    step(bar, clock, 11.0, 11)  # 1 s for steps 2-11; counting step 1 would give 1s/step
    assert visible(stream.writes[-1]).rstrip() == f" 11/100 {BAR} 8s 100ms/step"


def test_zero_steps_show_an_empty_bar_and_zero_time():
    bar, clock, stream = make(10)
    step(bar, clock, 0.3, 0)
    assert stream.writes == [f"\r{B} 0/10{R} {W}{BAR}{R} {B}0s{R} 0s/step"]


@pytest.mark.parametrize(
    "target, eta",
    [
        (10001, "2:46:40"),  # 10,000 s left at 1 s/step: h:mm:ss
        (3602, "1:00:01"),
        (3601, "60:00"),  # exactly an hour is still m:ss
        (100, "1:39"),
        (61, "60s"),  # exactly a minute is still seconds
        (10, "9s"),
    ],
)
def test_eta_formats(target, eta):
    bar, clock, stream = make(target)
    step(bar, clock, 1.0, 1)
    assert f" {eta} 1s/step" in visible(stream.writes[-1])


def test_eta_fields_are_truncated_not_rounded():
    bar, clock, stream = make(10)
    step(bar, clock, 0.99, 1)  # 9 steps left at 0.99 s: 8.91 s
    assert " 8s 990ms/step" in visible(stream.writes[-1])


def test_redraws_are_throttled_but_the_final_one_is_not():
    bar, clock, stream = make(10)
    step(bar, clock, 0.50, 1)
    step(bar, clock, 0.54, 2)  # 0.04 s after the last redraw: skipped
    step(bar, clock, 0.56, 3)  # 0.06 s: drawn
    step(bar, clock, 0.57, 4)  # skipped
    step(bar, clock, 0.58, 10)  # final: always drawn
    shown = [visible(text).split("/")[0].strip() for text in stream.writes]
    assert shown == ["1", "3", "10"]
    assert stream.writes[-1].endswith("\n") and not any(
        t.endswith("\n") for t in stream.writes[:-1]
    )


def test_skipped_updates_still_count_for_step_time():
    bar, clock, stream = make(10)
    step(bar, clock, 0.0, 0)
    step(bar, clock, 0.01, 1)  # skipped, but marks the end of the first step
    step(bar, clock, 2.01, 5)
    assert " 500ms/step" in visible(stream.writes[-1])


def test_shorter_line_is_padded_over_the_longer_one():
    bar, clock, stream = make(10)
    step(bar, clock, 0.5, 1, [("loss", 123.456), ("accuracy", 0.5)])
    step(bar, clock, 1.4, 10, [("loss", 1.0)])
    # 76 visible characters before, 55 now.
    assert stream.writes[-1].startswith("\b" * 76 + "\r")
    assert stream.writes[-1].endswith("- loss: 1.0000" + " " * 21 + "\n")


def test_small_values_in_the_bar():
    bar, clock, stream = make(2)
    step(bar, clock, 1.0, 2, [("a", 9e-4), ("b", 0.0), ("c", -9e-4), ("d", -0.5)])
    assert visible(stream.writes[-1]).endswith(
        " - a: 9.0000e-04 - b: 0.0000e+00 - c: -9.0000e-04 - d: -0.5000\n"
    )


def test_finalize_false_keeps_the_line_open():
    bar, clock, stream = make(3)
    step(bar, clock, 0.3, 3, finalize=False)
    assert stream.writes == [f"\r{B}3/3{R} {G}{BAR}{R}{W}{R} {B}0s{R} 100ms/step"]


# --- not a terminal (14.4): only the finished line, plain ---


def fashion_epoch(bar, clock):
    step(bar, clock, 1.0, 1, [("accuracy", 0.5), ("loss", 1.5)])
    step(bar, clock, 2.0, 900, [("accuracy", 0.8), ("loss", 0.6)])
    step(bar, clock, 3.2, 1875, [("accuracy", 0.8215), ("loss", 0.5065)])


def test_plain_line_when_not_a_terminal():
    bar, clock, stream = make(1875, interactive=False)
    step(bar, clock, 1.0, 1, [("accuracy", 0.5), ("loss", 1.5)])
    step(bar, clock, 2.0, 900, [("accuracy", 0.8), ("loss", 0.6)])
    assert stream.getvalue() == ""
    step(bar, clock, 3.2, 1875, [("accuracy", 0.8215), ("loss", 0.5065)])
    assert stream.writes == [f"1875/1875 {BAR} 3s 1ms/step - accuracy: 0.8215 - loss: 0.5065\n"]


def test_plain_line_shows_what_the_terminal_shows():
    plain, clock, plain_stream = make(1875, interactive=False)
    fashion_epoch(plain, clock)
    drawn, clock, drawn_stream = make(1875, interactive=True)
    fashion_epoch(drawn, clock)
    assert plain_stream.getvalue() == visible(drawn_stream.writes[-1])
    assert not re.search("[\x1b\b\r]", plain_stream.getvalue())


@pytest.mark.parametrize(
    "first, last, values, line",
    [
        (  # fit with validation, epoch 1 (8.5)
            0.4,
            0.4 + 12 * 0.073,
            [("accuracy", 0.0913), ("loss", 2.4143), ("val_accuracy", 0.11), ("val_loss", 2.3548)],
            f"13/13 {BAR} 1s 73ms/step - accuracy: 0.0913 - loss: 2.4143"
            " - val_accuracy: 0.1100 - val_loss: 2.3548",
        ),
        (  # epoch 2: microseconds per step
            0.001,
            0.001 + 12 * 0.000463,
            [("accuracy", 0.1037), ("loss", 2.3272), ("val_accuracy", 0.11), ("val_loss", 2.3225)],
            f"13/13 {BAR} 0s 463us/step - accuracy: 0.1037 - loss: 2.3272"
            " - val_accuracy: 0.1100 - val_loss: 2.3225",
        ),
    ],
)
def test_keras_epoch_lines(first, last, values, line):
    bar, clock, stream = make(13, interactive=False)
    step(bar, clock, first, 1, values)
    step(bar, clock, last, 13, values)
    assert stream.getvalue() == line + "\n"


def test_predict_line_has_no_metrics():
    bar, clock, stream = make(3, interactive=False)
    step(bar, clock, 0.05, 1)
    step(bar, clock, 0.05 + 2 * 0.039, 3)
    assert stream.getvalue() == f"3/3 {BAR} 0s 39ms/step\n"


def test_early_finalize_pads_the_count():
    bar, clock, stream = make(100, interactive=False)
    step(bar, clock, 0.5, 1)
    step(bar, clock, 1.1, 7, finalize=True)
    assert stream.getvalue() == f"  7/100 {BAR} 1s 100ms/step\n"


# --- verbose=2 (8.7) and verbose=0 ---


def test_verbose_2_writes_one_line_at_the_end():
    bar, clock, stream = make(13, verbose=2, interactive=True)
    values = [("accuracy", 0.0913), ("loss", 2.4143), ("val_accuracy", 0.11), ("val_loss", 2.3548)]
    step(bar, clock, 0.25, 1, values)
    step(bar, clock, 0.6, 5, values)
    assert stream.getvalue() == ""
    step(bar, clock, 0.25 + 12 * 0.102, 13, values)
    assert stream.writes == [
        "13/13 - 1s - 102ms/step - accuracy: 0.0913 - loss: 2.4143"
        " - val_accuracy: 0.1100 - val_loss: 2.3548\n"
    ]


def test_verbose_2_evaluate_and_predict_lines():
    bar, clock, stream = make(32, verbose=2)
    step(bar, clock, 0.01, 1)
    step(bar, clock, 0.01 + 31 * 0.006, 32, [("accuracy", 0.128), ("loss", 2.2863)])
    assert stream.getvalue() == "32/32 - 0s - 6ms/step - accuracy: 0.1280 - loss: 2.2863\n"
    bar, clock, stream = make(3, verbose=2)
    step(bar, clock, 0.05, 1)
    step(bar, clock, 0.05 + 2 * 0.066, 3)
    assert stream.getvalue() == "3/3 - 0s - 66ms/step\n"


def test_verbose_2_gives_negative_values_the_exponent_format():
    bar, clock, stream = make(2, verbose=2)
    step(bar, clock, 2.0, 2, [("loss", -0.5), ("small", 9e-4), ("big", 0.5)])
    assert (
        stream.getvalue()
        == "2/2 - 2s - 1s/step - loss: -5.0000e-01 - small: 9.0000e-04 - big: 0.5000\n"
    )


@pytest.mark.parametrize("interactive", [True, False])
def test_verbose_0_writes_nothing(interactive):
    bar, clock, stream = make(3, verbose=0, interactive=interactive)
    for i in range(4):
        step(bar, clock, i * 1.0, i, [("loss", 1.0)])
    assert stream.writes == []


# --- defaults ---


def test_default_stream_is_stdout_at_write_time():
    clock = FakeClock()
    bar = Progbar(1, stream=None, interactive=False, clock=clock)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        clock.now = 2.0
        bar.update(1)
    assert buffer.getvalue() == f"1/1 {BAR} 2s 2s/step\n"


def test_interactive_defaults_to_whether_the_stream_is_a_terminal():
    assert Progbar(5, stream=Recorder(tty=True)).interactive is True
    assert Progbar(5, stream=Recorder(tty=False)).interactive is False
    assert Progbar(5, stream=object()).interactive is False


def test_terminal_stream_gets_redraws():
    stream = Recorder(tty=True)
    bar = Progbar(5, stream=stream, clock=FakeClock())
    bar.update(1)
    assert stream.writes[0].startswith(f"\r{B}1/5{R} {G}━━━━{R}{W}")


def test_target_must_be_positive():
    with pytest.raises(ValueError, match="target"):
        Progbar(0)


# --- formatting helpers ---


@pytest.mark.parametrize(
    "tpu, text",
    [
        (0, " 0s/step"),
        (1.0, " 1s/step"),
        (2.6, " 3s/step"),
        (0.073, " 73ms/step"),
        (1e-3, " 1ms/step"),
        (0.000463, " 463us/step"),
        (9.99e-4, " 999us/step"),
    ],
)
def test_format_step_time(tpu, text):
    assert format_step_time(tpu) == text


@pytest.mark.parametrize(
    "value, absolute, text",
    [
        (0.8215, True, "0.8215"),
        (9e-4, True, "9.0000e-04"),
        (0.0, True, "0.0000e+00"),
        (1e-3, True, "1.0000e-03"),  # not above the threshold
        (-0.5, True, "-0.5000"),
        (-0.5, False, "-5.0000e-01"),
        (2.4143, False, "2.4143"),
    ],
)
def test_format_metric(value, absolute, text):
    assert format_metric(value, absolute=absolute) == text
