"""Plain-text rendering of `model.summary()` tables, identical to Keras 3.

Keras draws its summary with the `rich` library. This module reproduces the
visible text of that drawing (widths, borders, word wrapping, the `…` cut, the
footer) with the standard library only, and no terminal styling.
"""

import math
import os
import sys
import unicodedata

import numpy as np

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")
_DEFAULT_POSITIONS = (0.45, 0.80, 1.0)
_HEADER = ("Layer (type)", "Output Shape", "Param #")
_JUSTIFY = ("left", "left", "right")
_MAX_LINE_LENGTH = 88


def readable_size(nbytes: int) -> str:
    """Formats a byte count the way Keras' summary footer does.

    Args:
        nbytes: Size in bytes.

    Returns:
        The size with two decimals in the largest unit (B, KB, MB, GB, TB,
        PB) that keeps the value at least 1, e.g. `"310.59 KB"`,
        `"0.00 B"`, `"8.00 B"`.
    """
    value = nbytes
    for unit in _UNITS[:-1]:
        if value / 1024 < 1:
            return f"{value:.2f} {unit}"
        value /= 1024
    return f"{value:.2f} {_UNITS[-1]}"


def console_width(stream=None) -> int:
    """Returns the console width that Keras' summary layout is based on.

    Args:
        stream: The stream the summary goes to. Defaults to `sys.stdout`
            (looked up at call time).

    Returns:
        `$COLUMNS` if it is set to a positive integer, else the width of the
        terminal behind `stream` if it is a terminal, else 80.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns if columns > 0 else 80


def model_summary(model, line_length=None, positions=None) -> str:
    """The text of ``model.summary()``: each layer's output shape and parameter count, then the
    totals with their sizes in bytes (and the optimizer's variables once it is built, as Keras
    counts them: its iteration count and learning rate, a slot per trainable weight, its scalar
    state)."""
    rows = []
    for layer in model.layers:
        shape = layer.output_shape if layer.built else None
        shape_text = "?" if shape is None else "(" + ", ".join(
            "None" if d is None else str(d) for d in shape) + ")"
        count = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        rows.append((f"{layer.name} ({type(layer).__name__})", shape_text, count))
    size = model._dtype.itemsize if model._dtype is not None else 4
    total = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = total - trainable
    footer = [("Total params", total, total * size),
              ("Trainable params", trainable, trainable * size),
              ("Non-trainable params", frozen, frozen * size)]
    optimizer = model.optimizer
    if optimizer is not None and optimizer.built:
        count = optimizer.variable_count(trainable)  # its two scalars: 8 bytes, as Keras prints
        footer[0] = ("Total params", total + count, (total + count - 2) * size + 8)
        footer.append(("Optimizer params", count, (count - 2) * size + 8))
    return render_summary(model.name, rows, footer, line_length=line_length, positions=positions)


def render_summary(
    title: str,
    rows: list[tuple[str, str, str]],
    footer: list[tuple[str, int, int]],
    *,
    line_length: int | None = None,
    positions: list[float] | None = None,
    columns: int | None = None,
) -> str:
    """Renders a model summary as Keras 3 prints it, without styling.

    Args:
        title: The model name; the text starts with `Model: "<title>"`.
        rows: One `(layer, output shape, param count)` tuple of already
            formatted cell texts per layer, e.g.
            `("dense (Dense)", "(None, 100)", "78,500")`.
        footer: `(label, count, nbytes)` tuples, each printed as
            ` <label>: <count with thousands separators> (<size>)`.
        line_length: Total width of the table. Defaults to
            `min(88, columns - 4)`.
        positions: Right edges of the three columns as fractions of
            `line_length`. Defaults to `[0.45, 0.80, 1.0]`.
        columns: Console width. Defaults to `console_width()`. As on Keras'
            console, table lines longer than this are cut, and the title and
            footer lines wrap.

    Returns:
        The complete summary, lines joined by `"\\n"` and ending with `"\\n"`.

    Raises:
        ValueError: If a column would be narrower than 4 characters
            (`"Insufficient console width to print summary."`), or if
            `positions` has fewer than 3 entries.
    """
    columns = console_width() if columns is None else columns
    line_length = line_length or min(_MAX_LINE_LENGTH, columns - 4)
    widths = _cell_widths(line_length, positions or _DEFAULT_POSITIONS)

    table = [_border("┏", "━", "┳", "┓", widths)]
    table += _table_row(_HEADER, widths, "┃", header=True)
    table.append(_border("┡", "━", "╇", "┩", widths))
    for i, row in enumerate(rows):
        if i:
            table.append(_border("├", "─", "┼", "┤", widths))
        table += _table_row(row, widths, "│", header=False)
    table.append(_border("└", "─", "┴", "┘", widths))

    lines = _wrap(f'Model: "{title}"', columns)
    lines += [
        _set_cell_size(line, columns) if _cell_len(line) > columns else line for line in table
    ]
    for label, count, nbytes in footer:
        lines += _wrap(f" {label}: {count:,} ({readable_size(nbytes)})", columns)
    # Cropping and wrapping at the console width can leave trailing blanks,
    # which Keras would print; fastdnn never does.
    return "".join(line.rstrip() + "\n" for line in lines)


def _cell_widths(line_length: int, positions) -> list[int]:
    """Cell widths (padding included) of rich's fixed-width table columns."""
    requested = []
    for position in positions:
        width = int(position * line_length) - sum(requested)
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        requested.append(width)
    if len(requested) < len(_HEADER):
        raise ValueError(f"`positions` needs {len(_HEADER)} entries, received: {list(positions)}")
    # The cells plus the n + 1 border characters fill exactly line_length. rich
    # first caps each cell at that room, then takes an excess off the columns
    # in turn (round half to even); a shortfall (positions ending below 1.0) it
    # shares out in proportion to the widths.
    room = line_length - len(_HEADER) - 1
    cells = [min(width + 2, room) for width in requested[: len(_HEADER)]]
    excess = sum(cells) - room
    if excess > 0:
        remaining = len(cells)
        for i, cell in enumerate(cells):
            cut = min(cell, round(excess / remaining))
            cells[i] = cell - cut
            excess -= cut
            remaining -= 1
    elif excess < 0:
        missing, total = -excess, sum(cells)
        for i, cell in enumerate(cells):
            extra = math.ceil(cell * missing / total)
            cells[i] = cell + extra
            missing -= extra
            total -= cell
    return cells


def _border(left: str, fill: str, joint: str, right: str, widths: list[int]) -> str:
    return left + joint.join(fill * width for width in widths) + right


def _table_row(texts, widths: list[int], bar: str, *, header: bool) -> list[str]:
    """The lines of one table row; header cells sit at the bottom, others at the top."""
    # A cell without room for text (only with odd `positions`) has no lines.
    cells = [
        _wrap(text, width - 2, justify=justify, ellipsis=True) if width > 2 else []
        for text, width, justify in zip(texts, widths, _JUSTIFY)
    ]
    height = max(1, *(len(cell) for cell in cells))
    for i, cell in enumerate(cells):
        blank = [""] * (height - len(cell))
        cells[i] = blank + cell if header else cell + blank
    return [
        bar
        + bar.join(_set_cell_size(f" {cell[line]}", width) for cell, width in zip(cells, widths))
        + bar
        for line in range(height)
    ]


def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _cell_len(text: str) -> int:
    return sum(_char_width(char) for char in text)


def _set_cell_size(text: str, size: int) -> str:
    """Pads with spaces or cuts `text` to exactly `size` cells.

    A wide character split by the cut becomes a space, as in rich.
    """
    length = _cell_len(text)
    if length <= size:
        return text + " " * (size - length)
    kept, used = [], 0
    for char in text:
        width = _char_width(char)
        if used + width > size:
            break
        kept.append(char)
        used += width
    return "".join(kept) + " " * (size - used)


def _chop(text: str, width: int) -> list[str]:
    """Splits `text` into pieces of at most `width` cells."""
    pieces, piece, used = [], "", 0
    for char in text:
        if used + _char_width(char) > width and piece:
            pieces.append(piece)
            piece, used = "", 0
        piece += char
        used += _char_width(char)
    return pieces + [piece] if piece else pieces


def _words(text: str):
    """Yields `(start, word)`: leading blanks, a word and its trailing blanks."""
    position = 0
    while position < len(text) and not text[position:].isspace():
        end = position
        while text[end].isspace():
            end += 1
        while end < len(text) and not text[end].isspace():
            end += 1
        while end < len(text) and text[end].isspace():
            end += 1
        yield position, text[position:end]
        position = end


def _break_offsets(text: str, width: int, fold: bool) -> list[int]:
    """Greedy word wrap: where rich breaks `text` into lines of `width` cells.

    A word longer than a line is folded over several lines when `fold`, else
    it gets a line of its own (to be cut with an ellipsis later).
    """
    breaks = []
    used = 0
    for start, word in _words(text):
        word_length = _cell_len(word.rstrip())
        if word_length <= width - used:
            used += _cell_len(word)
        elif word_length > width:
            if not fold:
                if start:
                    breaks.append(start)
                used = _cell_len(word)
                continue
            pieces = _chop(word, width)
            for i, piece in enumerate(pieces):
                if start:
                    breaks.append(start)
                if i == len(pieces) - 1:
                    used = _cell_len(piece)
                else:
                    start += len(piece)
        elif used and start:
            breaks.append(start)
            used = _cell_len(word)
    return breaks


def _wrap(
    text: str, width: int, *, justify: str | None = None, ellipsis: bool = False
) -> list[str]:
    """Wraps `text` to `width` cells as rich's `Text.wrap` does.

    Args:
        text: The text; `"\\n"` starts a new line.
        width: Line width in cells.
        justify: `"left"` or `"right"` pads every line to `width`; `None`
            leaves lines unpadded.
        ellipsis: Cut words longer than a line to `width - 1` cells plus
            `"…"` instead of folding them.

    Returns:
        The lines.
    """
    lines = []
    for paragraph in text.split("\n"):
        bounds = [0, *_break_offsets(paragraph, width, fold=not ellipsis), len(paragraph)]
        for start, end in zip(bounds, bounds[1:]):
            line = paragraph[start:end]
            # rich drops trailing blanks only as far as they pass the width
            # (counted in characters, not cells).
            excess = len(line) - width
            if excess > 0:
                blanks = len(line) - len(line.rstrip())
                line = line[: len(line) - min(blanks, excess)]
            if justify == "right":
                line = line.rstrip()
            if _cell_len(line) > width:
                line = (
                    _set_cell_size(line, width - 1) + "…"
                    if ellipsis
                    else _set_cell_size(line, width)
                )
            if justify == "left":
                line = _set_cell_size(line, width)
            elif justify == "right":
                line = " " * (width - _cell_len(line)) + line
            lines.append(line)
    return lines
