"""Tests of the summary table renderer against Keras 3's printed text (reference section 7)."""

import io
import os

import pytest

from _helpers import KERAS_SUMMARY
from fastdnn._summary import console_width, readable_size, render_summary

MNIST_ROWS = [
    ("flatten (Flatten)", "(None, 784)", "0"),
    ("dense (Dense)", "(None, 100)", "78,500"),
    ("dense_1 (Dense)", "(None, 10)", "1,010"),
]
MNIST_FOOTER = [
    ("Total params", 79_510, 318_040),
    ("Trainable params", 79_510, 318_040),
    ("Non-trainable params", 0, 0),
]

MNIST_SUMMARY = KERAS_SUMMARY


def cell_widths(text):
    """Cell widths read off the top border of a rendered table."""
    top = text.splitlines()[1]
    return [len(part) for part in top[1:-1].split("┳")]


def test_worked_example_matches_keras_character_for_character():
    assert render_summary("sequential", MNIST_ROWS, MNIST_FOOTER, columns=80) == MNIST_SUMMARY


def test_every_table_line_is_line_length_wide_and_nothing_trails():
    text = render_summary("sequential", MNIST_ROWS, MNIST_FOOTER, columns=80)
    lines = text.splitlines()
    assert all(len(line) == 76 for line in lines[1:-3])
    assert all(line == line.rstrip() for line in lines)
    assert text.endswith("\n") and not text.endswith("\n\n")


@pytest.mark.parametrize(
    "kwargs, widths",
    [
        ({"columns": 80}, [33, 24, 15]),  # pipe or capture: L = 76
        ({"columns": 92}, [38, 29, 17]),  # L = 88
        ({"columns": 200}, [38, 29, 17]),  # L is capped at 88
        ({"columns": 60}, [24, 17, 11]),  # L = 56
        ({"columns": 104, "line_length": 100}, [44, 33, 19]),
        ({"columns": 80, "line_length": 56}, [24, 17, 11]),
    ],
)
def test_cell_widths(kwargs, widths):
    text = render_summary("m", MNIST_ROWS, MNIST_FOOTER, **kwargs)
    assert cell_widths(text) == widths


def test_excess_removal_rounds_half_to_even():
    # Requested 34/26/13 at L = 76: excess 7 is taken off as 2, round(2.5) = 2, 3.
    text = render_summary("m", MNIST_ROWS, MNIST_FOOTER, columns=80, positions=[0.45, 0.8, 0.97])
    assert cell_widths(text) == [34, 26, 12]


def test_positions_ending_below_one_still_fill_the_line():
    text = render_summary("m", MNIST_ROWS, MNIST_FOOTER, columns=80, positions=[0.3, 0.6, 0.9])
    assert cell_widths(text) == [23, 25, 24]
    assert len(text.splitlines()[1]) == 76


def test_positions_ending_well_below_one_are_widened_to_fill_the_line():
    # Requested cells 24/25/17 leave 6 of the 72: shared out as 3, 2, 1.
    text = render_summary("m", MNIST_ROWS, MNIST_FOOTER, columns=80, positions=[0.3, 0.6, 0.8])
    assert cell_widths(text) == [27, 27, 18]


def test_lines_are_cut_at_the_console_width():
    text = render_summary("sequential", MNIST_ROWS, MNIST_FOOTER, columns=80, line_length=100)
    lines = text.splitlines()
    assert lines[1] == "┏" + "━" * 44 + "┳" + "━" * 33 + "┳"
    assert lines[2] == "┃ Layer (type)" + " " * 31 + "┃ Output Shape" + " " * 20 + "┃"
    assert max(len(line) for line in lines) == 80


def test_narrow_console_cuts_the_table_and_wraps_the_footer_without_trailing_blanks():
    # rich draws this for Keras with trailing blanks after "model", "Output", "(None,"
    # and "(310.59"; fastdnn drops them.
    rows = [("dense (Dense)", "(None, 100)", "78,500")]
    footer = [("Total params", 79_510, 318_040)]
    text = render_summary("a rather long model name", rows, footer, columns=30, line_length=40)
    expected = """\
Model: "a rather long model
name"
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━
┃                 ┃ Output
┃ Layer (type)    ┃ Shape
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━
│ dense (Dense)   │ (None,
│                 │ 100)
└─────────────────┴───────────
 Total params: 79,510 (310.59
KB)
"""
    assert text == expected


def test_wrapping_example_of_the_reference():
    rows = [
        ("a_very_long_layer_name_that_will_not_fit (Dense)", "(None, 100)", "78,500"),
        ("层名称_日本語_テスト (Dense)", "(None, 10)", "1,010"),
        ("short words in a long name that wraps around (Dense)", "(None, 3)", "33"),
    ]
    lines = render_summary("m", rows, [], columns=80).splitlines()
    assert lines[4:10] == [
        "│ a_very_long_layer_name_that_wi… │ (None, 100)            │        78,500 │",
        "│ (Dense)                         │                        │               │",
        "├─────────────────────────────────┼────────────────────────┼───────────────┤",
        "│ 层名称_日本語_テスト (Dense)    │ (None, 10)             │         1,010 │",
        "├─────────────────────────────────┼────────────────────────┼───────────────┤",
        "│ short words in a long name that │ (None, 3)              │            33 │",
    ]
    assert (
        lines[10] == "│ wraps around (Dense)            │                        │               │"
    )


def test_narrow_table_wraps_header_at_the_bottom_and_cuts_numbers():
    # As rich draws it for Keras at L = 40: header cells sit at the bottom of their row.
    rows = [("flatten (Flatten)", "(None, 784)", "0"), ("dense (Dense)", "(None, 100)", "78,500")]
    text = render_summary("sequential", rows, [("Total params", 78_500, 314_000)], columns=44)
    expected = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━┓
┃                 ┃ Output     ┃ Param ┃
┃ Layer (type)    ┃ Shape      ┃     # ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━┩
│ flatten         │ (None,     │     0 │
│ (Flatten)       │ 784)       │       │
├─────────────────┼────────────┼───────┤
│ dense (Dense)   │ (None,     │ 78,5… │
│                 │ 100)       │       │
└─────────────────┴────────────┴───────┘
 Total params: 78,500 (306.64 KB)
"""
    assert text == expected


def test_wide_character_cut_in_half_becomes_a_space():
    # Text width 15: the cut keeps 14 cells, and the seventh wide character would straddle it.
    rows = [("a层层层层层层层层 (Dense)", "?", "0 (unbuilt)")]
    lines = render_summary("m", rows, [], columns=44).splitlines()
    assert lines[5:7] == [
        "│ a层层层层层层 … │ ?          │     0 │",
        "│ (Dense)         │            │ (unb… │",
    ]


def test_empty_model_prints_header_then_bottom_border():
    lines = render_summary("empty", [], MNIST_FOOTER, columns=80).splitlines()
    assert lines[0] == 'Model: "empty"'
    assert lines[3].startswith("┡") and lines[4].startswith("└")
    assert lines[5] == " Total params: 79,510 (310.59 KB)"


def test_footer_with_optimizer_params():
    footer = [
        ("Total params", 238_532, 954_128),
        ("Trainable params", 79_510, 318_040),
        ("Non-trainable params", 0, 0),
        ("Optimizer params", 159_022, 636_088),
    ]
    text = render_summary("sequential", MNIST_ROWS, footer, columns=80)
    assert text.endswith(
        " Total params: 238,532 (931.77 KB)\n"
        " Trainable params: 79,510 (310.59 KB)\n"
        " Non-trainable params: 0 (0.00 B)\n"
        " Optimizer params: 159,022 (621.18 KB)\n"
    )


def test_sgd_optimizer_footer_line():
    text = render_summary("m", [], [("Optimizer params", 2, 8)], columns=80)
    assert text.endswith("\n Optimizer params: 2 (8.00 B)\n")


@pytest.mark.parametrize(
    "nbytes, text",
    [
        (0, "0.00 B"),
        (8, "8.00 B"),
        (1023, "1023.00 B"),
        (1024, "1.00 KB"),
        (318_040, "310.59 KB"),
        (636_088, "621.18 KB"),
        (954_128, "931.77 KB"),
        (5 * 1024**2, "5.00 MB"),
        (3 * 1024**4, "3.00 TB"),
        (1024**6, "1024.00 PB"),
    ],
)
def test_readable_size(nbytes, text):
    assert readable_size(nbytes) == text


def test_insufficient_width_raises():
    render_summary("m", MNIST_ROWS, [], columns=20)  # L = 16: widths 7/5/4, still fine
    with pytest.raises(ValueError, match=r"^Insufficient console width to print summary\.$"):
        render_summary("m", MNIST_ROWS, [], columns=19)  # L = 15: last width 3
    with pytest.raises(ValueError, match="Insufficient console width"):
        render_summary("m", MNIST_ROWS, [], columns=80, line_length=8)


def test_absolute_positions_are_multiplied_like_fractions():
    # 30·76 and more: each cell is capped at the table, then the excess is shared out.
    text = render_summary("m", MNIST_ROWS, [], columns=80, positions=[30, 50, 70])
    assert cell_widths(text) == [24, 24, 24]


def test_default_columns_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLUMNS", "92")
    assert cell_widths(render_summary("m", MNIST_ROWS, MNIST_FOOTER)) == [38, 29, 17]


def test_console_width_prefers_columns_variable(monkeypatch):
    monkeypatch.setenv("COLUMNS", "123")
    assert console_width(io.StringIO()) == 123


def test_console_width_of_a_non_terminal_is_80(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert console_width(io.StringIO()) == 80
    monkeypatch.setenv("COLUMNS", "not a number")
    assert console_width(io.StringIO()) == 80


def test_console_width_of_a_terminal(monkeypatch):
    pty = pytest.importorskip("pty")
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    import struct

    monkeypatch.delenv("COLUMNS", raising=False)
    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 133, 0, 0))
        with os.fdopen(follower, "w", closefd=False) as stream:
            assert console_width(stream) == 133
            monkeypatch.setenv("COLUMNS", "99")
            assert console_width(stream) == 99
    finally:
        os.close(leader)
        os.close(follower)
