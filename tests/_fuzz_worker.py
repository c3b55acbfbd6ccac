"""API fuzzer for fastdnn, run in a subprocess by ``tests/test_fuzz_api.py``.

Usage::

    python tests/_fuzz_worker.py TARGET --seed 20240601 --examples 150

TARGET is one of ``kernels``, ``network``, ``model``, ``constructors``, ``reentry``, ``hyper``,
``callbacks``, ``signals`` (see ``TARGETS``). Each
target feeds random, mostly wrong, arguments to public entry points with hypothesis (fixed seed,
no example database, a bounded number of examples) and checks the contract of the library:

* the call works, and then its result is right (a kernel equals ``fastdnn.reference`` on copies
  of its arguments; ``predict`` equals a plain NumPy forward pass on the documented conversion of
  x: ``np.asarray(x)`` → the model's float type, C order, flattened per sample); or
* the call raises ``ValueError`` or ``TypeError`` (``NotImplementedError`` only where fastdnn
  documents an unsupported Keras option), and then nothing changed: the weights, the optimizer's
  iteration counter and slots are bit-identical to before and the model still predicts the same.

A crash (segfault, abort) kills this process: the parent sees a non-zero exit code and, thanks
to ``faulthandler`` and the ``CASE`` line written to stderr before every call, the input that did
it. A hang is caught by the parent's timeout.

Known bugs (each reproduced deterministically by a strict-xfail test in test_fuzz_api.py) are
listed in ``KNOWN_BUGS``: an outcome matching one is counted under its tag instead of failing the
run, so the fuzzer keeps guarding everything else. Inputs of a known *crash* are never generated
(they would end the run); they are counted as ``skipped_known_crash``.

The last line of stdout is ``FUZZ-SUMMARY {json}`` with the number of examples run and the count
of each outcome. The exit code is 0 when every example met the contract, 1 otherwise (hypothesis
prints the shrunk falsifying example on stderr).
"""

import argparse
import contextlib
import copy
import faulthandler
import io
import json
import math
import os
import resource
import sys
import traceback
import warnings

import numpy as np

# Guard the shared machine: a request for a huge buffer must fail fast, not swap. (Not under
# AddressSanitizer, which reserves terabytes of address space for its shadow memory.)
_AS_LIMIT = 6 * 2**30
if "asan" not in os.environ.get("LD_PRELOAD", "") and "ASAN_OPTIONS" not in os.environ:
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > _AS_LIMIT:
            resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, hard))
    except (ValueError, OSError):  # pragma: no cover - not on Linux
        pass

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
faulthandler.enable()

from hypothesis import HealthCheck, Phase, given, seed as hyp_seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastdnn  # noqa: E402
from fastdnn import _kernels as K  # noqa: E402
from fastdnn import reference as R  # noqa: E402

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


# ---------------------------------------------------------------------------------------------
# Array-likes: a "right" array and its mutations, right-or-wrong.

NUMERIC_DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                  np.uint8, np.uint16, np.uint32, np.bool_]

FLOAT_MUTATIONS = ["same"] * 6 + ["fortran", "strided", "reversed", "readonly", "list", "nan",
                                  "inf", "overflow32", "big", "tiny", "zeros", "dtype"]
WRONG_MUTATIONS = ["fewer_rows", "more_rows", "extra_axis", "drop_axis", "transpose",
                   "wrong_width", "empty", "scalar", "none", "string", "object", "object_none",
                   "ragged", "complex", "dict", "datetime", "bytes", "zero_d", "set"]


def mutate(data, base, allow_wrong=True, label="x"):
    """Return ``(value, mutation)``: base changed by one drawn mutation."""
    pool = FLOAT_MUTATIONS + (WRONG_MUTATIONS if allow_wrong else [])
    kind = data.draw(st.sampled_from(pool), label=f"{label}_mutation")
    a = np.array(base, copy=True)
    if kind == "same":
        return a, kind
    if kind == "fortran":
        return np.asfortranarray(a), kind
    if kind == "strided":
        big = np.repeat(a, 2, axis=0) if a.ndim else a
        return big[::2], kind
    if kind == "reversed":
        return a[::-1] if a.ndim else a, kind
    if kind == "readonly":
        a.setflags(write=False)
        return a, kind
    if kind == "list":
        return a.tolist(), kind
    if kind in ("nan", "inf", "overflow32", "big", "tiny", "zeros"):
        f = a.astype(np.float64)
        if f.size:
            i = data.draw(st.integers(0, f.size - 1), label=f"{label}_index")
            if kind == "nan":
                f.flat[i] = np.nan
            elif kind == "inf":
                f.flat[i] = data.draw(st.sampled_from([np.inf, -np.inf]))
            elif kind == "overflow32":
                f.flat[i] = 1e39
            elif kind == "big":
                f *= 1e4
            elif kind == "tiny":
                f *= 1e-42
            else:
                f[...] = 0
        return f, kind
    if kind == "dtype":
        dt = data.draw(st.sampled_from(NUMERIC_DTYPES), label=f"{label}_dtype")
        with np.errstate(all="ignore"):
            return a.astype(dt), kind
    if kind == "fewer_rows":
        return a[:-1] if a.ndim else a, kind
    if kind == "more_rows":
        return (np.concatenate([a, a[:1]]) if a.ndim else a), kind
    if kind == "extra_axis":
        return a[..., None], kind
    if kind == "drop_axis":
        return (a.reshape(a.shape[0], -1)[:, 0] if a.ndim > 1 else a.reshape(-1)[:1].reshape(())
                if a.size else a), kind
    if kind == "transpose":
        return a.T, kind
    if kind == "wrong_width":
        if a.ndim >= 2:
            return np.concatenate([a, a[:, :1]], axis=1), kind
        return a[..., None], kind
    if kind == "empty":
        return a[:0], kind
    if kind == "scalar":
        return data.draw(st.sampled_from([0, 1, 3.5, -2, np.float32(1), True])), kind
    if kind == "none":
        return None, kind
    if kind == "string":
        return data.draw(st.sampled_from(["abc", "1.0", np.array(["a", "b"]),
                                          a.astype(str) if a.size < 500 else "x"])), kind
    if kind == "object":
        return a.astype(object), kind
    if kind == "object_none":
        o = a.astype(object)
        if o.size:
            o.flat[0] = None
        return o, kind
    if kind == "ragged":
        rows = a.reshape(a.shape[0], -1).tolist() if a.ndim >= 1 and a.size else [[1.0]]
        if rows:
            rows[0] = rows[0] + [1.0]
        return rows, kind
    if kind == "complex":
        return a.astype(np.complex128), kind
    if kind == "dict":
        return {"x": a}, kind
    if kind == "datetime":
        return np.zeros(a.shape, "datetime64[s]"), kind
    if kind == "bytes":
        return b"\x00\x01", kind
    if kind == "zero_d":
        return np.array(1.0), kind
    if kind == "set":
        return {1, 2, 3}, kind
    raise AssertionError(kind)


# ---------------------------------------------------------------------------------------------
# Target: the public kernels, against the reference on copies of the same arguments.

ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
ODD_ACTS = ["Relu", "gelu", None, 7, -1, 2.5, "", b"relu"]


def kernel_call(data):
    """Draw a kernel and its arguments; return (name, args dict, array names it writes)."""
    name = data.draw(st.sampled_from([
        "activation_forward", "activation_backward", "dense_forward", "dense_backward",
        "sparse_softmax_cross_entropy", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
        "mean_squared_error", "count_correct", "dropout_forward", "sgd_update", "adagrad_update",
        "rmsprop_update", "adam_update"]), label="kernel")
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    n = data.draw(st.integers(1, 9), label="n")
    c = data.draw(st.integers(1, 7), label="c")
    m = data.draw(st.integers(1, 7), label="m")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    scale = data.draw(st.sampled_from([1.0, 1.0, 10.0, 1e-3]), label="scale")

    def normal(*shape):
        return (rng.normal(size=shape) * scale).astype(dtype)

    act = data.draw(st.sampled_from(ACTS + ODD_ACTS[:2] if data.draw(st.booleans())
                                    else ACTS), label="activation")
    if name == "activation_forward":
        args = {"z": normal(n, c), "out": normal(n, c), "activation": act}
        outs = ["out"]
    elif name == "activation_backward":
        z = normal(n, c)
        a = np.empty_like(z)
        R.activation_forward(z, a, act if act in ACTS else "linear")
        args = {"a": a, "grad": normal(n, c), "activation": act}
        outs = ["grad"]
    elif name == "dense_forward":
        args = {"x": normal(n, m), "w": normal(m, c), "b": normal(c), "out": normal(n, c),
                "activation": act}
        outs = ["out"]
    elif name == "dense_backward":
        x, w = normal(n, m), normal(m, c)
        a = np.empty((n, c), dtype)
        R.dense_forward(x, w, None, a, act if act in ACTS else "linear")
        args = {"x": x, "w": w, "a": a, "grad": normal(n, c), "dw": normal(m, c),
                "db": normal(c), "dx": normal(n, m), "activation": act}
        outs = ["grad", "dw", "db", "dx"]
    elif name == "sparse_softmax_cross_entropy":
        args = {"logits": normal(n, c), "labels": rng.integers(0, c, n).astype(np.int32),
                "grad": normal(n, c)}
        outs = ["grad"]
    elif name in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        t = (np.eye(c)[rng.integers(0, c, n)] if name == "softmax_cross_entropy"
             else rng.integers(0, 2, (n, c))).astype(dtype)
        args = {"logits": normal(n, c), "targets": t, "grad": normal(n, c)}
        outs = ["grad"]
    elif name == "mean_squared_error":
        args = {"predictions": normal(n, c), "targets": normal(n, c), "grad": normal(n, c)}
        outs = ["grad"]
    elif name == "count_correct":
        if data.draw(st.booleans(), label="sparse"):
            args = {"scores": normal(n, c), "labels": rng.integers(0, c, n).astype(np.int32)}
        else:
            args = {"scores": normal(n, c), "targets": rng.integers(0, 2, (n, c)).astype(dtype),
                    "binary": data.draw(st.booleans())}
        outs = []
    elif name == "dropout_forward":
        args = {"x": normal(n, c), "out": normal(n, c), "mask": normal(n, c),
                "rate": data.draw(st.sampled_from([0.0, 0.3, 0.5, 1.0, -0.1, 1.5, math.nan,
                                                   math.inf])),
                "seed": data.draw(st.sampled_from([0, 1, 2**64 - 1, -1, 2**64])),
                "counter": data.draw(st.sampled_from([0, 5, 2**63, -3]))}
        outs = ["out", "mask"]
    else:
        size = n * c
        args = {"params": normal(size), "grads": normal(size)}
        hyper = st.sampled_from([0.0, 0.001, 0.1, 0.9, 1.0, 2.0, -0.5, 1e30, math.nan, math.inf])
        if name == "sgd_update":
            mom = data.draw(st.sampled_from([0.0, 0.0, 0.5, 0.9, 1.0, -0.1, 1.5, math.nan]))
            args.update(learning_rate=data.draw(hyper), momentum=mom,
                        nesterov=data.draw(st.booleans()),
                        velocity=normal(size) if mom > 0 else None)
            outs = ["params", "velocity"]
        elif name == "adagrad_update":
            args.update(accumulator=np.abs(normal(size)) + dtype(0.1),
                        learning_rate=data.draw(hyper),
                        epsilon=data.draw(st.sampled_from([1e-7, 0.0, 1.0, math.nan])))
            outs = ["params", "accumulator"]
        elif name == "rmsprop_update":
            mom = data.draw(st.sampled_from([0.0, 0.0, 0.9, -0.1]))
            centered = data.draw(st.booleans())
            args.update(velocity=np.abs(normal(size)), learning_rate=data.draw(hyper),
                        rho=data.draw(st.sampled_from([0.9, 0.0, 1.0, 1.5, math.nan])),
                        momentum=mom, epsilon=data.draw(st.sampled_from([1e-7, 1.0])),
                        centered=centered,
                        momentum_buffer=normal(size) if mom > 0 else None,
                        average_gradient=normal(size) * 0 if centered else None)
            outs = ["params", "velocity", "momentum_buffer", "average_gradient"]
        else:
            ams = data.draw(st.booleans())
            args.update(m=normal(size), v=np.abs(normal(size)),
                        iteration=data.draw(st.sampled_from([0, 1, 10, 10**6, -1, 2**62, 2**63])),
                        learning_rate=data.draw(hyper),
                        beta_1=data.draw(st.sampled_from([0.9, 0.0, 1.0, math.nan])),
                        beta_2=data.draw(st.sampled_from([0.999, 0.0, 1.0])),
                        epsilon=data.draw(st.sampled_from([1e-7, 1.0, math.inf])), amsgrad=ams,
                        v_hat=np.abs(normal(size)) if ams else None)
            outs = ["params", "m", "v", "v_hat"]
    return name, args, outs, dtype


def kernel_mutations(data, name, args, outs):
    """Mutate some arguments: wrong arrays, aliasing an output onto an input, dropping one."""
    arrays = [k for k, v in args.items() if isinstance(v, np.ndarray)]
    aliased = None
    for key in arrays:
        if data.draw(st.integers(0, 9), label=f"mutate_{key}?") == 0:
            args[key], _ = mutate(data, args[key], label=key)
    writable = [k for k in outs if isinstance(args.get(k), np.ndarray)]
    if writable and data.draw(st.integers(0, 4), label="alias?") == 0:
        # An output buffer that is also an input (same shape and dtype, so no check trips).
        target = data.draw(st.sampled_from(writable), label="alias_target")
        sources = [k for k in arrays if k != target and isinstance(args[k], np.ndarray)
                   and args[k].shape == args[target].shape
                   and args[k].dtype == args[target].dtype]
        if sources:
            source = data.draw(st.sampled_from(sources), label="alias_source")
            args[target] = args[source]
            aliased = (target, source)
    if data.draw(st.integers(0, 14), label="drop?") == 0 and args:
        key = data.draw(st.sampled_from(sorted(args)), label="drop_key")
        args[key] = None
    return aliased


def run_kernel_example(data):
    name, args, outs, dtype = kernel_call(data)
    aliased = kernel_mutations(data, name, args, outs)
    # Inputs must come back untouched (unless an output was made to share their memory).
    inputs = {k: np.array(v, copy=True) for k, v in args.items()
              if isinstance(v, np.ndarray) and k not in outs
              and not any(isinstance(args.get(o), np.ndarray) and np.shares_memory(v, args[o])
                          for o in outs)}
    reference_args = {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else
                          copy.deepcopy(v)) for k, v in args.items()}
    case("kernel " + name, **args)
    try:
        result = getattr(K, name)(**args)
    except REFUSALS:
        STATS.count("refused")
        return
    # Accepted: the reference on independent copies must agree.
    try:
        with quiet():
            expected = getattr(R, name)(**reference_args)
    except Exception as exc:  # the kernel accepted what the reference cannot compute
        fail(f"{name} accepted arguments the reference refuses ({type(exc).__name__}: {exc}); "
             f"args: { {k: describe(v) for k, v in args.items()} }")
    good = True
    if result is not None or expected is not None:
        good &= close(result, expected, dtype)
    for key in outs:
        if isinstance(args.get(key), np.ndarray) and isinstance(reference_args.get(key),
                                                                np.ndarray):
            good &= close(args[key], reference_args[key], dtype,
                          scale=max(1.0, float(np.nanmax(np.abs(
                              np.where(np.isfinite(reference_args[key]), reference_args[key],
                                       0)), initial=0))))
    for key, before in inputs.items():
        if not np.array_equal(args[key], before, equal_nan=True):
            fail(f"{name} wrote into its input {key!r}")
    if good:
        STATS.count("accepted_correct")
        return
    fail(f"{name} returned a wrong result (outputs aliasing inputs: {aliased}); "
         f"args: { {k: describe(v) for k, v in args.items()} }")


# ---------------------------------------------------------------------------------------------
# Target: kernels.Network (constructor, train, evaluate, predict).

def run_network_example(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    n_in = data.draw(st.integers(1, 6), label="n_inputs")
    hidden = data.draw(st.integers(1, 6), label="hidden")
    n_out = data.draw(st.integers(1, 5), label="n_outputs")
    loss = data.draw(st.sampled_from([K.LOSS_SPARSE_CE, K.LOSS_CE, K.LOSS_BCE, K.LOSS_MSE]))
    fused = loss != K.LOSS_MSE and data.draw(st.booleans(), label="fused")
    last_act = {K.LOSS_SPARSE_CE: K.SOFTMAX, K.LOSS_CE: K.SOFTMAX, K.LOSS_BCE: K.SIGMOID,
                K.LOSS_MSE: K.LINEAR}[loss] if fused else data.draw(
                    st.sampled_from([K.LINEAR, K.TANH]))
    metric = {K.LOSS_SPARSE_CE: K.METRIC_SPARSE_ACC, K.LOSS_CE: K.METRIC_CATEGORICAL_ACC,
              K.LOSS_BCE: K.METRIC_BINARY_ACC, K.LOSS_MSE: K.METRIC_NONE}[loss]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    ops = [(K.OP_DENSE, hidden, K.RELU, 0.0, 0, n_in * hidden),
           (K.OP_DROPOUT, hidden, K.LINEAR, 0.25, -1, -1),
           (K.OP_DENSE, n_out, last_act, 0.0, n_in * hidden + hidden,
            n_in * hidden + hidden + hidden * n_out)]
    n_params = n_in * hidden + hidden + hidden * n_out + n_out
    params = rng.normal(size=n_params).astype(dtype)
    capacity = data.draw(st.integers(1, 8), label="capacity")
    ctor = dict(n_inputs=n_in, ops=ops, params=params, loss=loss, metric=metric, fused=fused,
                capacity=capacity, seed=data.draw(st.integers(0, 2**64 - 1), label="seed"))
    # Constructor mutations.
    which = data.draw(st.sampled_from(["none"] * 4 + ["n_inputs", "ops", "params", "loss",
                                                      "metric", "fused", "capacity"]))
    if which == "n_inputs":
        ctor["n_inputs"] = data.draw(st.sampled_from([0, -1, n_in + 1, 2**31, 2**40, 1.5, None]))
    elif which == "ops":
        i = data.draw(st.integers(0, 2))
        field = data.draw(st.integers(0, 5))
        value = data.draw(st.sampled_from([-1, 0, 1, 5, 2**31, -2**40, 0.5, 1.5, None,
                                           n_params, n_params - 1]))
        op = list(ops[i])
        op[field] = value
        ctor["ops"] = ops[:i] + [tuple(op)] + ops[i + 1:]
        if data.draw(st.booleans()):
            ctor["ops"] = data.draw(st.sampled_from([[], [()], [(0,)], "ops", None, [ops[0]] * 3]))
    elif which == "params":
        ctor["params"], _ = mutate(data, params, label="params")
    elif which in ("loss", "metric"):
        ctor[which] = data.draw(st.sampled_from([-1, 0, 1, 2, 3, 4, 2**40, None, "mse"]))
    elif which == "fused":
        ctor["fused"] = not fused
    elif which == "capacity":
        ctor["capacity"] = data.draw(st.sampled_from([0, -1, 2**40, 2**62, 2**63, None, 2.0]))
    case("Network.__init__", **ctor)
    try:
        net = K.Network(**ctor)
    except REFUSALS:
        STATS.count("refused")
        return
    except MemoryError:
        if isinstance(ctor["capacity"], int) and ctor["capacity"] > 2**30:
            STATS.count("refused_memory")
            return
        raise
    # The reference twin, for the valid constructions only (it checks nothing itself).
    ref = R.Network(**{**ctor, "params": np.array(ctor["params"], copy=True)}) \
        if which in ("none", "capacity") else None

    n = data.draw(st.integers(1, 12), label="rows")
    x = rng.normal(size=(n, n_in)).astype(dtype)
    if loss == K.LOSS_SPARSE_CE:
        y = rng.integers(0, n_out, n).astype(np.int32)
    elif loss == K.LOSS_MSE:
        y = rng.normal(size=(n, n_out)).astype(dtype)
    else:
        y = rng.integers(0, 2, (n, n_out)).astype(dtype)
    method = data.draw(st.sampled_from(["train", "evaluate", "predict"]), label="method")
    before = np.array(net.params, copy=True)
    if method == "predict":
        out = np.zeros((n, net.n_outputs), dtype)
        args = {"x": x, "out": out}
    elif method == "evaluate":
        args = {"x": x, "y": y}
    else:
        batch = data.draw(st.integers(1, capacity), label="batch")
        n_batches = -(-n // batch)
        count = data.draw(st.integers(0, n_batches), label="count")
        opt = data.draw(st.sampled_from([{"kind": "sgd", "learning_rate": 0.1},
                                         {"kind": "adam"}, {"kind": "rmsprop", "centered": True},
                                         {"kind": "adagrad"}]))
        rows = {"sgd": 0, "adam": 2, "rmsprop": 2, "adagrad": 1}[opt["kind"]]
        args = {"x": x, "y": y, "order": rng.permutation(n).astype(np.int64)
                if data.draw(st.booleans()) else None, "batch_size": batch, "first": 0,
                "count": count, "opt": opt, "slots": np.zeros((rows, net.params.size), dtype),
                "iteration": 0, "loss_out": np.zeros(count), "correct_out": np.zeros(count)}
    for key in [k for k, v in args.items() if isinstance(v, np.ndarray)]:
        if data.draw(st.integers(0, 5), label=f"mutate_{key}?") == 0:
            args[key], _ = mutate(data, args[key], label=key)
    if method == "train" and data.draw(st.integers(0, 5)) == 0:
        key = data.draw(st.sampled_from(["batch_size", "first", "count", "iteration", "opt"]))
        args[key] = data.draw(st.sampled_from([-1, 0, 10**6, 2**62, None, {"kind": "nadam"},
                                               {"kind": "sgd", "momentum": math.nan}]))
    case("Network." + method, **args)
    try:
        result = getattr(net, method)(**args)
    except REFUSALS:
        STATS.count("refused")
        if not np.array_equal(net.params, before, equal_nan=True):
            fail(f"Network.{method} refused its arguments but changed params")
        return
    if method == "predict" and ref is not None and isinstance(args["x"], np.ndarray) \
            and isinstance(args["out"], np.ndarray):
        expected = np.zeros_like(args["out"])
        ref.predict(np.array(args["x"]), expected)
        if not close(args["out"], expected, dtype, scale=10.0):
            fail("Network.predict differs from the reference")
    STATS.count("accepted")


# ---------------------------------------------------------------------------------------------
# Target: Sequential.fit / evaluate / predict.

def make_models():
    """Small compiled models, one per loss, with their valid data."""
    keras = fastdnn
    rng = np.random.default_rng(7)
    L = keras.layers
    specs = {
        "sparse": ([keras.Input((6,)), L.Dense(8, "relu"), L.Dense(3, "softmax")],
                   "sparse_categorical_crossentropy", ["accuracy"], "adam"),
        "categorical": ([keras.Input((2, 3)), L.Flatten(), L.Dense(4, "tanh"), L.Dropout(0.3),
                         L.Dense(3, "softmax")], "categorical_crossentropy", ["accuracy"],
                        keras.optimizers.SGD(0.05, momentum=0.9)),
        "binary": ([keras.Input((5,)), L.Dense(4, "relu"), L.Dense(1, "sigmoid")],
                   "binary_crossentropy", ["accuracy"], "rmsprop"),
        "mse": ([keras.Input((5,)), L.Dense(2)], "mse", None, "adagrad"),
        "logits": ([keras.Input((4,)), L.Dense(3)],
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True), None, "adam"),
    }
    models = {}
    for name, (layers, loss, metrics, opt) in specs.items():
        model = keras.Sequential(layers, name=f"fuzz_{name}")
        model.compile(opt, loss, metrics=metrics)
        shape = model.input_shape[1:]
        n = 12
        x = rng.normal(size=(n,) + shape).astype(np.float32)
        out = model.output_shape[-1]
        if name in ("sparse", "logits"):
            y = rng.integers(0, out, n)
        elif name == "categorical":
            y = np.eye(out, dtype=np.float32)[rng.integers(0, out, n)]
        elif name == "binary":
            y = rng.integers(0, 2, (n, 1)).astype(np.float32)
        else:
            y = rng.normal(size=(n, out)).astype(np.float32)
        with quiet():
            model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # builds the optimizer slots
        models[name] = (model, x, y)
    return models


MODELS = None


def numpy_forward(model, x):
    """The model's outputs from its weights in float64 NumPy (inference mode)."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            w = layer.get_weights()
            h = h @ w[0].astype(np.float64) + (w[1] if len(w) > 1 else 0)
            act = layer.activation
        elif kind in ("Activation", "ReLU", "Softmax"):
            act = layer.activation
        else:
            continue
        out = np.empty_like(h)
        R.activation_forward(h, out, act)
        h = out
    return h


def state(model):
    opt = model.optimizer
    return (model.get_weights(), opt.iterations if opt else None,
            None if opt is None or opt.slots is None else opt.slots.copy(), model.input_shape,
            model.output_shape)


def same_state(a, b):
    wa, ia, sa, ina, outa = a
    wb, ib, sb, inb, outb = b
    return (len(wa) == len(wb) and all(np.array_equal(x, y, equal_nan=True) for x, y in
                                       zip(wa, wb)) and ia == ib and ina == inb and outa == outb
            and ((sa is None and sb is None) or (sa is not None and sb is not None and
                                                 np.array_equal(sa, sb, equal_nan=True))))


def restore(model, saved):
    weights, iterations, slots, _, _ = saved
    model.set_weights(weights)
    model.optimizer.iterations = iterations
    if slots is not None:
        model.optimizer.slots[...] = slots


BATCH_SIZES = [None, 1, 3, 4, 32, 0, -1, 2.5, True, "32", np.int64(5), 10**6, 2**31, 10**12,
               2**62, 2**63]


def canonical_x(model, x):
    """The documented conversion: np.asarray, the model's float type, C order, flat samples."""
    a = np.asarray(x)
    return np.ascontiguousarray(a.reshape(a.shape[0], -1), dtype=np.float32)


def run_model_example(data):
    global MODELS
    if MODELS is None:
        MODELS = make_models()
    name = data.draw(st.sampled_from(sorted(MODELS)), label="model")
    model, x0, y0 = MODELS[name]
    method = data.draw(st.sampled_from(["fit", "fit", "evaluate", "predict", "call"]),
                       label="method")
    x, x_kind = mutate(data, x0, label="x")
    y, y_kind = mutate(data, y0, label="y")
    kwargs = {}
    if data.draw(st.booleans(), label="batch?"):
        kwargs["batch_size"] = data.draw(st.sampled_from(BATCH_SIZES), label="batch_size")
    if data.draw(st.booleans(), label="verbose?"):
        kwargs["verbose"] = data.draw(st.sampled_from([0, 1, 2, "auto", 3, -1, None, "loud"]))
    if method == "fit":
        if data.draw(st.booleans(), label="epochs?"):
            kwargs["epochs"] = data.draw(st.sampled_from([0, 1, 2, -1, 1.5, None, True, "2",
                                                          np.int32(2), 10**9]))
        extra = data.draw(st.sampled_from([
            {}, {}, {"initial_epoch": -1}, {"initial_epoch": 5}, {"shuffle": False},
            {"shuffle": "batch"}, {"validation_split": 0.25}, {"validation_split": 1.0},
            {"validation_split": math.nan}, {"validation_split": -0.5},
            {"validation_data": (x0, y0)}, {"validation_data": (x, y)},
            {"validation_data": x0}, {"validation_data": (x0,)}, {"validation_freq": 0},
            {"validation_batch_size": 0}, {"class_weight": {0: 1.0}},
            {"sample_weight": np.ones(len(x0))}, {"steps_per_epoch": 2},
            {"validation_steps": 1}, {"callbacks": 5}, {"callbacks": [None]},
            {"callbacks": [fastdnn.callbacks.TerminateOnNaN()]},
            {"callbacks": [fastdnn.callbacks.EarlyStopping(monitor="loss", patience=0)]}]),
            label="extra")
        if "initial_epoch" in kwargs and "initial_epoch" in extra:
            extra = {}
        kwargs.update(extra)
        if "epochs" not in kwargs:
            kwargs["epochs"] = 1
        if kwargs["epochs"] == 10**9:  # a huge epoch count, of which only the last one runs
            kwargs["initial_epoch"] = 10**9 - 1
    elif method == "evaluate":
        kwargs.update(data.draw(st.sampled_from([{}, {}, {"return_dict": True},
                                                 {"sample_weight": np.ones(len(x0))},
                                                 {"steps": 1}, {"callbacks": 5},
                                                 {"callbacks": [None]}])))
    elif method == "predict":
        kwargs.update(data.draw(st.sampled_from([{}, {}, {"steps": 1}, {"callbacks": []},
                                                 {"callbacks": 5}, {"callbacks": ["x"]}])))
    else:
        kwargs = {"training": data.draw(st.sampled_from([False, False, True]))}
    saved = state(model)
    probe = model.predict(x0, verbose=0)
    label = f"{name}.{method}(x={x_kind}, y={y_kind})"
    case(label, x=x, y=y, **kwargs)
    call = {"fit": lambda: model.fit(x, y, **kwargs),
            "evaluate": lambda: model.evaluate(x, y, **kwargs),
            "predict": lambda: model.predict(x, **kwargs),
            "call": lambda: model(x, **kwargs)}[method]
    try:
        with quiet():
            result = call()
    except (ValueError, TypeError, NotImplementedError) as exc:
        if isinstance(exc, NotImplementedError) and not documented_unsupported(kwargs, exc):
            fail(f"{label}: NotImplementedError for a supported option: {exc}")
        STATS.count("refused")
        if not same_state(saved, state(model)):
            fail(f"{label} with {kwargs} raised {type(exc).__name__}: {exc}, but changed the "
                 "model (weights, optimizer state or shapes)")
        if not np.array_equal(model.predict(x0, verbose=0), probe):
            fail(f"{label}: the model predicts differently after a refused call")
        return
    # It worked: check the result.
    n = len(np.asarray(x)) if not isinstance(x, dict) else None
    if method in ("predict", "call"):
        cx = canonical_x(model, x)
        expected = numpy_forward(model, cx)
        if result.shape != expected.shape or result.dtype != np.float32:
            fail(f"{label}: predict returned {result.shape} {result.dtype}")
        finite = np.isfinite(expected)
        if not np.allclose(result[finite], expected[finite], rtol=1e-4, atol=1e-4):
            fail(f"{label}: predict differs from the NumPy forward pass of the converted x")
        STATS.count("worked")
    elif method == "evaluate":
        values = list(result.values()) if isinstance(result, dict) else (
            result if isinstance(result, list) else [result])
        if not all(isinstance(v, float) for v in values):
            fail(f"{label}: evaluate returned {result!r}")
        STATS.count("worked")
    else:
        epochs = kwargs.get("epochs", 1)
        initial = kwargs.get("initial_epoch", 0)
        ran = len(next(iter(result.history.values()), []))
        if ran > max(0, int(epochs) - int(initial)):
            fail(f"{label}: fit ran {ran} epochs for epochs={epochs}, initial_epoch={initial}")
        if ran == 0 and not same_state(saved, state(model)):
            fail(f"{label}: fit ran no epoch but changed the model")
        if not all(np.all(np.isfinite(w)) for w in model.get_weights()):
            fail(f"{label}: fit left non-finite weights")
        STATS.count("worked")
        restore(model, saved)
    assert n is None or n >= 0


def documented_unsupported(kwargs, exc):
    """NotImplementedError is allowed for the Keras options fastdnn documents as unsupported."""
    text = str(exc)
    return any(k in kwargs and kwargs[k] is not None and k in text for k in
               ("class_weight", "sample_weight", "steps_per_epoch", "validation_steps", "steps")) \
        or ("training" in kwargs and "training" in text)


# ---------------------------------------------------------------------------------------------
# Target: layer and optimizer constructors, compile, then a short fit with what was built.

ODD_VALUES = [0, 1, -1, 2, 0.5, 1e-7, 1e30, -1e30, math.nan, math.inf, -math.inf, None, True,
              False, "0.1", "relu", [1], (2,), np.float32(0.1), np.int64(3), 2**63, 2**40,
              complex(1, 1), b"x"]


def odd(data, label):
    return data.draw(st.sampled_from(ODD_VALUES), label=label)


def run_constructor_example(data):
    keras = fastdnn
    L = keras.layers
    what = data.draw(st.sampled_from(["Dense", "Dropout", "Activation", "ReLU", "Softmax",
                                      "Flatten", "Input", "SGD", "Adam", "RMSprop", "Adagrad",
                                      "compile"]), label="what")
    kwargs = {}
    args = ()
    if what == "Dense":
        args = (data.draw(st.sampled_from([1, 3, 0, -2, 2.0, True, None, "4", np.int64(2), 2**40,
                                           2**63])),)
        for key in ("activation", "use_bias", "kernel_initializer", "bias_initializer", "name",
                    "bogus"):
            if data.draw(st.integers(0, 3)) == 0:
                pool = ACTS + ODD_ACTS + ["zeros", "glorot_uniform", "dense/x", "x"]
                kwargs[key] = data.draw(st.sampled_from(pool if key != "use_bias"
                                                        else ODD_VALUES))
    elif what == "Dropout":
        args = (odd(data, "rate"),)
        if data.draw(st.booleans()):
            kwargs["noise_shape"] = data.draw(st.sampled_from([None, (1, 4)]))
        if data.draw(st.booleans()):
            kwargs["seed"] = odd(data, "seed")
    elif what == "Activation":
        args = (data.draw(st.sampled_from(ACTS + ODD_ACTS)),)
    elif what == "ReLU":
        for key in ("max_value", "negative_slope", "threshold"):
            if data.draw(st.booleans()):
                kwargs[key] = odd(data, key)
    elif what == "Softmax":
        if data.draw(st.booleans()):
            kwargs["axis"] = odd(data, "axis")
    elif what == "Flatten":
        if data.draw(st.booleans()):
            kwargs["data_format"] = data.draw(st.sampled_from([None, "channels_last",
                                                               "channels_first", 3]))
    elif what == "Input":
        kwargs["shape"] = data.draw(st.sampled_from([(4,), (2, 2), (), (0,), (-1,), None, 4,
                                                     "4", (4.0,), (None,), (2**40,), [4]]))
    elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
        names = {"SGD": ["learning_rate", "momentum", "nesterov"],
                 "Adam": ["learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"],
                 "RMSprop": ["learning_rate", "rho", "momentum", "epsilon", "centered"],
                 "Adagrad": ["learning_rate", "initial_accumulator_value", "epsilon"]}[what]
        for key in names + ["clipnorm", "weight_decay", "decay", "bogus"]:
            if data.draw(st.integers(0, 2)) == 0:
                kwargs[key] = odd(data, key)
    case(f"construct {what}", args=args, **kwargs)
    built = None
    try:
        with quiet():
            if what == "compile":
                built = None
            elif what == "Input":
                built = L.Input(**kwargs)
            elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
                built = getattr(keras.optimizers, what)(*args, **kwargs)
            else:
                built = getattr(L, what)(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        STATS.count("refused")
        return
    except NotImplementedError:
        STATS.count("refused_unsupported")
        return
    # Use what was built in a tiny model: it must train and predict, or refuse cleanly.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    optimizer = "adam"
    layers = [L.Input((4,))]
    if what == "Input":
        layers = [built]
        shape = built.shape
        if any(d is None or d > 64 for d in shape):  # no data of that shape to fit on here
            STATS.count("constructed")
            return
        x = rng.normal(size=(8,) + tuple(shape)).astype(np.float32)
        if len(shape) != 1:
            layers.append(L.Flatten())
    elif what in ("SGD", "Adam", "RMSprop", "Adagrad"):
        optimizer = built
    elif what != "compile":
        layers.append(built)
        if what == "Flatten":
            pass
    layers.append(L.Dense(2, "softmax"))
    compile_kwargs = {"optimizer": optimizer, "loss": "sparse_categorical_crossentropy"}
    if what == "compile":
        for key in ("optimizer", "loss", "metrics", "engine"):
            if data.draw(st.booleans(), label=f"compile_{key}?"):
                compile_kwargs[key] = data.draw(st.sampled_from(
                    ["adam", "Adam", "nadam", "sgd", None, 3, "mse", "binary_crossentropy",
                     "categorical_crossentropy", ["accuracy"], ["accuracy", "mse"], "accuracy",
                     {"out": "accuracy"}, ["auc"], "numpy", "fastdnn", "jax",
                     keras.losses.MeanSquaredError()]), label=f"compile_{key}")
    try:
        with quiet():
            model = keras.Sequential(layers)
            model.compile(**compile_kwargs)
    except (ValueError, TypeError, NotImplementedError):
        STATS.count("refused_in_model")
        return
    saved = model.get_weights()
    case(f"fit with {what}", args=args, **kwargs)
    try:
        with quiet():
            model.fit(x, y, epochs=1, batch_size=4, verbose=0)
            out = model.predict(x, verbose=0)
    except (ValueError, TypeError, NotImplementedError):
        STATS.count("refused_in_fit")
        now = model.get_weights()
        if len(now) != len(saved) or not all(np.array_equal(a, b) for a, b in zip(saved, now)):
            fail(f"fit with {what}{args}{kwargs} was refused but changed the weights")
        return
    if out.shape[0] != 8:
        fail(f"predict with {what} returned shape {out.shape}")
    STATS.count("worked")


# ---------------------------------------------------------------------------------------------
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
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, "relu"),
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
    x = rng.normal(size=(256, 6)).astype(np.float32)
    y = rng.integers(0, 3, 256)
    initial = [rng.normal(size=s).astype(np.float32) * 0.3 for s in ((6, 16), (16,), (16, 3), (3,))]
    model = _interrupt_model(initial)
    method = data.draw(st.sampled_from(["fit", "fit", "evaluate", "predict"]), label="method")
    delay = data.draw(st.floats(1e-5, 0.03), label="delay")
    batch = data.draw(st.sampled_from([1, 8, 32]), label="batch")
    per_batch = data.draw(st.booleans(), label="per-batch callback")
    callbacks = [_EveryBatch()] if per_batch else []
    case("signals", method=method, delay=delay, batch=batch, per_batch=per_batch)
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


# ---------------------------------------------------------------------------------------------

TARGETS = {"kernels": run_kernel_example, "network": run_network_example,
           "model": run_model_example, "constructors": run_constructor_example,
           "reentry": run_reentry_example, "hyper": run_hyper_example,
           "callbacks": run_callbacks_example, "signals": run_signals_example}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--examples", type=int, default=150)
    options = parser.parse_args(argv)
    body = TARGETS[options.target]

    @hyp_seed(options.seed)
    @settings(max_examples=options.examples, database=None, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
              print_blob=False)
    @given(st.data())
    def fuzz(data):
        STATS.examples += 1
        body(data)

    status = 0
    try:
        fuzz()
    except Exception:  # the shrunk falsifying example is printed by hypothesis
        traceback.print_exc()
        status = 1
    summary = {"target": options.target, "seed": options.seed, "examples": STATS.examples,
               "outcomes": dict(sorted(STATS.outcomes.items())),
               "known_bug_examples": STATS.first_case, "status": status}
    print("FUZZ-SUMMARY " + json.dumps(summary), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
