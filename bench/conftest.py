"""Shared data for the benchmarks, and the RATIO table printed after a run.

Every benchmark row says what it is in ``benchmark.extra_info["role"]``: ``fastdnn``,
``reference`` (the plain-NumPy twin, ``fastdnn.reference`` / ``engine='numpy'``) or ``floor``
(the same work's matrix products alone, through NumPy's BLAS into preallocated arrays). Rows of
the same work share a ``benchmark.group``. The fastdnn row of a group may carry the issue's
targets in its extra_info: ``max_vs_floor`` (fastdnn/floor at most this) and ``min_speedup``
(reference/fastdnn at least this). The threads group has the roles ``1-thread``/``2-threads``
and ``min_thread_speedup``.

After the run, ``pytest_terminal_summary`` prints one line per group from this session's own
fastest rounds (the minimum: on a shared machine noise only ever adds time, so the minimum is the
estimate that noise disturbs least); the ratios are informational: a MISS never fails the run.
"""

import numpy as np
import pytest

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


# --- the ratio table

def _fastest(benchmarks):
    """{group: {role: (minimum seconds, extra_info)}} for every row that ran, in run order."""
    groups = {}
    for b in benchmarks:
        role = b.extra_info.get("role")
        fastest = getattr(b.stats, "min", None)
        if role is None or not fastest:
            continue
        groups.setdefault(b.group, {})[role] = (fastest, b.extra_info)
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


def ratio_lines(benchmarks):
    """The RATIO table as a list of lines: every group, then the groups with targets again."""
    groups = _fastest(benchmarks)
    width = max([len(g) for g in groups] + [5])
    head = (f"{'group':<{width}}  {'fastdnn':>9}  {'fastdnn/floor':>13} {'target':<11}  "
            f"{'reference/fastdnn':>17} target")
    lines, targeted = [], []
    misses = passes = 0
    for group, rows in groups.items():
        if "1-thread" in rows and "2-threads" in rows:
            (t1, _), (t2, info) = rows["1-thread"], rows["2-threads"]
            checks = [_check(t1 / t2, info.get("min_thread_speedup"), at_most=False)]
            line = (f"{group:<{width}}  {_fmt_time(t2):>9}  "
                    f"1-thread/2-threads = {t1 / t2:.2f} {checks[0]}")
        elif "fastdnn" in rows:
            fast, info = rows["fastdnn"]
            vs_floor = fast / rows["floor"][0] if "floor" in rows else None
            speedup = rows["reference"][0] / fast if "reference" in rows else None
            checks = [_check(vs_floor, info.get("max_vs_floor"), at_most=True),
                      _check(speedup, info.get("min_speedup"), at_most=False)]
            f1 = f"{vs_floor:.2f}" if vs_floor is not None else "-"
            f2 = f"{speedup:.2f}" if speedup is not None else "-"
            line = (f"{group:<{width}}  {_fmt_time(fast):>9}  {f1:>13} {checks[0]:<11}  "
                    f"{f2:>17} {checks[1]}")
        else:
            continue
        lines.append(line.rstrip())
        if any(checks):
            targeted.append(line.rstrip())
        misses += sum("MISS" in c for c in checks)
        passes += sum("PASS" in c for c in checks)
    rule = "-" * len(head)
    return ([head, rule] + lines + ["", "issue targets:", head, rule] + targeted
            + [f"targets: {passes} PASS, {misses} MISS"])


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    tr = terminalreporter
    tr.write_sep("=", "fastdnn RATIO table (fastest rounds of this run; a MISS does not fail "
                      "the run)")
    tr.write_line(f"data: {_data_source}")
    for line in ratio_lines(session.benchmarks):
        tr.write_line(line)
