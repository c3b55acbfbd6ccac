"""Ctrl-C (SIGINT) during fit, evaluate and predict: each runs in a child process that is
signalled mid-call. The call must stop promptly (the kernels return to Python between bounded
calls, and poll for signals inside one, even mid-step) and leave the weights, the optimizer's slots and its iteration counter consistent: the
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
STEP_REACT_WITHIN = 2.5  # seconds, inside one training step that takes longer than that

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
        slots = again.optimizer.slots  # none before a first step: Adam's start at zero
        slots = np.zeros_like(model.optimizer.slots) if slots is None else slots
        same = (again.optimizer.iterations == done and all(
            np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
            and np.array_equal(model.optimizer.slots, slots))
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


def test_ctrl_c_stops_a_fit_inside_one_long_step():
    # 784-8192-8192-10 at batch 4096: about 1.8 TFLOP a step, seconds even on two free cores
    # (3 GB of buffers); the step in progress is abandoned, the call's earlier state restored
    reacted, lines = _interrupt("fit", 8192, 4096, delay=1.0)
    assert reacted < STEP_REACT_WITHIN
    assert lines and lines[-1].startswith("consistent"), lines


NESTED = textwrap.dedent("""
    import signal
    import numpy as np
    import fastdnn as keras

    rng = np.random.default_rng(0)
    x = rng.random((1024, 784), dtype=np.float32)
    y = rng.integers(0, 10, 1024)

    def make(hidden):
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((784,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        return m

    model, other, calls = make(1024), make(16), []

    def handler(signum, frame):
        other.fit(x[:64], y[:64], batch_size=16, epochs=1, verbose=0)
        calls.append(other.predict(x[:8], verbose=0).shape)
        if armed:  # one-shot, re-armed after the handler: on a slow host a periodic timer
            signal.setitimer(signal.ITIMER_REAL, 0.01)  # would nest handlers without end

    signal.signal(signal.SIGALRM, handler)
    armed = True
    signal.setitimer(signal.ITIMER_REAL, 0.01)
    model.fit(x, y, batch_size=256, epochs=3, shuffle=False, verbose=0)
    armed = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    again = make(1024)
    again.fit(x, y, batch_size=256, epochs=3, shuffle=False, verbose=0)
    print(len(calls), set(calls) == {(8, 10)}, model.optimizer.iterations,
          all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
          and np.array_equal(model.optimizer.slots, again.optimizer.slots))
""")


def test_signal_handlers_that_train_another_model_mid_step_leave_the_fit_intact():
    # Handlers run inside a training step (on the calling thread, between the chunks of large
    # products); one that runs kernels itself gets a team of its own and leaves the step's alone
    # (sharing it hung the fit: hence a child, with a timeout)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", NESTED], capture_output=True, text=True,
                           env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    calls, shapes, iterations, same = child.stdout.split()
    assert int(calls) > 0 and shapes == "True"
    assert iterations == "12" and same == "True"
