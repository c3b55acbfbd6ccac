"""Reliability fuzz targets: ``reentry`` (re-initialising a live Network, calls on a half-built
one), ``hyper`` (hostile hyper-parameters, steps that overflow), ``callbacks`` (callbacks that
change the model during fit), ``signals`` (an interrupt at a random point of fit, evaluate or
predict).
"""

import math
import os

import numpy as np
from hypothesis import strategies as st

import fastdnn
from fastdnn import _kernels as K

from .common import STATS, case, fail, quiet


# Target: re-initialising a live Network, and calls on one whose __init__ failed.

def _small_network(rng, dtype, n_in, hidden, n_out, capacity, seed=0):
    ops = [(K.OP_DENSE, hidden, K.RELU, 0.0, 0, n_in * hidden),
           (K.OP_DENSE, n_out, K.LINEAR, 0.0, n_in * hidden + hidden,
            n_in * hidden + hidden + hidden * n_out)]
    params = rng.normal(size=n_in * hidden + hidden + hidden * n_out + n_out).astype(dtype)
    return (n_in, ops, params, K.LOSS_MSE, K.METRIC_NONE, False, capacity, seed)


def run_reentry_example(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    sizes = st.integers(1, 64)
    first = _small_network(rng, dtype, 3, 4, 2, data.draw(st.integers(1, 8), label="capacity"))
    fresh = data.draw(st.booleans(), label="uninitialised")
    net = K.Network.__new__(K.Network) if fresh else K.Network(*first)
    x = rng.normal(size=(data.draw(sizes, label="rows"), 3)).astype(dtype)
    before = None
    if not fresh:
        before = np.empty((len(x), 2), dtype)
        net.predict(x, before)
    # a second __init__: a bigger valid plan, or one failing late (a bad seed, a bad capacity)
    again = list(_small_network(rng, dtype, 3, data.draw(sizes, label="hidden"), 2,
                                data.draw(st.integers(1, 512), label="capacity2")))
    again[7] = data.draw(st.sampled_from([0, -1, 2**64, "seed"]), label="seed")
    case("reentry", fresh=fresh, again=again[6:])
    try:
        net.__init__(*again)
        reinitialised = True
    except (RuntimeError, ValueError, TypeError, OverflowError):
        reinitialised = False
    if not fresh and reinitialised:
        fail("a second __init__ on a live Network was accepted")
    for call in data.draw(st.lists(st.sampled_from(["predict", "evaluate", "train", "reserve"]),
                                   min_size=1, max_size=4), label="calls"):
        out = np.empty((len(x), 2), dtype)
        y = np.zeros((len(x), 2), dtype)
        try:
            if call == "predict":
                net.predict(x, out)
            elif call == "evaluate":
                net.evaluate(x, y)
            elif call == "reserve":
                net.reserve(data.draw(st.integers(1, 256), label="reserve"))
            else:
                batch = min(len(x), max(1, net.capacity))
                net.train(x, y, None, batch, 0, 1, {"kind": "sgd"},
                          np.zeros((0, net.params.shape[0]), dtype), 0, np.zeros(1), np.zeros(1))
                before = None  # the weights moved
        except RuntimeError:
            if not fresh and not reinitialised:
                fail(f"{call} refused on a network whose first __init__ completed")
            STATS.count("refused")
            continue
        if fresh and not reinitialised:
            fail(f"{call} ran on a network whose __init__ never completed")
        if call == "predict" and before is not None and not np.array_equal(out, before):
            fail("predict changed after a refused re-initialisation")
        STATS.count("worked")


# ---------------------------------------------------------------------------------------------
# Target: hostile hyper-parameters and data whose steps overflow.

HOSTILE = [0.9, 0.0, 1.0, 1 - 1e-12, 2.0, 5, -0.1, -1e-7, 1e-30, 1e30, math.nan, math.inf, -math.inf,
           True, None, "0.9", np.float32(0.5), np.int64(0), 2**63]


def run_hyper_example(data):
    keras = fastdnn
    kind = data.draw(st.sampled_from(["Adam", "RMSprop", "Adagrad", "SGD"]), label="optimizer")
    names = {"Adam": ["learning_rate", "beta_1", "beta_2", "epsilon"],
             "RMSprop": ["learning_rate", "rho", "momentum", "epsilon"],
             "Adagrad": ["learning_rate", "initial_accumulator_value", "epsilon"],
             "SGD": ["learning_rate", "momentum"]}[kind]
    name = data.draw(st.sampled_from(names + ["iterations"]), label="name")
    value = data.draw(st.sampled_from(HOSTILE), label="value")
    later = data.draw(st.booleans(), label="assigned")
    case("hyper", kind=kind, name=name, value=value, later=later)
    try:
        if later or name == "iterations":
            opt = getattr(keras.optimizers, kind)()
            setattr(opt, name, value)
        else:
            opt = getattr(keras.optimizers, kind)(**{name: value})
    except (ValueError, TypeError):
        STATS.count("refused")
        return
    value = getattr(opt, name)
    if name == "iterations":
        if not 0 <= value <= 2**62:
            fail(f"iterations={value} accepted")
    elif not math.isfinite(value) or value < 0 or (name in ("beta_1", "beta_2", "rho") and
                                                   value >= 1):
        fail(f"{kind}({name}={value}) accepted")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    scale = data.draw(st.sampled_from([1.0, 1e10, 1e17, 1e19, 1e30]), label="target scale")
    x = np.abs(rng.normal(size=(12, 4))).astype(np.float32) * data.draw(
        st.sampled_from([1.0, 1e4]), label="x scale")
    y = (rng.normal(size=(12, 1)) * scale).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, "relu"),
                              keras.layers.Dense(1)])
    model.compile(opt, "mse")
    start = opt.iterations
    with quiet():
        model.fit(x, y, batch_size=data.draw(st.sampled_from([1, 4, 12]), label="batch"),
                  epochs=2, verbose=0)
    if not all(np.isfinite(w).all() for w in model.get_weights()) or not np.isfinite(
            opt.slots).all():
        fail(f"{kind}({name}={value}) on targets of {scale:g} left non-finite weights or slots")
    if opt.iterations - start > 2 * 12:
        fail("more steps counted than batches")
    STATS.count("worked")


# ---------------------------------------------------------------------------------------------
# Target: callbacks that change the model during fit.

ACTIONS = ["set_weights", "set_weights_inf", "compile", "add", "pop", "build", "predict",
           "evaluate", "fit", "iterations", "slots_none", "stop", "raise", "learning_rate",
           "load_weights", "save"]


class _Mutator(fastdnn.callbacks.Callback):
    def __init__(self, actions, x, y, folder):
        super().__init__()
        self.actions, self.x, self.y, self.folder = actions, x, y, folder

    def on_train_batch_end(self, batch, logs=None):
        if batch < len(self.actions):
            self.act(self.actions[batch])

    def act(self, action):
        m, keras = self.model, fastdnn
        case("callback", action=action)
        if action == "set_weights":
            m.set_weights([w * 0.5 for w in m.get_weights()])
        elif action == "set_weights_inf":
            m.set_weights([np.full_like(w, np.inf) for w in m.get_weights()])
        elif action == "compile":
            m.compile("sgd", "sparse_categorical_crossentropy")
        elif action == "add":
            m.add(keras.layers.Dense(3))
        elif action == "pop":
            m.pop()
        elif action == "build":
            m.build((None, 6))
        elif action == "predict":
            m.predict(self.x, verbose=0)
        elif action == "evaluate":
            m.evaluate(self.x, self.y, verbose=0)
        elif action == "fit":
            m.fit(self.x, self.y, verbose=0)
        elif action == "iterations":
            m.optimizer.iterations = 2**62
        elif action == "slots_none":
            m.optimizer.slots = None
        elif action == "stop":
            m.stop_training = True
        elif action == "raise":
            raise ValueError("callback raised")
        elif action == "learning_rate":
            m.optimizer.learning_rate = -1.0
        elif action == "save":
            m.save(os.path.join(self.folder, "m.fastdnn"))
        else:
            m.load_weights(os.path.join(self.folder, "m.fastdnn"))


def run_callbacks_example(data):
    import tempfile
    keras = fastdnn
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, "relu"),
                              keras.layers.Dense(3, "softmax")])
    model.compile(data.draw(st.sampled_from(["adam", "sgd", "rmsprop"]), label="opt"),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.normal(size=(16, 6)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    actions = data.draw(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3),
                        label="actions")
    with tempfile.TemporaryDirectory() as folder:
        model.save(os.path.join(folder, "m.fastdnn"))
        try:
            with quiet():
                model.fit(x, y, batch_size=4, epochs=2, verbose=0,
                          callbacks=[_Mutator(actions, x, y, folder)])
            STATS.count("worked")
        except (RuntimeError, ValueError, TypeError):
            STATS.count("refused")
    # whatever happened, the model is usable and its weights are finite
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        fail(f"callbacks {actions} left non-finite weights")
    with quiet():
        out = model.predict(x, verbose=0)
    if out.shape != (16, 3) or not np.isfinite(out).all():
        fail(f"after callbacks {actions}, predict returned {out.shape} / non-finite values")


# ---------------------------------------------------------------------------------------------
# Target: an interrupt (KeyboardInterrupt from a signal handler) at a random point of fit,
# evaluate or predict; afterwards the weights, slots and counter are those of the steps counted.

def _interrupt_model(seed_weights):
    keras = fastdnn
    n_in, hidden = seed_weights[0].shape
    model = keras.Sequential([keras.Input((n_in,)), keras.layers.Dense(hidden, "relu"),
                              keras.layers.Dense(3, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.set_weights(seed_weights)
    return model


class _EveryBatch(fastdnn.callbacks.Callback):
    """A batch hook: fit returns to Python after every batch."""

    def on_train_batch_end(self, batch, logs=None):
        pass


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_signals_example(data):
    import signal
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    # wide: products large enough to check for the interrupt between their chunks, mid-step
    n_in, hidden = (512, 1024) if data.draw(st.booleans(), label="wide") else (6, 16)
    x = rng.normal(size=(256, n_in)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    initial = [rng.normal(size=s).astype(np.float32) * 0.3
               for s in ((n_in, hidden), (hidden,), (hidden, 3), (3,))]
    model = _interrupt_model(initial)
    method = data.draw(st.sampled_from(["fit", "fit", "evaluate", "predict"]), label="method")
    delay = data.draw(st.floats(1e-5, 0.03), label="delay")
    batch = data.draw(st.sampled_from([1, 8, 32]), label="batch")
    per_batch = data.draw(st.booleans(), label="per-batch callback")
    callbacks = [_EveryBatch()] if per_batch else []
    case("signals", method=method, delay=delay, batch=batch, per_batch=per_batch, n_in=n_in)
    previous = signal.signal(signal.SIGALRM, _interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, delay)
        if method == "fit":
            model.fit(x, y, batch_size=batch, epochs=50, shuffle=False, verbose=0,
                      callbacks=callbacks)
        elif method == "evaluate":
            model.evaluate(x, y, batch_size=batch, verbose=0)
        else:
            model.predict(x, batch_size=batch, verbose=0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        STATS.count("worked")
    except KeyboardInterrupt:
        STATS.count("refused:interrupted")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    done = model.optimizer.iterations
    again = _interrupt_model(initial)
    steps = -(-len(x) // batch)
    if done // steps:
        again.fit(x, y, batch_size=batch, epochs=done // steps, shuffle=False, verbose=0)
    if done % steps:
        again.fit(x[:done % steps * batch], y[:done % steps * batch], batch_size=batch,
                  shuffle=False, verbose=0)
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), again.get_weights()))
    slots, expected = model.optimizer.slots, again.optimizer.slots
    if slots is not None and expected is None:  # made before the first step: still zeros
        expected = np.zeros_like(slots)
    if not same or (slots is not None and not np.array_equal(slots, expected)):
        fail(f"after an interrupt of {method} the state is not that of {done} steps")
