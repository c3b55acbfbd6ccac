"""Memory: no leaks across calls, no allocation per training step, clean memory-checker runs.

* RSS (from /proc/self/statm) stays flat over 1,000 fit/predict/evaluate calls after a warm-up.
* tracemalloc (which sees NumPy's buffers too) shows that steady-state training allocates
  nothing per step: the kernels' driver ``Network.train`` over 200 batches allocates nothing,
  and ``fit`` over 200 batches allocates only per call (its logs) and per epoch (the shuffle
  permutation), never per batch: less than one batch of data at its peak.
* The AddressSanitizer and valgrind runs of the kernel tests live in ``.ci/memcheck.sh`` (they
  need a separate build and take minutes); the two opt-in tests at the end run it when
  ``FASTDNN_MEMCHECK=1`` (see tests/README.md).
"""

import gc
import os
import subprocess
import tracemalloc
import weakref

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels as K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 2**20


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def small_model(features=20, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((features,)), keras.layers.Dense(16, "relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(4, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n, features=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)).astype(np.float32), rng.integers(0, 4, n).astype(np.int32)


@pytest.fixture
def traced():
    """tracemalloc running for the test (stopped after), with a check that it sees NumPy."""
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    probe = np.empty(100_000)
    assert tracemalloc.get_traced_memory()[0] - before >= probe.nbytes, "NumPy is not traced"
    del probe
    yield
    tracemalloc.stop()


def test_rss_stays_flat_over_a_thousand_fit_and_predict_calls():
    model = small_model()
    x, y = data(64)
    for _ in range(50):  # warm-up: workspaces, optimizer slots, BLAS buffers, caches
        model.fit(x, y, batch_size=16, verbose=0)
        model.predict(x, verbose=0)
        model.evaluate(x, y, verbose=0)
    gc.collect()
    start = rss_bytes()
    for _ in range(1000):
        model.fit(x, y, batch_size=16, verbose=0)
        model.predict(x, verbose=0)
        model.evaluate(x, y, verbose=0)
    gc.collect()
    growth = rss_bytes() - start
    assert growth < 20 * MB, f"RSS grew by {growth / MB:.1f} MB over 1,000 calls"


def test_python_heap_does_not_grow_over_repeated_calls(traced):
    model = small_model()
    x, y = data(64)
    for _ in range(20):
        model.fit(x, y, batch_size=16, verbose=0)
        model.predict(x, verbose=0)
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    for _ in range(300):
        model.fit(x, y, batch_size=16, verbose=0)
        model.predict(x, verbose=0)
        model.evaluate(x, y, verbose=0)
    gc.collect()
    growth = tracemalloc.get_traced_memory()[0] - start
    assert growth < 64 * 1024, f"the traced heap grew by {growth} bytes over 300 calls"


def test_models_and_their_workspaces_are_freed(traced):
    """Dropped models release their weights, optimizer slots and kernel workspaces (measured
    with tracemalloc, which is exact; RSS would also count the C allocator's free lists)."""
    x, y = data(256, features=200)

    def use_a_model():
        model = keras.Sequential([keras.Input((200,)), keras.layers.Dense(256, "relu"),
                                  keras.layers.Dense(4, "softmax")])
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=256, verbose=0)
        model.predict(x, verbose=0)
        return weakref.ref(model), weakref.ref(model.params)  # params: the flat weight buffer

    use_a_model()  # warm-up
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    refs = []
    for _ in range(50):  # each holds ~1.5 MB of weights, slots and workspace
        refs.append(use_a_model())
        gc.collect()  # a fitted model and its History reference each other: a cycle
    growth = tracemalloc.get_traced_memory()[0] - start
    assert all(model() is None and params() is None for model, params in refs)
    assert growth < 256 * 1024, f"{growth} bytes still allocated after 50 dropped models"


def test_network_train_allocates_nothing_per_step(traced):
    """The kernels' driver: 200 batches in one call allocate nothing at all."""
    n_in, batch, steps = 100, 64, 200
    ops = [(K.OP_DENSE, 32, K.RELU, 0.0, 0, n_in * 32),
           (K.OP_DROPOUT, 32, K.LINEAR, 0.1, -1, -1),
           (K.OP_DENSE, 10, K.SOFTMAX, 0.0, n_in * 32 + 32, n_in * 32 + 32 + 320)]
    params = np.random.default_rng(0).normal(size=n_in * 32 + 32 + 320 + 10).astype(np.float32)
    net = K.Network(n_in, ops, params, K.LOSS_SPARSE_CE, K.METRIC_SPARSE_ACC, True, batch)
    x, y = data(batch * steps, features=n_in)
    y = y % 10
    order = np.random.default_rng(1).permutation(len(x)).astype(np.int64)
    slots = np.zeros((2, params.size), np.float32)
    loss_out, correct_out = np.zeros(steps), np.zeros(steps)
    opt = K.OptimizerConfig("adam", learning_rate=1e-3)  # made once, as optimizers do

    def train(it):
        return net.train(x, y, order, batch, 0, steps, opt, slots, it, loss_out, correct_out)

    train(0)  # warm-up
    gc.collect()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    done, _ = train(steps)
    current, peak = tracemalloc.get_traced_memory()
    assert done == steps
    one_batch = batch * n_in * 4
    assert current - start < 1024, f"net {current - start} bytes after {steps} steps"
    assert peak - start < 4096 < one_batch, f"peak {peak - start} bytes during {steps} steps"


class LoopMemory(keras.callbacks.Callback):
    """Traced memory at the start and end of fit's training loop, and its peak in between
    (no batch hooks: fit keeps running many batches per kernel call)."""

    def on_train_begin(self, logs=None):
        gc.collect()
        self.start = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()

    def on_train_end(self, logs=None):
        self.end, self.peak = tracemalloc.get_traced_memory()


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_fit_allocates_nothing_per_step_over_200_batches(traced, shuffle):
    features, batch, steps = 100, 64, 200
    model = small_model(features)
    x, y = data(batch * steps, features)
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=shuffle)  # warm-up
    gc.collect()
    whole_start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    probe = LoopMemory()
    history = model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=shuffle,
                        callbacks=[probe])
    gc.collect()
    whole_net = tracemalloc.get_traced_memory()[0] - whole_start
    assert len(history.history["loss"]) == 1
    one_batch = batch * features * 4
    n = batch * steps
    # Per call: the per-batch loss/hit buffers (2 x steps doubles); per epoch: the shuffle
    # permutation (2 x n int64, when shuffling). Nothing that grows with the steps beyond that.
    per_call = 2 * steps * 8 + (2 * n * 8 if shuffle else 0) + 8 * 1024
    loop_peak = probe.peak - probe.start
    assert loop_peak < per_call, f"fit's loop peaked at {loop_peak} bytes over {steps} steps"
    if not shuffle:
        assert loop_peak < one_batch, "fit's loop held a batch-sized temporary"
    assert probe.end - probe.start < 4096, f"fit's loop kept {probe.end - probe.start} bytes"
    assert whole_net < 8192, f"fit kept {whole_net} bytes after returning"


# --- the memory checkers (opt-in: a separate build, minutes of runtime)

MEMCHECK = os.environ.get("FASTDNN_MEMCHECK") == "1"
SCRIPT = os.path.join(ROOT, ".ci", "memcheck.sh")


@pytest.mark.skipif(not MEMCHECK, reason="opt-in: FASTDNN_MEMCHECK=1 (see tests/README.md)")
@pytest.mark.parametrize("mode, verdict",
                         [("asan", "ASAN: clean"), ("valgrind", "VALGRIND: clean")],
                         ids=["address_sanitizer", "valgrind"])
def test_kernel_tests_run_clean_under_a_memory_checker(mode, verdict):
    """AddressSanitizer build, or valgrind memcheck: no invalid read or write in the kernels."""
    proc = subprocess.run(["bash", SCRIPT, mode], capture_output=True, text=True,
                          timeout=3600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert verdict in proc.stdout
