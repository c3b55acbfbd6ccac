"""Ctrl-C (SIGINT) during fit, evaluate and predict: each runs in a child process that is
signalled mid-call. The call must stop promptly (the kernels return to Python between bounded
calls) and leave the weights, the optimizer's slots and its iteration counter consistent: the
state of exactly ``iterations`` applied steps, which the child checks by replaying them.

The bound on the reaction time is generous (a shared machine may be slow); without the bounded
calls these runs take tens of seconds to react.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

REACT_WITHIN = 5.0  # seconds: generous on purpose, no timing precision is claimed

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import fastdnn as keras

    what, hidden, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    n = 60000 if what != "fit" else 4096
    x = rng.random((n, 784), dtype=np.float32)
    y = rng.integers(0, 10, n)

    def make():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    model = make()

    class Ready(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            print("running", flush=True)

    try:
        if what == "fit":
            model.fit(x, y, batch_size=batch, epochs=10**6, shuffle=False, verbose=0,
                      callbacks=[Ready()])
        else:
            print("running", flush=True)
            getattr(model, what)(x, *([y] if what == "evaluate" else []), batch_size=batch,
                                 verbose=0)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
    if what == "fit":  # replay exactly `iterations` steps on a fresh model: the same state?
        done = model.optimizer.iterations
        steps = -(-len(x) // batch)
        again = make()
        if done // steps:
            again.fit(x, y, batch_size=batch, epochs=done // steps, shuffle=False, verbose=0)
        if done % steps:
            rows = done % steps * batch
            again.fit(x[:rows], y[:rows], batch_size=batch, shuffle=False, verbose=0)
        same = (again.optimizer.iterations == done and all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
            and np.array_equal(model.optimizer.slots, again.optimizer.slots))
        print("consistent" if same else "inconsistent", done, flush=True)
""")


def _interrupt(what, hidden, batch, delay):
    """Start the child, send SIGINT ``delay`` s after it starts the call; return
    (seconds until it reacted, its remaining output lines)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, what, str(hidden), str(batch)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "running"
        time.sleep(delay)
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        first = child.stdout.readline().split()
        rest = child.stdout.read().split("\n")
        child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()
    assert first and first[0] == "interrupted", f"the child did not stop on SIGINT: {first}"
    return float(first[1]) - sent, [line for line in rest if line]


@pytest.mark.parametrize("what", ["predict", "evaluate"])
def test_ctrl_c_stops_a_long_predict_or_evaluate_promptly(what):
    # 60,000 rows through 784-2048-2048-10: about 700 GFLOP, tens of seconds in one call
    reacted, _ = _interrupt(what, 2048, 32, delay=1.0)
    assert reacted < REACT_WITHIN


@pytest.mark.parametrize("delay", [0.3, 1.1, 2.3])
def test_ctrl_c_during_fit_leaves_weights_slots_and_counter_consistent(delay):
    reacted, lines = _interrupt("fit", 64, 32, delay)
    assert reacted < REACT_WITHIN
    assert lines and lines[-1].startswith("consistent"), lines


def test_ctrl_c_stops_a_fit_with_large_batches_promptly():
    # 784-1024-1024-10 at batch 1024: about 11 GFLOP a step; the first call used to run 8
    reacted, lines = _interrupt("fit", 1024, 1024, delay=0.5)
    assert reacted < REACT_WITHIN
    assert lines and lines[-1].startswith("consistent"), lines
