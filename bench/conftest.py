"""Shared data for the benchmarks, and the RATIO table printed after a run.

Every benchmark row says what it is in ``benchmark.extra_info["role"]``: ``fastdnn``,
``reference`` (the plain-NumPy twin, ``fastdnn.reference`` / ``engine='numpy'``) or ``floor``
(the same work's matrix products alone, through NumPy's BLAS into preallocated arrays); the grid
group's roles say where its points train: ``in-process``, ``processes``, ``dask``. Rows of
the same work share a ``benchmark.group``. The fastdnn row of a group may carry the issue's
targets in its extra_info: ``max_vs_floor`` (fastdnn/floor at most this) and ``min_speedup``
(reference/fastdnn at least this). The threads group has the roles ``1-thread``/``2-threads``
and ``min_thread_speedup``; a contended group (a busy process running meanwhile) the roles
``1-thread``/``default-threads`` and ``max_vs_one_thread`` (default/1-thread at most this).

A row with targets is timed by the ``interleaved`` fixture: its rounds alternate with rounds of
the roles it is compared with, so that the host's slow spells (seconds long) fall on both sides
of a ratio alike; the companions' fastest rounds go in ``extra_info["interleaved"]``.

After the run, ``pytest_terminal_summary`` prints one line per group from this session's own
fastest rounds (the minimum: on a shared machine noise only ever adds time, so the minimum is the
estimate that noise disturbs least), from the interleaved rounds where a row has them, and the
ratio of the medians beside it (what a user meets more often); the targets are judged on the
minimum; the ratios are informational: a MISS never fails the run.
"""

import statistics
import subprocess
import sys
import time

import numpy as np
import pytest

import fastdnn

N_TRAIN = 48_000  # the chapter's training set: 60,000 minus a 20% validation split
N_TEST = 10_000

_data_source = "not loaded"


@pytest.fixture(scope="session")
def data():
    """``(x_train, y_train, x_test)``: float32 pixels / 255, flattened to 784, int32 labels.

    Real Fashion-MNIST (first 48,000 training images, the 10,000 test images) when
    ``fastdnn.datasets.fashion_mnist.load_data()`` finds it; otherwise uniform noise of the same
    shape and type (the timings depend on the shapes, not the values).
    """
    global _data_source
    try:
        from fastdnn.datasets import fashion_mnist

        (x_train, y_train), (x_test, _) = fashion_mnist.load_data()
        x = (x_train[:N_TRAIN].reshape(N_TRAIN, -1) / np.float32(255)).astype(np.float32)
        y = y_train[:N_TRAIN].astype(np.int32)
        xt = (x_test[:N_TEST].reshape(N_TEST, -1) / np.float32(255)).astype(np.float32)
        _data_source = f"Fashion-MNIST (first {N_TRAIN:,} training images)"
    except Exception as e:  # not installed, no network, ...: same shapes, synthetic values
        rng = np.random.default_rng(0)
        x = rng.random((N_TRAIN, 784), dtype=np.float32)
        y = rng.integers(0, 10, N_TRAIN).astype(np.int32)
        xt = rng.random((N_TEST, 784), dtype=np.float32)
        _data_source = f"synthetic, {N_TRAIN:,} x 784 (Fashion-MNIST not available: {e!r:.80})"
    return np.ascontiguousarray(x), y, np.ascontiguousarray(xt)


# --- rows timed round by round with the rows they are compared with

@pytest.fixture
def interleaved(benchmark):
    """``run(target, companions, rounds, block=1, pause=0.0)``: time ``target`` as this row,
    its rounds interleaved with the ``companions`` (``{role: callable}``) it is compared with.

    Before every ``block``-th round (the warm-up round included), for each companion: an untimed
    sleep of ``pause`` seconds, then ``block`` calls, each timed alone with ``time.perf_counter``
    (pytest-benchmark's clock); then another pause, and pytest-benchmark times ``target``'s
    round as usual (``pedantic``, one call per round, one warm-up round). A block of calls
    lets a short kernel find its data in cache again after a companion's turn; a slow spell of
    the host lasts far longer than a block. Each companion's fastest call after the
    warm-up goes in ``benchmark.extra_info["interleaved"][role]`` (its median in
    ``["interleaved_median"][role]``), which the RATIO table uses in place of that role's own
    row.
    """
    def run(target, companions, rounds, block=1, pause=0.0):
        times = {role: [] for role in companions}
        turn = [0]

        def setup():
            if turn[0] % block == 0:
                for role, fn in companions.items():
                    time.sleep(pause)
                    for _ in range(block):
                        start = time.perf_counter()
                        fn()
                        times[role].append(time.perf_counter() - start)
                time.sleep(pause)
            turn[0] += 1

        benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=1)
        timed = {role: t[block:] for role, t in times.items() if len(t) > block}
        benchmark.extra_info["interleaved"] = {role: min(t) for role, t in timed.items()}
        benchmark.extra_info["interleaved_median"] = {role: statistics.median(t)
                                                      for role, t in timed.items()}
    return run


BUSY_SECONDS = 300  # a busy process ends itself after this long, should nothing else end it


@pytest.fixture
def busy_neighbour():
    """A second process busy-looping on one core for the test's duration (a neighbour on a
    shared machine), ended by its own pid afterwards (and by itself after BUSY_SECONDS)."""
    loop = f"import time\nend = time.monotonic() + {BUSY_SECONDS}\nwhile time.monotonic() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", loop])
    time.sleep(0.1)  # running before the first round
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# --- the ratio table

def _fastest(benchmarks):
    """{group: {role: (minimum seconds, extra_info, median seconds)}} for every row that ran, in
    run order."""
    groups = {}
    for b in benchmarks:
        role = b.extra_info.get("role")
        fastest = getattr(b.stats, "min", None)
        if role is None or not fastest:
            continue
        groups.setdefault(b.group, {})[role] = (fastest, b.extra_info,
                                                getattr(b.stats, "median", fastest))
    return groups


def _check(ratio, target, at_most):
    """``'<=1.25 PASS'``-style text for a ratio against a target (blank without a target)."""
    if ratio is None or target is None:
        return ""
    ok = ratio <= target if at_most else ratio >= target
    return f"{'<=' if at_most else '>='}{target:g} {'PASS' if ok else 'MISS'}"


def _fmt_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _compared(rows, role, info, median=False):
    """``role``'s fastest (or median) seconds to compare a row with: from the row's own
    interleaved rounds when it has them (and ``True``), else from ``role``'s own row (and
    ``False``)."""
    key, column = ("interleaved_median", 2) if median else ("interleaved", 0)
    if role in info.get(key, {}):
        return info[key][role], True
    return (rows[role][column] if role in rows else None), False


def _ratio(value, same_rounds):
    """A ratio's text; ``*`` marks one from interleaved rounds."""
    return "-" if value is None else f"{value:.2f}{'*' if same_rounds else ' '}"


def _median_ratio(value, what):
    """A ratio of medians' text, after the table's columns."""
    return f"  {what} median {value:.2f}"


def ratio_lines(benchmarks):
    """The RATIO table as a list of lines: every group, then the groups with targets again."""
    groups = _fastest(benchmarks)
    width = max([len(g) for g in groups] + [5])
    head = (f"{'group':<{width}}  {'fastdnn':>9}  {'fastdnn/floor':>14} {'target':<11}  "
            f"{'reference/fastdnn':>18} target")
    lines, targeted = [], []
    misses = passes = 0
    for group, rows in groups.items():
        if "2-threads" in rows:
            t2, info, _ = rows["2-threads"]
            t1, same = _compared(rows, "1-thread", info)
            if t1 is None:
                continue
            checks = [_check(t1 / t2, info.get("min_thread_speedup"), at_most=False)]
            line = (f"{group:<{width}}  {_fmt_time(t2):>9}  "
                    f"1-thread/2-threads = {_ratio(t1 / t2, same)} {checks[0]}")
        elif "default-threads" in rows:
            td, info, td_median = rows["default-threads"]
            t1, same = _compared(rows, "1-thread", info)
            t1_median, _ = _compared(rows, "1-thread", info, median=True)
            if t1 is None:
                continue
            checks = [_check(td / t1, info.get("max_vs_one_thread"), at_most=True)]
            line = (f"{group:<{width}}  {_fmt_time(td):>9}  default/1-thread = "
                    f"{_ratio(td / t1, same)} {checks[0]}"
                    f"{_median_ratio(td_median / t1_median, 'default/1-thread')}")
        elif "fastdnn" in rows:
            fast, info, fast_median = rows["fastdnn"]
            floor, floor_same = _compared(rows, "floor", info)
            floor_median, _ = _compared(rows, "floor", info, median=True)
            ref, ref_same = _compared(rows, "reference", info)
            vs_floor = fast / floor if floor else None
            speedup = ref / fast if ref else None
            median = (_median_ratio(fast_median / floor_median, "fastdnn/floor")
                      if floor_same else "")
            checks = [_check(vs_floor, info.get("max_vs_floor"), at_most=True),
                      _check(speedup, info.get("min_speedup"), at_most=False)]
            line = (f"{group:<{width}}  {_fmt_time(fast):>9}  "
                    f"{_ratio(vs_floor, floor_same):>14} {checks[0]:<11}  "
                    f"{_ratio(speedup, ref_same):>18} {checks[1]}{median}")
        elif "in-process" in rows:
            t, info, _ = rows["in-process"]
            parts = []
            for role in ("processes", "dask"):
                other, same = _compared(rows, role, info)
                if other is not None:
                    parts.append(f"in-process/{role} = {_ratio(t / other, same)}")
            checks = []
            line = f"{group:<{width}}  {_fmt_time(t):>9}  " + "  ".join(parts)
        else:
            continue
        lines.append(line.rstrip())
        if any(checks):
            targeted.append(line.rstrip())
        misses += sum("MISS" in c for c in checks)
        passes += sum("PASS" in c for c in checks)
    rule = "-" * len(head)
    legend = ("* from rounds interleaved with the compared role's (the same moments of the "
              "host); others from rows timed apart")
    return ([head, rule] + lines + ["", "issue targets:", head, rule] + targeted
            + [f"targets: {passes} PASS, {misses} MISS", legend])


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    tr = terminalreporter
    tr.write_sep("=", "fastdnn RATIO table (fastest rounds of this run; a MISS does not fail "
                      "the run)")
    tr.write_line(f"data: {_data_source}; SIMD variant: {fastdnn.config.simd()}")
    for line in ratio_lines(session.benchmarks):
        tr.write_line(line)
