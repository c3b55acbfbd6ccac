"""Threads: the kernels release the GIL, concurrent use gives the serial results, a team that
shrinks and grows mid-fit (``TeamSizer``) or meets on one CPU gives the same numbers, the sizer's
choices on simulated timings, the input scan's team only when a CPU is idle, and the default
thread count (affinity, cgroup quota, OMP_NUM_THREADS).

GIL release is shown without any timing threshold: the interpreter's switch interval is raised
to 100 s, so a second Python thread (incrementing a counter) can only run while the main thread
releases the GIL on its own. A pure-Python loop in the main thread then lets the counter advance
by (almost) nothing -- the control -- while one long kernel call lets it advance a lot.
"""

import math
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels as K, _team_size, _threads


class Counter:
    """A thread that increments ``value`` as fast as it can, yielding the GIL every 100 steps
    (so the main thread gets it back as soon as it asks)."""

    def __init__(self):
        self.value = 0
        self.stop = False
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        self.started.set()
        while not self.stop:
            for _ in range(100):
                self.value += 1
            time.sleep(0)  # releases the GIL

    def __enter__(self):
        self.thread.start()
        self.started.wait()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()


@pytest.fixture
def long_switch_interval():
    saved = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    yield
    sys.setswitchinterval(saved)


def big_network(batches=40, batch=256, n_in=784, hidden=256):
    w2 = n_in * hidden + hidden
    ops = [(K.OP_DENSE, hidden, K.RELU, 0.0, 0, n_in * hidden),
           (K.OP_DENSE, 10, K.SOFTMAX, 0.0, w2, w2 + hidden * 10)]
    rng = np.random.default_rng(0)
    params = (rng.normal(size=n_in * hidden + hidden + hidden * 10 + 10) * 0.01).astype(np.float32)
    net = K.Network(n_in, ops, params, K.LOSS_SPARSE_CE, K.METRIC_SPARSE_ACC, True, batch)
    x = rng.normal(size=(batch * batches, n_in)).astype(np.float32)
    y = rng.integers(0, 10, batch * batches).astype(np.int32)
    return net, x, y


def busy_python(iterations):
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def test_a_pure_python_loop_holds_the_gil_the_control(long_switch_interval):
    """Without this the next tests would prove nothing: the counter cannot run meanwhile."""
    with Counter() as counter:
        before = counter.value
        busy_python(2_000_000)
        after = counter.value
    assert after - before <= 100  # at most the batch it was in when the main thread took over


def test_network_train_releases_the_gil_while_it_runs(long_switch_interval):
    net, x, y = big_network()
    batches = len(x) // 256
    slots = np.zeros((2, net.params.size), np.float32)
    loss_out, correct_out = np.zeros(batches), np.zeros(batches)
    with Counter() as counter:
        before = counter.value
        done, _ = net.train(x, y, None, 256, 0, batches, {"kind": "adam"}, slots, 0, loss_out,
                            correct_out)  # one call into the kernels, all batches
        after = counter.value
    assert done == batches
    assert after - before >= 1000, f"the counter advanced by {after - before} during train"


def test_dense_forward_and_predict_release_the_gil(long_switch_interval):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2048, 1024)).astype(np.float32)
    w = rng.normal(size=(1024, 1024)).astype(np.float32)
    out = np.empty((2048, 1024), np.float32)
    with Counter() as counter:
        before = counter.value
        for _ in range(3):
            K.dense_forward(x, w, None, out, "relu")
        after = counter.value
    assert after - before >= 1000


def test_a_second_thread_makes_progress_during_a_long_fit(long_switch_interval):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(256, "relu"),
                              keras.layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256 * 40, 784)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    model.fit(x[:256], y[:256], batch_size=256, verbose=0)  # warm-up outside the measurement
    with Counter() as counter:
        before = counter.value
        model.fit(x, y, batch_size=256, epochs=1, verbose=0)
        after = counter.value
    assert after - before >= 1000, f"the counter advanced by {after - before} during fit"


# --- concurrent use


def trained_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, "relu"),
                              keras.layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(256, 64)).astype(np.float32), rng.integers(0, 10, 256),
              verbose=0)
    return model


def run_in_threads(functions):
    results, errors = [None] * len(functions), []
    barrier = threading.Barrier(len(functions))

    def target(i):
        try:
            barrier.wait()
            results[i] = functions[i]()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(functions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_predict_on_four_different_models_from_four_threads_equals_serial():
    models = [trained_model(seed) for seed in range(4)]
    rng = np.random.default_rng(9)
    xs = [rng.normal(size=(4000, 64)).astype(np.float32) for _ in range(4)]
    serial = [m.predict(x, verbose=0) for m, x in zip(models, xs)]
    for _ in range(5):
        parallel = run_in_threads([lambda m=m, x=x: m.predict(x, verbose=0)
                                   for m, x in zip(models, xs)])
        for a, b in zip(parallel, serial):
            np.testing.assert_array_equal(a, b)


def test_fit_of_two_models_in_two_threads_equals_serial_training():
    rng = np.random.default_rng(3)
    data = [(rng.normal(size=(512, 64)).astype(np.float32), rng.integers(0, 10, 512))
            for _ in range(2)]

    def train(seed, x, y):
        model = trained_model(seed)
        model.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
        return model.get_weights()

    serial = [train(s, *d) for s, d in zip((10, 11), data)]
    # Build both first (seeding is global), then train them at the same time.
    models = [trained_model(s) for s in (10, 11)]
    parallel_weights = run_in_threads([
        lambda m=m, d=d: (m.fit(*d, epochs=2, batch_size=32, shuffle=False, verbose=0),
                          m.get_weights())[1] for m, d in zip(models, data)])
    for a, b in zip(parallel_weights, serial):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_predict_on_one_model_from_four_threads_equals_serial():
    model = trained_model()
    rng = np.random.default_rng(9)
    xs = [rng.normal(size=(4000, 64)).astype(np.float32) for _ in range(4)]
    serial = [model.predict(x, verbose=0) for x in xs]
    for _ in range(10):
        parallel = run_in_threads([lambda x=x: model.predict(x, verbose=0) for x in xs])
        for a, b in zip(parallel, serial):
            np.testing.assert_array_equal(a, b)


MIXED_BATCHES = textwrap.dedent("""
    import threading
    import numpy as np
    import fastdnn as keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(128, "relu"),
                              keras.layers.Dense(10, "softmax")])
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4000, 64)).astype(np.float32) for _ in range(4)]
    sizes = [32, 64, 128, 256]
    serial = [model.predict(x, batch_size=b, verbose=0) for x, b in zip(xs, sizes)]
    bad = []

    def run(i):
        for k in range(20):
            b = sizes[(i + k) % 4] * (1 + k)
            if not np.allclose(model.predict(xs[i], batch_size=b, verbose=0), serial[i],
                               rtol=1e-5, atol=1e-6):
                bad.append(i)
                return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("wrong results in threads", sorted(set(bad)) if bad else "none")
""")


def test_concurrent_predict_with_different_batch_sizes_neither_crashes_nor_errs():
    proc = subprocess.run([sys.executable, "-c", MIXED_BATCHES], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"crashed with {proc.returncode}: {proc.stderr[-1000:]}"
    assert "wrong results in threads none" in proc.stdout, proc.stdout


def test_concurrent_fits_leave_the_blas_thread_limit_as_they_found_it():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return sorted((i["filepath"], i["num_threads"]) for i in threadpool_info()
                      if i["user_api"] == "blas")

    before = blas_threads()
    models = [trained_model(s) for s in range(3)]
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(512, 64)).astype(np.float32), rng.integers(0, 10, 512)
    run_in_threads([lambda m=m: m.fit(x, y, epochs=3, batch_size=16, verbose=0)
                    for m in models])
    assert blas_threads() == before


# --- the default thread count (taken at import, so each case runs in a fresh interpreter)

DEFAULT_THREADS = textwrap.dedent("""
    import os
    cpus = len(os.sched_getaffinity(0))  # before the OpenMP runtime starts
    import fastdnn
    print(cpus, fastdnn.get_num_threads())
""")

needs_openmp = pytest.mark.skipif(K.openmp_default_threads() == 0,
                                  reason="a build without OpenMP runs on one thread")
needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"),
                                    reason="CPU affinity is Linux's")


def default_threads(**env):
    """(CPUs the process may run on, fastdnn's default thread count) in a fresh interpreter whose
    environment has no OMP_* variables but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    proc = subprocess.run([sys.executable, "-c", DEFAULT_THREADS], capture_output=True, text=True,
                          env={**clean, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return tuple(map(int, proc.stdout.split()))


@needs_openmp
@needs_affinity
def test_the_default_is_every_cpu_the_process_may_run_on():
    cpus, threads = default_threads()
    assert threads == cpus


@needs_openmp
@needs_affinity
def test_the_default_stays_every_cpu_when_openmp_pins_the_importing_thread():
    # OMP_PROC_BIND makes the runtime pin the thread that starts it to one CPU; that thread's
    # affinity then shows one CPU, not the process's.
    cpus, threads = default_threads(OMP_PROC_BIND="true")
    assert threads == cpus


@needs_openmp
@needs_affinity
@pytest.mark.parametrize("n", [1, 3])
def test_the_default_follows_omp_num_threads(n):
    # e.g. joblib's workers set OMP_NUM_THREADS so that their libraries do not oversubscribe
    _, threads = default_threads(OMP_NUM_THREADS=str(n))
    assert threads == n


@needs_openmp
@needs_affinity
def test_the_default_is_the_cpus_of_a_narrower_affinity():
    # e.g. `taskset -c 0 python ...`: one CPU allowed, whatever the machine has
    proc = subprocess.run([sys.executable, "-c", "import os; os.sched_setaffinity(0, {min("
                           "os.sched_getaffinity(0))}); import fastdnn; "
                           "print(fastdnn.get_num_threads())"],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("OMP_")})
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert int(proc.stdout) == 1


def cgroup_tree(tmp_path, membership, files):
    """A fake /sys/fs/cgroup under tmp_path holding ``files`` ({relative path: text}), and a
    fake /proc/self/cgroup holding ``membership``; returns both paths."""
    for name, text in files.items():
        (tmp_path / "cg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cg" / name).write_text(text)
    (tmp_path / "self").write_text(membership)
    return str(tmp_path / "cg"), str(tmp_path / "self")


@pytest.mark.parametrize("cpu_max,expected", [("max 100000\n", None), ("50000 100000\n", 0.5),
                                              ("150000 100000\n", 1.5)])
def test_cgroup_v2_quota_in_cpus(tmp_path, cpu_max, expected):
    root, membership = cgroup_tree(tmp_path, "0::/\n", {"cpu.max": cpu_max})
    assert _threads._cgroup_cpus(root, membership) == expected


def test_cgroup_v2_the_smallest_quota_on_the_way_up_wins(tmp_path):
    root, membership = cgroup_tree(tmp_path, "0::/jobs/me\n", {
        "jobs/cpu.max": "100000 100000", "jobs/me/cpu.max": "max 100000"})
    assert _threads._cgroup_cpus(root, membership) == 1.0


def test_cgroup_v1_quota_in_cpus(tmp_path):
    root, membership = cgroup_tree(tmp_path, "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert _threads._cgroup_cpus(root, membership) == 2.0


def test_no_cgroup_files_no_quota(tmp_path):
    root, membership = cgroup_tree(tmp_path, "0::/\n1:cpu:/\n", {})
    assert _threads._cgroup_cpus(root, membership) is None
    assert _threads._cgroup_cpus(root, str(tmp_path / "missing")) is None


@pytest.mark.parametrize("idle", [0, 1, None], ids=["busy", "idle", "unknown"])
def test_the_input_scan_asks_for_idle_cpus_before_it_starts_a_team(kernel_threads, monkeypatch,
                                                                   idle):
    # a team whose second thread finds no free CPU holds the scan's end until it gets one, so
    # with no idle CPU the scan runs on the calling thread alone, and counts the same
    asked = []
    monkeypatch.setattr(K, "idle_cpus", lambda: asked.append(idle) or idle)
    kernel_threads(2)
    a = np.ones((64, 1 << 15), np.float32)
    a[::7, ::1000] = np.nan
    a[5, -1], a[-1, 0] = np.inf, -np.inf
    assert K.count_nonfinite(a) == np.count_nonzero(~np.isfinite(a))
    assert asked == [idle]
    kernel_threads(1)
    assert K.count_nonfinite(a) == np.count_nonzero(~np.isfinite(a))
    assert asked == [idle]  # one thread: nothing to ask


# --- the team's size, stretch by stretch (``TeamSizer``)

def shuffled_fit(threads):
    """Weights and history of a fit at ``threads`` threads whose layers are cut into blocks."""
    keras.set_num_threads(threads)
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, "relu"),
                              keras.layers.Dense(10, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(4)
    x, y = rng.random((64 * 20 + 17, 784), dtype=np.float32), rng.integers(0, 10, 64 * 20 + 17)
    history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
    return model.get_weights(), history.history, model.predict(x, batch_size=64, verbose=0)


def test_a_team_that_shrinks_and_grows_mid_fit_gives_the_same_numbers(kernel_threads,
                                                                       monkeypatch):
    serial = shuffled_fit(1)
    choices = np.random.default_rng(0)

    def next_run(self, remaining):  # any thread count, any stretch: one, the team, or more,
        # ending by its batches, or by its time after its first batch (1 ns)
        return (int(choices.choice([1, self.team, 3])), int(min(remaining, choices.integers(1, 5))),
                float(choices.choice([0.0, 1e-9])))

    monkeypatch.setattr(_team_size.TeamSizer, "next_run", next_run)
    for mixed in (shuffled_fit(2), shuffled_fit(3)):
        for a, b in zip(mixed[0], serial[0]):
            np.testing.assert_array_equal(a, b)
        assert mixed[1] == serial[1]
        np.testing.assert_array_equal(mixed[2], serial[2])


def test_a_team_of_more_threads_than_cpus_meets_and_gives_the_same_numbers():
    # On one CPU a thread that waits at a meeting holds the only core its partner could use:
    # the partner runs only once the waiter sleeps (or its time slice ends).
    script = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        import numpy as np
        import fastdnn as keras
        weights = []
        for threads in (1, 2):
            keras.set_num_threads(threads)
            keras.utils.set_random_seed(1)
            model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, "relu"),
                                      keras.layers.Dense(10, "softmax")])
            model.compile("adam", "sparse_categorical_crossentropy")
            rng = np.random.default_rng(1)
            x = rng.random((32 * 60, 784), dtype=np.float32)
            model.fit(x, rng.integers(0, 10, len(x)), batch_size=32, epochs=2, verbose=0)
            weights.append(np.concatenate([w.ravel() for w in model.get_weights()]))
        print("same" if np.array_equal(*weights) else "different")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-1000:]
    assert proc.stdout.split() == ["same"]


def sizer_without_idle_cpus():
    """A sizer that never sees an idle CPU (the machine's own load plays no part)."""
    return _team_size.TeamSizer(2, idle=lambda: 0)


def simulate(sizer, seconds_per_batch, batches):
    """Run ``batches`` batches through ``sizer``, each stretch taking ``seconds_per_batch(threads,
    elapsed)`` per batch; return (seconds in all, batches run per thread count)."""
    elapsed, done, per_threads = 0.0, 0, {}
    while done < batches:
        threads, n, limit = sizer.next_run(batches - done)
        assert 1 <= n <= batches - done
        per_batch = seconds_per_batch(threads, elapsed)
        if limit:  # the kernels end a stretch after the batch its time ran out in
            n = min(n, math.floor(limit / per_batch) + 1)
        seconds = n * per_batch
        sizer.record(threads, n, seconds)
        elapsed, done = elapsed + seconds, done + n
        per_threads[threads] = per_threads.get(threads, 0) + n
    return elapsed, per_threads


def test_a_sizer_of_one_thread_runs_everything_at_once():
    assert _team_size.TeamSizer(1).next_run(1500) == (1, 1500, 0.0)


def test_a_faster_team_keeps_nearly_every_batch():
    elapsed, runs = simulate(sizer_without_idle_cpus(), lambda t, _: 80e-6 if t == 2 else 140e-6,
                             1500 * 5)
    assert runs[2] >= 0.99 * 1500 * 5
    assert elapsed <= 1.01 * 1500 * 5 * 80e-6


def test_a_team_slower_than_one_thread_costs_at_most_a_few_percent():
    # a busy neighbour: every team batch waits for a scheduler time slice
    elapsed, runs = simulate(sizer_without_idle_cpus(), lambda t, _: 4e-3 if t == 2 else 200e-6,
                             1500 * 5)
    assert runs[1] >= 0.99 * 1500 * 5
    assert elapsed <= 1.05 * 1500 * 5 * 200e-6


def test_the_team_comes_back_when_the_neighbour_leaves():
    quiet_from = 0.5

    def rate(threads, elapsed):
        if threads == 1:
            return 140e-6
        return 80e-6 if elapsed >= quiet_from else 2e-3

    sizer = sizer_without_idle_cpus()
    elapsed, runs = simulate(sizer, rate, 1500 * 10)
    assert sizer.threads == 2
    # one thread from the start until at most MAX_WAIT (and a stretch) after the quiet began
    assert runs[1] * 140e-6 <= quiet_from + _team_size.MAX_WAIT + 0.01


def test_a_team_that_falls_behind_hands_over_to_one_thread_at_once():
    sizer = sizer_without_idle_cpus()
    simulate(sizer, lambda t, _: 80e-6 if t == 2 else 140e-6, 1000)
    assert sizer.threads == 2
    sizer.record(2, 50, 50 * 1e-3)  # a slow team stretch
    assert sizer.next_run(1000)[0] == 1  # probe one thread right away
    sizer.record(1, 7, 7 * 140e-6)
    assert sizer.threads == 1


def test_a_team_probe_wakes_the_team_first_and_is_sized_by_the_fresh_rate():
    # a team last timed beside a neighbour (2 ms a batch) probes again once one thread has run a
    # while: one untimed batch wakes its threads, then a probe as long as one thread's stretch
    # would be at its own fresh rate, not the one batch the team's stale rate would give
    sizer = sizer_without_idle_cpus()
    simulate(sizer, lambda t, _: 80e-6 if t == 2 else 110e-6, 200)
    sizer.record(2, 5, 5 * 2e-3)
    threads, n, _ = sizer.next_run(10_000)
    sizer.record(threads, n, n * 110e-6)
    assert sizer.threads == 1
    sizer.since_probe = sizer.wait  # the probe is due
    assert sizer.next_run(10_000) == (2, 1, 0.0)
    sizer.record(2, 1, 400e-6)  # the wake-up: not judged
    assert sizer.threads == 1
    threads, n, limit = sizer.next_run(10_000)
    assert (threads, n) == (2, int(_team_size.PROBE_SECONDS / 110e-6))
    assert limit == _team_size.OVERRUN * _team_size.PROBE_SECONDS
    sizer.record(2, n, n * 80e-6)
    assert sizer.threads == 2


def test_set_num_threads_lives_in_config_with_the_old_name_an_alias():
    assert keras.set_num_threads is keras.config.set_num_threads
    assert keras.get_num_threads is keras.config.get_num_threads


@pytest.mark.parametrize("set_threads", [keras.set_num_threads, keras.config.set_num_threads])
@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2", None])
def test_set_num_threads_refuses_a_bad_count_and_keeps_the_old(set_threads, bad):
    before = keras.get_num_threads()
    with pytest.raises(ValueError, match="n must be a positive integer"):
        set_threads(bad)
    assert keras.get_num_threads() == before


def test_a_sizer_starts_on_one_thread_and_probes_the_team_after_its_first_timed_stretch():
    sizer = sizer_without_idle_cpus()
    threads, n, _ = sizer.next_run(1500)
    assert threads == 1
    sizer.record(threads, n, n * 115e-6)  # the untimed warm-up
    threads, n, limit = sizer.next_run(1500)
    assert (threads, n) == (1, _team_size.FIRST_BATCHES)
    assert limit == _team_size.OVERRUN * _team_size.PROBE_SECONDS
    sizer.record(threads, n, n * 115e-6)
    assert sizer.next_run(1500) == (2, 1, 0.0)  # the team's wake-up, then its probe
    sizer.record(2, 1, 200e-6)
    threads, n, _ = sizer.next_run(1500)
    assert (threads, n) == (2, int(_team_size.PROBE_SECONDS / 115e-6))
    sizer.record(threads, n, n * 80e-6)
    assert sizer.threads == 2


def test_a_busy_neighbour_costs_the_first_epoch_a_few_percent():
    # every team batch waits a scheduler time slice; the stretches' time limits keep the warm-up,
    # the first stretch and the probes of the team to a few milliseconds in all
    elapsed, runs = simulate(sizer_without_idle_cpus(), lambda t, _: 3e-3 if t == 2 else 115e-6,
                             1500)
    assert elapsed <= 1.06 * 1500 * 115e-6
    assert runs[1] >= 0.98 * 1500


def test_an_idle_cpu_brings_the_team_back_within_a_few_stretches():
    # NumPy's BLAS threads spin on one core for 0.1 s after a product, then sleep
    cpu = {"idle": 0}

    def rate(threads, elapsed):
        cpu["idle"] = int(elapsed >= 0.1)
        if threads == 1:
            return 115e-6
        return 80e-6 if elapsed >= 0.1 else 3e-3

    sizer = _team_size.TeamSizer(2, idle=lambda: cpu["idle"])
    elapsed, runs = simulate(sizer, rate, 1500 * 2)
    assert sizer.threads == 2
    assert runs[1] * 115e-6 <= 0.1 + 0.015


def test_an_idle_cpu_that_misleads_costs_a_few_probes():
    # the system counts a CPU idle, but the team still loses (e.g. the CPU is not the process's):
    # each probe the hint brings on doubles the wait before the next
    def elapsed_with(idle):
        sizer = _team_size.TeamSizer(2, idle=lambda: idle)
        return simulate(sizer, lambda t, _: 3e-3 if t == 2 else 115e-6, 1500 * 3)[0]

    assert elapsed_with(1) <= 1.03 * elapsed_with(0)


def test_what_a_lost_team_probe_costs_the_stretch_after_it_spaces_the_next_probe_too():
    def wait_after(slower):
        sizer = sizer_without_idle_cpus()
        simulate(sizer, lambda t, _: 3e-3 if t == 2 else 700e-6, 200)  # as beside a neighbour
        assert sizer.threads == 1
        sizer.since_probe = sizer.wait
        assert sizer.next_run(10_000) == (2, 1, 0.0)
        sizer.record(2, 1, 4e-3)  # the team's wake-up waits a time slice: a lost probe
        threads, n, _ = sizer.next_run(10_000)
        sizer.record(threads, n, n * 700e-6 + slower)  # the next stretch runs this much slower
        return sizer.wait

    assert wait_after(10e-3) == pytest.approx((4e-3 - 700e-6 + 10e-3) / _team_size.PROBE_SHARE)
    assert wait_after(0.0) < wait_after(10e-3)


def test_a_blas_block_opened_inside_another_at_any_line_neither_waits_nor_leaks_a_limit(
        monkeypatch):
    # A signal handler that fits a model runs between any two lines of Python, also while this
    # thread sets or restores the BLAS limit of an outer fit: here the limit's own calls open
    # the nested block. A plain lock waited for itself there.
    from threadpoolctl import ThreadpoolController

    real = ThreadpoolController()
    before = [lib.num_threads for lib in real.lib_controllers]
    nested = []

    class Limited:
        def __init__(self, limit):
            self.limit = limit

        def restore_original_limits(self):
            if len(nested) == 1:
                with _threads.single_threaded_blas():
                    nested.append("on the way out")
            self.limit.restore_original_limits()

    class Reentering:
        def limit(self, **kwargs):
            if not nested:
                with _threads.single_threaded_blas():
                    nested.append("on the way in")
            return Limited(real.limit(**kwargs))

    monkeypatch.setattr(_threads, "_controller", Reentering())

    def outer():
        with _threads.single_threaded_blas():
            pass

    worker = threading.Thread(target=outer, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert nested == ["on the way in", "on the way out"]
    assert _threads._blas_users == 0 and _threads._blas_limit is None
    assert [lib.num_threads for lib in ThreadpoolController().lib_controllers] == before
