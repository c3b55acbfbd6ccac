"""The progress bar of `fit`, `evaluate` and `predict`, as Keras 3 prints it.

On a terminal (or in a notebook) the bar is redrawn in place exactly as Keras
does it, escape codes included. Into a pipe or a file only the finished line
is written, as plain text with the same words and numbers.
"""

import sys
import time

_BAR_WIDTH = 20
_BAR_CHAR = "━"
_REDRAW_INTERVAL = 0.05
_BOLD, _GREEN, _GREY, _RESET = "\x1b[1m", "\x1b[32m", "\x1b[37m", "\x1b[0m"


def format_step_time(tpu: float) -> str:
    """Formats the time per step shown after the bar.

    Args:
        tpu: Seconds per step.

    Returns:
        The text with its leading space: `" 1s/step"` from 1 s (and for 0),
        `" 73ms/step"` from 1 ms, else `" 463us/step"`.
    """
    if tpu >= 1 or tpu == 0:
        return f" {tpu:.0f}s/step"
    if tpu >= 1e-3:
        return f" {tpu * 1e3:.0f}ms/step"
    return f" {tpu * 1e6:.0f}us/step"


def format_metric(v: float, *, absolute: bool = True) -> str:
    """Formats a metric value for the progress line.

    Args:
        v: The value.
        absolute: Compare `|v|` with 1e-3, as the `verbose=1` bar does. With
            `False`, compare `v` itself, as the `verbose=2` line does, so that
            negative values get the exponent format.

    Returns:
        `f"{v:.4f}"` above 1e-3, else `f"{v:.4e}"` (`"9.0000e-04"`,
        `"0.0000e+00"`).
    """
    return f"{v:.4f}" if (abs(v) if absolute else v) > 1e-3 else f"{v:.4e}"


def _format_eta(eta: float) -> str:
    if eta > 3600:
        return f"{int(eta // 3600)}:{int(eta % 3600 // 60):02d}:{int(eta % 60):02d}"
    if eta > 60:
        return f"{int(eta // 60)}:{int(eta % 60):02d}"
    return f"{int(eta)}s"


def _styled(code: str, text: str, on: bool) -> str:
    return f"{code}{text}{_RESET}" if on else text


class Progbar:
    """Displays a progress bar over `target` steps.

    Values are shown as given: the bar does not average them.

    Args:
        target: Total number of steps (at least 1).
        verbose: 0 prints nothing; 1 prints the bar; 2 prints one line
            `"{target}/{target} - 3s - 1ms/step - k: v"` at the final update.
        stream: Where to write. Defaults to `sys.stdout`, looked up at each
            write.
        interactive: Whether to redraw the bar in place after each update.
            Defaults to whether the stream is a terminal, or, for the default
            stream, whether the program runs in a Jupyter kernel. When false,
            `verbose=1` writes only the finished line, without escape codes.
        clock: Returns the time in seconds; injectable for tests.
    """

    def __init__(
        self,
        target: int,
        verbose: int = 1,
        *,
        stream=None,
        interactive: bool | None = None,
        clock=time.monotonic,
    ):
        if target < 1:
            raise ValueError(
                f"`target` must be a positive number of steps. Received: target={target}"
            )
        self.target = target
        self.verbose = verbose
        self._stream = stream
        if interactive is None:
            out = self._out()
            isatty = getattr(out, "isatty", None)
            # A notebook's stdout is no terminal but draws "\r" in place.
            interactive = bool(isatty and isatty()) or (
                stream is None and "ipykernel" in sys.modules
            )
        self.interactive = interactive
        self._clock = clock
        self._start = clock()
        self._time_after_first_step = None
        self._last_draw = None
        self._prev_width = 0

    def update(
        self,
        current: int,
        values: list[tuple[str, float]] | None = None,
        finalize: bool | None = None,
    ) -> None:
        """Updates the progress bar.

        Args:
            current: Number of steps done (1-based).
            values: `(name, value)` pairs, in display order.
            finalize: Whether this is the last update. Defaults to
                `current >= target`.
        """
        if finalize is None:
            finalize = current >= self.target
        now = self._clock()
        tpu = self._step_time(current, now)
        values = values or []

        if self.verbose == 1 and self.interactive:
            if (
                not finalize
                and self._last_draw is not None
                and now - self._last_draw < _REDRAW_INTERVAL
            ):
                return
            self._last_draw = now
            line = self._line(current, values, now, tpu, finalize, styled=True)
            width = len(self._line(current, values, now, tpu, finalize, styled=False))
            # Backspaces then "\r" return to the line start; spaces hide what
            # a longer previous line left behind.
            message = "\b" * self._prev_width + "\r" + line + " " * max(0, self._prev_width - width)
            self._prev_width = width
            self._write(message + "\n" if finalize else message)
        elif self.verbose == 1 and finalize:
            self._write(self._line(current, values, now, tpu, True, styled=False) + "\n")
        elif self.verbose == 2 and finalize:
            line = f"{self._count(current)} - {now - self._start:.0f}s -{format_step_time(tpu)}"
            line += "".join(f" - {name}: {format_metric(v, absolute=False)}" for name, v in values)
            self._write(line + "\n")

    def _step_time(self, current: int, now: float) -> float:
        """Seconds per step; once known, the first (slow) step is left out."""
        if not current:
            return 0
        if self._time_after_first_step is not None and current > 1:
            tpu = (now - self._time_after_first_step) / (current - 1)
        else:
            tpu = (now - self._start) / current
        if current == 1:
            self._time_after_first_step = now
        return tpu

    def _count(self, current: int) -> str:
        return f"{current:{len(str(self.target))}d}/{self.target}"

    def _line(
        self, current: int, values, now: float, tpu: float, finalize: bool, styled: bool
    ) -> str:
        done = int(_BAR_WIDTH * (float(current) / self.target))
        line = _styled(_BOLD, self._count(current), styled) + " "
        if done > 0:
            line += _styled(_GREEN, _BAR_CHAR * done, styled)
        # Keras writes the grey group even when it is empty.
        line += _styled(_GREY, _BAR_CHAR * (_BAR_WIDTH - done), styled)
        if finalize:
            when = f"{now - self._start:.0f}s"
        else:
            when = _format_eta(tpu * (self.target - current))
        line += " " + _styled(_BOLD, when, styled) + format_step_time(tpu)
        return line + "".join(f" - {name}: {format_metric(v)}" for name, v in values)

    def _out(self):
        return sys.stdout if self._stream is None else self._stream

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()
