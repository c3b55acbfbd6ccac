"""Shared state and helpers of the fuzz targets: the outcome counts, the ``CASE`` line written
before every call, known bugs, quiet calls, float comparison.
"""

import contextlib
import io
import sys
import warnings

import numpy as np


REFUSALS = (ValueError, TypeError)

# ---------------------------------------------------------------------------------------------
# Known bugs: tag -> description. Each has a deterministic strict-xfail test in test_fuzz_api.py.
KNOWN_BUGS: dict = {}
# Crashes (segfaults) that the fuzzer must not generate; test_fuzz_api.py reproduces each.
KNOWN_CRASHES: dict = {}


class Stats:
    def __init__(self):
        self.examples = 0
        self.outcomes = {}
        self.first_case = {}  # known-bug tag -> the first case that showed it
        self.last_case = ""

    def count(self, outcome):
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome.startswith("known:"):
            self.first_case.setdefault(outcome, self.last_case)


STATS = Stats()


def case(label, **info):
    """Write what is about to be called to stderr (the parent shows it if we crash)."""
    text = ", ".join(f"{k}={describe(v)}" for k, v in info.items())
    STATS.last_case = f"{label}: {text}"
    sys.stderr.write(f"CASE {label}: {text}\n")
    sys.stderr.flush()


def describe(v):
    if isinstance(v, np.ndarray):
        flags = ("C" if v.flags.c_contiguous else "") + ("F" if v.flags.f_contiguous else "")
        ro = "" if v.flags.writeable else ",ro"
        return f"ndarray{v.shape}:{v.dtype}:{flags or 'strided'}{ro}"
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__}[{len(v)}]"
    r = " ".join(repr(v).split())
    return r if len(r) < 60 else r[:57] + "..."


def quiet():
    """Silence progress bars and warnings of a call."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def fail(message):
    raise AssertionError(message)


def close(actual, expected, dtype, scale=1.0):
    """Equal to float rounding; NaN where the reference has NaN."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return False
    rtol = 2e-4 if np.dtype(dtype) == np.float32 else 1e-9
    return bool(np.allclose(actual, expected, rtol=rtol, atol=rtol * scale, equal_nan=True))
