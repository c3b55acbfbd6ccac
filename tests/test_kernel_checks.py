"""Bad input at the Python boundary of the kernels: every public kernel must refuse it with a
``TypeError`` or ``ValueError`` that names the offending argument, and never crash.

Each kernel is described once (a builder of valid arguments and the role of each array), and
the bad variants are generated from that: wrong dtype, mixed precision, wrong rank, mismatched
shapes, non-contiguous and Fortran-ordered arrays, read-only outputs, lists, scalars and None.
The most dangerous cases (labels out of range, buffers of the wrong size) also run in a
subprocess, which must exit normally with the exception printed.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from _helpers import build_ops
from fastdnn import _kernels as kernels

N, C, N_IN = 4, 3, 5

# roles of the array arguments
FIRST = "first"          # sets the dtype and the batch size: the others are checked against it
IN = "in"                # an input checked against the first
OUT = "out"              # a writable output
OPTIONAL = "optional"    # None is valid
ANY_RANK = "any_rank"    # a first argument of any rank (dropout)


def values(shape, dtype):
    size = int(np.prod(shape))
    return np.linspace(-1.0, 1.0, size).reshape(shape).astype(dtype)


def build(name, n=N, dtype=np.float64):
    """Valid keyword arguments for kernel ``name`` (a batch of n rows)."""
    v = lambda *shape: values(shape, dtype)  # noqa: E731
    labels = (np.arange(n) % C).astype(np.int32)
    if name == "activation_forward":
        return dict(z=v(n, C), out=v(n, C), activation="softmax")
    if name == "activation_backward":
        return dict(a=v(n, C), grad=v(n, C), activation="tanh")
    if name == "dense_forward":
        return dict(x=v(n, N_IN), w=v(N_IN, C), b=v(C), out=v(n, C), activation="relu")
    if name == "dense_backward":
        return dict(x=v(n, N_IN), w=v(N_IN, C), a=v(n, C), grad=v(n, C), dw=v(N_IN, C), db=v(C),
                    dx=v(n, N_IN), activation="sigmoid")
    if name == "sparse_softmax_cross_entropy":
        return dict(logits=v(n, C), labels=labels, grad=v(n, C))
    if name in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy"):
        return dict(logits=v(n, C), targets=np.abs(v(n, C)), grad=v(n, C))
    if name == "mean_squared_error":
        return dict(predictions=v(n, C), targets=v(n, C), grad=v(n, C))
    if name == "count_correct_labels":
        return dict(scores=v(n, C), labels=labels)
    if name == "count_correct_targets":
        return dict(scores=v(n, C), targets=np.abs(v(n, C)), binary=True)
    if name == "dropout_forward":
        return dict(x=v(n, C), out=v(n, C), mask=v(n, C), rate=0.5, seed=1, counter=0)
    size = 6
    if name == "sgd_update":
        return dict(params=v(size), grads=v(size), learning_rate=0.1, momentum=0.9,
                    velocity=v(size))
    if name == "adagrad_update":
        return dict(params=v(size), grads=v(size), accumulator=np.abs(v(size)))
    if name == "rmsprop_update":
        return dict(params=v(size), grads=v(size), velocity=np.abs(v(size)), momentum=0.9,
                    centered=True, momentum_buffer=v(size), average_gradient=v(size))
    assert name == "adam_update"
    return dict(params=v(size), grads=v(size), m=v(size), v=np.abs(v(size)), iteration=3,
                amsgrad=True, v_hat=np.abs(v(size)))


ROLES = {
    "activation_forward": {"z": {FIRST}, "out": {OUT}},
    "activation_backward": {"a": {FIRST}, "grad": {OUT}},
    "dense_forward": {"x": {FIRST}, "w": {IN}, "b": {IN, OPTIONAL}, "out": {OUT}},
    "dense_backward": {"x": {FIRST}, "w": {IN}, "a": {IN}, "grad": {OUT}, "dw": {OUT},
                       "db": {OUT, OPTIONAL}, "dx": {OUT, OPTIONAL}},
    "sparse_softmax_cross_entropy": {"logits": {FIRST}, "grad": {OUT, OPTIONAL}},
    "softmax_cross_entropy": {"logits": {FIRST}, "targets": {IN}, "grad": {OUT, OPTIONAL}},
    "sigmoid_binary_cross_entropy": {"logits": {FIRST}, "targets": {IN}, "grad": {OUT, OPTIONAL}},
    "mean_squared_error": {"predictions": {FIRST}, "targets": {IN}, "grad": {OUT, OPTIONAL}},
    "count_correct_labels": {"scores": {FIRST}},
    "count_correct_targets": {"scores": {FIRST}, "targets": {IN, OPTIONAL}},
    "dropout_forward": {"x": {FIRST, ANY_RANK}, "out": {OUT}, "mask": {OUT}},
    "sgd_update": {"params": {FIRST, OUT}, "grads": {IN}, "velocity": {OUT}},
    "adagrad_update": {"params": {FIRST, OUT}, "grads": {IN}, "accumulator": {OUT}},
    "rmsprop_update": {"params": {FIRST, OUT}, "grads": {IN}, "velocity": {OUT},
                       "momentum_buffer": {OUT}, "average_gradient": {OUT}},
    "adam_update": {"params": {FIRST, OUT}, "grads": {IN}, "m": {OUT}, "v": {OUT},
                    "v_hat": {OUT}},
}


def kernel(name):
    return getattr(kernels, name.replace("_labels", "").replace("_targets", ""))


def non_contiguous(a):
    """The same values as ``a`` in a strided view (every other element of the last axis)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    view = wide[..., ::2]
    view[...] = a
    assert not view.flags.c_contiguous
    return view


def read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


def resized(a, axis):
    shape = list(a.shape)
    shape[axis] += 1
    return values(shape, a.dtype)


def bad_variants():
    """(test id, kernel name, argument name, bad value, expected exception type)."""
    cases = []
    for name, roles in ROLES.items():
        good = build(name)
        for arg, role in roles.items():
            a = good[arg]
            other_float = np.float32 if a.dtype == np.float64 else np.float64
            bad = [
                ("int64", a.astype(np.int64), TypeError),
                ("float16", a.astype(np.float16), TypeError),
                ("non_contiguous", non_contiguous(a), ValueError),
                ("list", a.tolist(), TypeError),
                ("scalar", 1.0, TypeError),
            ]
            if ANY_RANK not in role:
                bad.append(("rank_plus_one", a[np.newaxis], ValueError))
                bad.append(("rank_minus_one", np.asarray(a.reshape(-1)[0]) if a.ndim == 1
                            else a.reshape(-1), ValueError))
            if a.ndim == 2 and min(a.shape) > 1:
                bad.append(("fortran", np.asfortranarray(a), ValueError))
            if OPTIONAL not in role:  # a required optimizer slot says so with a ValueError
                bad.append(("none", None, (TypeError, ValueError)))
            if OUT in role:
                bad.append(("read_only", read_only(a), ValueError))
            if FIRST not in role:
                bad.append(("mixed_precision", a.astype(other_float), TypeError))
                for axis in range(a.ndim):
                    if name.startswith("dense") and arg == "w" and axis == 1:
                        continue  # w's width sets the output shape: the outputs take the blame
                    bad.append((f"shape_axis{axis}", resized(a, axis), ValueError))
            for label, value, error in bad:
                cases.append(pytest.param(name, arg, value, error, id=f"{name}-{arg}-{label}"))
    return cases


def call(name, **overrides):
    args = {**build(name), **overrides}
    return kernel(name)(**args)


def test_every_valid_call_in_the_table_succeeds():
    for name in ROLES:
        call(name)  # the bad variants below differ from these in one argument only


@pytest.mark.parametrize("name,arg,value,error", bad_variants())
def test_bad_array_argument_is_rejected_naming_it(name, arg, value, error):
    with pytest.raises(error) as info:
        call(name, **{arg: value})
    assert arg in str(info.value)


# --- labels


LABEL_KERNELS = ["sparse_softmax_cross_entropy", "count_correct_labels"]
BAD_LABELS = {
    "equal_to_classes": (np.array([0, 1, C, 2], np.int32), ValueError),
    "far_above": (np.array([0, 1, 2**31 - 1, 2], np.int32), ValueError),
    "negative": (np.array([0, -1, 2, 1], np.int32), ValueError),
    "very_negative": (np.array([0, 1, 2, -2**31], np.int32), ValueError),
    "int64": (np.array([0, 1, 2, 1], np.int64), TypeError),
    "uint32": (np.array([0, 1, 2, 1], np.uint32), TypeError),
    "float": (np.array([0, 1, 2, 1], np.float64), TypeError),
    "too_short": (np.array([0, 1, 2], np.int32), ValueError),
    "too_long": (np.array([0, 1, 2, 1, 0], np.int32), ValueError),
    "two_dimensional": (np.array([[0], [1], [2], [1]], np.int32), ValueError),
    "non_contiguous": (np.array([0, 9, 1, 9, 2, 9, 1, 9], np.int32)[::2], ValueError),
    "list": ([0, 1, 2, 1], TypeError),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
@pytest.mark.parametrize("name", LABEL_KERNELS)
def test_bad_labels_are_rejected_naming_them(name, case):
    labels, error = BAD_LABELS[case]
    with pytest.raises(error) as info:
        call(name, labels=labels)
    assert "labels" in str(info.value)


def test_sparse_cross_entropy_without_labels_is_rejected():
    with pytest.raises(TypeError, match="labels"):
        call("sparse_softmax_cross_entropy", labels=None)


def test_count_correct_needs_exactly_one_of_labels_and_targets():
    scores = values((N, C), np.float64)
    with pytest.raises(ValueError, match="labels"):
        kernels.count_correct(scores)
    with pytest.raises(ValueError, match="targets"):
        kernels.count_correct(scores, labels=np.zeros(N, np.int32), targets=np.zeros((N, C)))


# --- empty batches and unknown activations


@pytest.mark.parametrize("name,first", [
    ("dense_forward", "x"), ("dense_backward", "x"), ("sparse_softmax_cross_entropy", "logits"),
    ("softmax_cross_entropy", "logits"), ("sigmoid_binary_cross_entropy", "logits"),
    ("mean_squared_error", "predictions"),
])
def test_empty_batch_is_rejected_naming_the_batch(name, first):
    with pytest.raises(ValueError) as info:
        kernel(name)(**build(name, n=0))
    assert first in str(info.value)
    assert "empty" in str(info.value)


def test_empty_batch_is_a_no_op_where_nothing_is_averaged():
    z = np.empty((0, C))
    kernels.activation_forward(z, z.copy(), "softmax")
    kernels.activation_backward(z, z.copy(), "softmax")
    kernels.dropout_forward(z, z.copy(), z.copy(), 0.5, 1, 0)
    assert kernels.count_correct(z, labels=np.empty(0, np.int32)) == 0.0
    assert kernels.count_correct(z, targets=z.copy(), binary=True) == 0.0


@pytest.mark.parametrize("activation", ["mish", "Relu", "", 15, -1, None])
@pytest.mark.parametrize("name", ["activation_forward", "activation_backward", "dense_forward",
                                  "dense_backward"])
def test_unknown_activation_is_rejected_naming_it(name, activation):
    with pytest.raises((ValueError, TypeError)) as info:
        call(name, activation=activation)
    assert "activation" in str(info.value)


# --- scalar hyper-parameters


NON_FINITE = [float("nan"), float("inf"), float("-inf")]
HYPER = [
    ("sgd_update", "learning_rate"), ("sgd_update", "momentum"),
    ("adagrad_update", "learning_rate"), ("adagrad_update", "epsilon"),
    ("rmsprop_update", "learning_rate"), ("rmsprop_update", "rho"),
    ("rmsprop_update", "momentum"), ("rmsprop_update", "epsilon"),
    ("adam_update", "learning_rate"), ("adam_update", "beta_1"), ("adam_update", "beta_2"),
    ("adam_update", "epsilon"), ("dropout_forward", "rate"),
]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name,hyper", HYPER)
def test_non_finite_hyper_parameter_is_rejected_naming_it(name, hyper, value):
    args = build(name)
    before = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError) as info:
        kernel(name)(**{**args, hyper: value})
    assert hyper in str(info.value)
    for k, v in before.items():  # nothing was written before the check failed
        np.testing.assert_array_equal(args[k], v)


@pytest.mark.parametrize("name,hyper,value", [
    ("sgd_update", "momentum", -0.1), ("sgd_update", "momentum", 1.5),
    ("dropout_forward", "rate", -0.1), ("dropout_forward", "rate", 1.0001),
    ("adam_update", "iteration", -1),
])
def test_out_of_range_hyper_parameter_is_rejected_naming_it(name, hyper, value):
    with pytest.raises(ValueError) as info:
        call(name, **{hyper: value})
    assert hyper in str(info.value)


@pytest.mark.parametrize("name,overrides,slot", [
    ("sgd_update", {"velocity": None}, "velocity"),
    ("sgd_update", {"momentum": 0.0}, "velocity"),
    ("adagrad_update", {"accumulator": None}, "accumulator"),
    ("rmsprop_update", {"velocity": None}, "velocity"),
    ("rmsprop_update", {"momentum_buffer": None}, "momentum_buffer"),
    ("rmsprop_update", {"momentum": 0.0}, "momentum_buffer"),
    ("rmsprop_update", {"average_gradient": None}, "average_gradient"),
    ("rmsprop_update", {"centered": False}, "average_gradient"),
    ("adam_update", {"m": None}, "m"),
    ("adam_update", {"v": None}, "v"),
    ("adam_update", {"v_hat": None}, "v_hat"),
    ("adam_update", {"amsgrad": False}, "v_hat"),
])
def test_missing_or_unneeded_slot_is_rejected_naming_it(name, overrides, slot):
    with pytest.raises((ValueError, TypeError)) as info:
        call(name, **overrides)
    assert slot in str(info.value)


# --- optimizer slots that overlap params, grads or each other

SLOTS = [(name, slot) for name, roles in ROLES.items() if name.endswith("_update")
         for slot in roles if slot not in ("params", "grads")]


@pytest.mark.parametrize("target", ["params", "grads", "params_shifted"])
@pytest.mark.parametrize("name,slot", SLOTS)
def test_slot_overlapping_params_or_grads_is_rejected_naming_it(name, slot, target):
    args = build(name)
    size = args["params"].size
    if target == "params_shifted":  # a slot one element further along the params' buffer
        buffer = np.zeros(size + 1)
        args["params"] = buffer[:size]
        args[slot] = buffer[1:]
    else:
        args[slot] = args[target]
    with pytest.raises(ValueError) as info:
        kernel(name)(**args)
    assert slot in str(info.value)


SLOT_PAIRS = [(name, a, b) for name, roles in ROLES.items() if name.endswith("_update")
              for a in roles for b in roles
              if a < b and a not in ("params", "grads") and b not in ("params", "grads")]


@pytest.mark.parametrize("shifted", [False, True], ids=["same_buffer", "shifted_by_one"])
@pytest.mark.parametrize("name,first_slot,second_slot", SLOT_PAIRS)
def test_slots_overlapping_each_other_are_rejected(name, first_slot, second_slot, shifted):
    args = build(name)
    if shifted:
        size = args["params"].size
        buffer = np.zeros(size + 1)
        args[first_slot], args[second_slot] = buffer[:size], buffer[1:]
    else:
        args[second_slot] = args[first_slot]
    with pytest.raises(ValueError) as info:
        kernel(name)(**args)
    assert first_slot in str(info.value) or second_slot in str(info.value)


# --- the dangerous ones, in a subprocess: it must exit normally with each exception printed

SUBPROCESS_PRELUDE = """
import numpy as np
from fastdnn import _kernels as k

def attempt(label, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        print(f"{label}: {type(exc).__name__}: {exc}", flush=True)
    else:
        print(f"{label}: NO ERROR", flush=True)

x = np.ones((4, 5)); w = np.ones((5, 3)); a = np.ones((4, 3)); g = np.ones((4, 3))
logits = np.ones((4, 3)); y = np.ones((4, 3))
"""

SUBPROCESS_CASES = {
    "labels_out_of_range": ("""
        for i, bad in enumerate([3, 10**6, 2**31 - 1, -1, -2**31]):
            labels = np.array([0, 1, bad, 2], np.int32)
            attempt(f"sparse_ce_{i}", k.sparse_softmax_cross_entropy, logits, labels, g.copy())
            attempt(f"count_correct_{i}", k.count_correct, logits, labels=labels)
        """, ["labels"] * 10),
    "wrong_buffer_sizes": ("""
        small = np.ones((1, 1)); big_params = np.ones(100_000)
        attempt("dense_forward_out", k.dense_forward, x, w, None, small)
        attempt("dense_forward_w", k.dense_forward, x, np.ones((50, 3)), None, a.copy())
        attempt("dense_forward_b", k.dense_forward, x, w, np.ones(1), a.copy())
        attempt("dense_backward_dw", k.dense_backward, x, w, a, g.copy(), small, None)
        attempt("dense_backward_dx", k.dense_backward, x, w, a, g.copy(), w.copy(), None, small)
        attempt("dense_backward_grad", k.dense_backward, x, w, a, small, w.copy(), None)
        attempt("ce_targets", k.softmax_cross_entropy, logits, small)
        attempt("mse_grad", k.mean_squared_error, logits, y, small)
        attempt("activation_out", k.activation_forward, logits, small, "softmax")
        attempt("dropout_mask", k.dropout_forward, logits, g.copy(), small, 0.5, 1, 0)
        attempt("sgd_velocity", k.sgd_update, big_params, big_params.copy(), 0.1, 0.9, False,
                np.ones(10))
        attempt("adam_grads", k.adam_update, big_params, np.ones(10), np.zeros(100_000),
                np.zeros(100_000), 0)
        """, ["out", "w", "b", "dw", "dx", "grad", "targets", "grad", "out", "mask", "velocity",
              "grads"]),
    "network": ("""
        ops, n_params = OPS_AND_SIZE
        net = k.Network(5, ops, np.zeros(n_params), k.LOSS_SPARSE_CE, k.METRIC_SPARSE_ACC, True, 4)
        labels = np.array([0, 1, 2, 1], np.int32)
        def train(order=None, labels=labels, slots=np.zeros((0, n_params)), batch_size=4):
            net.train(x, labels, order, batch_size, 0, 1, {"kind": "sgd"}, slots, 0,
                      np.zeros(1), np.zeros(1))
        attempt("order_huge", train, order=np.array([0, 1, 2, 10**9]))
        attempt("order_negative", train, order=np.array([0, -1, 2, 3]))
        attempt("labels_huge", train, labels=np.array([0, 1, 2**31 - 1, 1], np.int32))
        attempt("batch_size", train, batch_size=1000)
        attempt("slots_width", train, slots=np.zeros((0, 3)))
        attempt("predict_out", net.predict, x, np.ones((1, 1)))
        attempt("evaluate_labels", net.evaluate, x, np.array([0, 1, 7, 1], np.int32))
        """, ["order", "order", "labels", "batch_size", "slots", "out", "labels"]),
}


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_dangerous_bad_input_does_not_crash_a_subprocess(case):
    body, names = SUBPROCESS_CASES[case]
    ops, size = build_ops(N_IN, [("dense", 8, "relu", True), ("dense", C, "softmax", True)])
    ops = [tuple(v if isinstance(v, float) else int(v) for v in op) for op in ops]  # codes as literals
    script = SUBPROCESS_PRELUDE + textwrap.dedent(body).replace("OPS_AND_SIZE", repr((ops, size)))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(names), result.stdout
    for line, name in zip(lines, names):
        label, kind, message = line.split(": ", 2)
        assert kind in ("TypeError", "ValueError"), line
        assert name in message, line

