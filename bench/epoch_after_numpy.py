"""The seed epoch right after NumPy's products, as the no-pause floor rows time it, and the bound
that NumPy's spinning BLAS worker puts on it.

Each round runs the floor's epoch (``test_bench_training.Floor``: the 784-100-10 steps' matrix
products through NumPy at its default thread count), then, with no pause, one ``fit`` epoch of
the seed model: at fastdnn's default thread count, on one thread, and on the whole team at every
stretch (``TeamSizer`` overruled), a floor before each; then the floor, a pause, and the default
epoch. Then, after a pause, one thread's epoch gives its CPU seconds (``work``); and a last floor
is followed by a pause only, in which the CPU seconds that the process's other threads (NumPy's
BLAS worker) burn, and for how long (``spin``), show how long the worker spins after the last
product.

The table gives medians over the rounds, each epoch against the floor's median. The last column
is the least time any team of fastdnn's default size could take right after the floor, under a
fair share of the CPUs: while the worker spins, the team's threads and the worker share them, so
the team gets ``share = min(team, cpus * team / (team + 1))`` CPUs at most, then
``min(team, cpus)``; the bound is ``spin + (work - share * spin) / min(team, cpus)`` (or
``work / share`` when the work fits in the spin). On two CPUs: ``spin + (work - 4/3 spin) / 2``.

    python bench/epoch_after_numpy.py [--rounds 5] [--pause 0.5]
"""

import argparse
import contextlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastdnn  # noqa: E402
from fastdnn import _team_size  # noqa: E402
from test_bench_training import CHAPTER, Floor, build_model  # noqa: E402

SAMPLES = 48_000


def other_threads_cpu():
    """CPU seconds used so far by this process's threads other than the main one (Linux)."""
    me, total = str(os.getpid()), 0
    for tid in os.listdir("/proc/self/task"):
        if tid == me:
            continue
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])  # nanoseconds on a CPU
        except OSError:  # the thread ended meanwhile
            continue
    return total * 1e-9


def spin_after(floor, x, bs, window=0.3, step=0.005):
    """Run the floor's epoch; return (CPU seconds other threads used in the ``window`` seconds
    after it, seconds until the last ``step`` in which they still used any)."""
    floor.epoch(x, bs)
    start, used = time.perf_counter(), other_threads_cpu()
    last, spent = 0.0, 0.0
    while time.perf_counter() - start < window:
        time.sleep(step)
        now = other_threads_cpu()
        if now > used + spent:
            last, spent = time.perf_counter() - start, now - used
    return spent, last


@contextlib.contextmanager
def whole_team():
    """Every stretch on the whole team, whatever the sizer has measured."""
    chosen = _team_size.TeamSizer.next_run
    _team_size.TeamSizer.next_run = lambda self, remaining: (self.team, remaining, 0.0)
    try:
        yield
    finally:
        _team_size.TeamSizer.next_run = chosen


def least_time(work, spin, team, cpus):
    """The least seconds a team of ``team`` threads needs for ``work`` CPU seconds on ``cpus``
    CPUs whose first ``spin`` seconds it shares fairly with one more busy thread."""
    share, full = min(team, cpus * team / (team + 1)), min(team, cpus)
    if work <= share * spin:
        return work / share
    return spin + (work - share * spin) / full


def timed(fn):
    """Seconds that ``fn()`` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=0.5)
    args = parser.parse_args()
    (x, y), _ = fastdnn.datasets.fashion_mnist.load_data()
    x = (x[:SAMPLES].reshape(SAMPLES, -1) / 255.0).astype(np.float32)
    y = y[:SAMPLES].astype(np.int32)
    threads = fastdnn.config.get_num_threads()
    print(f"{'batch':>5} {'floor':>8} {'default':>8} {'1 thread':>9} {'team':>6} {'paused':>8} "
          f"{'spin':>12} {'team bound':>11}   (ratios: epoch/floor, medians of {args.rounds})")
    for bs in (32, 256):
        floor = Floor(CHAPTER, bs)
        model = build_model(CHAPTER, "adam", "fastdnn")

        def fit():
            model.fit(x, y, epochs=1, batch_size=bs, verbose=0, shuffle=True)

        fit()
        times = {key: [] for key in ("floor", "default", "1 thread", "team", "paused", "work")}
        spins = []
        for _ in range(args.rounds):
            for key in ("default", "1 thread", "team", "paused"):
                times["floor"].append(timed(lambda: floor.epoch(x, bs)))
                if key == "paused":
                    time.sleep(args.pause)
                fastdnn.config.set_num_threads(1 if key == "1 thread" else threads)
                with whole_team() if key == "team" else contextlib.nullcontext():
                    times[key].append(timed(fit))
            fastdnn.config.set_num_threads(1)
            time.sleep(args.pause)
            started = time.process_time()
            fit()
            times["work"].append(time.process_time() - started)
            fastdnn.config.set_num_threads(threads)
            spins.append(spin_after(floor, x, bs))
        med = {key: statistics.median(value) for key, value in times.items()}
        spent = statistics.median(s for s, _ in spins)
        lasted = statistics.median(t for _, t in spins)
        bound = least_time(med["work"], lasted, threads, len(os.sched_getaffinity(0)))
        ratio = {key: med[key] / med["floor"] for key in ("default", "1 thread", "team", "paused")}
        print(f"{bs:>5} {med['floor'] * 1e3:>6.0f}ms {ratio['default']:>8.2f} "
              f"{ratio['1 thread']:>9.2f} {ratio['team']:>6.2f} {ratio['paused']:>8.2f} "
              f"{spent:>4.2f}s in {lasted:.2f}s {bound / med['floor']:>11.2f}")


if __name__ == "__main__":
    main()
