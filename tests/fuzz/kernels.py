"""Fuzz targets ``kernels`` (the public kernels, against ``fastdnn.reference`` on copies of the
same arguments) and ``network`` (``_kernels.Network``: constructor, train, evaluate, predict).
"""

import copy
import math

import numpy as np
from hypothesis import strategies as st

from fastdnn import _kernels as K
from fastdnn import reference as R

from .._helpers import FUSED_OUTPUT, LOSS_METRIC, loss_targets
from .common import REFUSALS, STATS, case, close, describe, fail, quiet
from .strategies import ACTS, ODD_ACTS, mutate


# Target: the public kernels, against the reference on copies of the same arguments.

def kernel_call(data):
    """Draw a kernel and its arguments; return (name, args dict, array names it writes)."""
    name = data.draw(st.sampled_from([
        "activation_forward", "activation_backward", "dense_forward", "dense_backward",
        "sparse_softmax_cross_entropy", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
        "mean_squared_error", "count_correct", "dropout_forward", "sgd_update", "adagrad_update",
        "rmsprop_update", "adam_update", "nadam_update", "adamax_update",
        "batch_normalization_forward", "batch_normalization_backward", "normalization_forward"]),
        label="kernel")
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
    elif name == "batch_normalization_forward":
        args = {"x": normal(n, c), "gamma": normal(c), "beta": normal(c),
                "moving_mean": normal(c), "moving_variance": np.abs(normal(c)),
                "out": normal(n, c),
                "momentum": data.draw(st.sampled_from([0.99, 0.0, 1.0, -0.1, 1.5, math.nan])),
                "epsilon": data.draw(st.sampled_from([1e-3, 1e-12, 0.0, -1.0, math.inf])),
                "training": data.draw(st.booleans())}
        outs = ["out", "moving_mean", "moving_variance"]
    elif name == "batch_normalization_backward":
        args = {"x": normal(n, c), "gamma": normal(c), "grad": normal(n, c),
                "dgamma": normal(c), "dbeta": normal(c),
                "epsilon": data.draw(st.sampled_from([1e-3, 1.0, 0.0, math.nan]))}
        outs = ["grad", "dgamma", "dbeta"]
    elif name == "normalization_forward":
        args = {"x": normal(n, c), "mean": normal(c), "variance": normal(c) ** 2,
                "out": normal(n, c), "invert": data.draw(st.booleans()),
                "epsilon": data.draw(st.sampled_from([1e-7, 1.0, 0.0, math.nan]))}
        outs = ["out"]
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
        else:  # the Adam family
            second = "u" if name == "adamax_update" else "v"
            args.update({"m": normal(size), second: np.abs(normal(size))},
                        iteration=data.draw(st.sampled_from([0, 1, 10, 10**6, -1, 2**62, 2**63])),
                        learning_rate=data.draw(hyper),
                        beta_1=data.draw(st.sampled_from([0.9, 0.0, 1.0, math.nan])),
                        beta_2=data.draw(st.sampled_from([0.999, 0.0, 1.0])),
                        epsilon=data.draw(st.sampled_from([1e-7, 1.0, math.inf])))
            outs = ["params", "m", second]
            if name == "adam_update":
                ams = data.draw(st.booleans())
                args.update(amsgrad=ams, v_hat=np.abs(normal(size)) if ams else None)
                outs.append("v_hat")
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
    last_act = FUSED_OUTPUT[loss] if fused else data.draw(st.sampled_from([K.LINEAR, K.TANH]))
    metric = LOSS_METRIC[loss]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="rng"))
    ops = [(K.OP_DENSE, hidden, K.RELU, 0.0, 0, n_in * hidden),
           (K.OP_DROPOUT, hidden, K.LINEAR, 0.25, -1, -1),
           (K.OP_DENSE, n_out, last_act, 0.0, n_in * hidden + hidden,
            n_in * hidden + hidden + hidden * n_out)]
    n_params = n_in * hidden + hidden + hidden * n_out + n_out
    norms, activities = [None] * 3, [None] * 3
    if data.draw(st.booleans(), label="batchnorm"):  # after the dropout, its weights last
        flags = data.draw(st.integers(0, 3), label="bn_flags")
        ops.insert(2, (K.OP_BATCH_NORMALIZATION, hidden, flags, 0.0, n_params, -1))
        n_params += (2 + (flags & 1) + (flags >> 1)) * hidden
        norms.insert(2, (data.draw(st.sampled_from([0.99] * 4 + [0.0, 1.0, 1.5, math.nan])),
                         data.draw(st.sampled_from([1e-3] * 4 + [1e-12, 0.0, math.inf]))))
        activities.insert(2, None)
    activities[0] = data.draw(st.sampled_from([None] * 4 + [(0.01, 0.0), (0.0, 0.1), (-1.0, 0.0),
                                                            (math.nan, 0.0)]), label="activity")
    params = rng.normal(size=n_params).astype(dtype)
    if len(ops) == 4:
        params[-hidden:] = np.abs(params[-hidden:])  # the moving variance
    capacity = data.draw(st.integers(1, 8), label="capacity")
    ctor = dict(n_inputs=n_in, ops=ops, params=params, loss=loss, metric=metric, fused=fused,
                capacity=capacity, seed=data.draw(st.integers(0, 2**64 - 1), label="seed"),
                normalizations=norms, activities=activities)
    # Constructor mutations.
    which = data.draw(st.sampled_from(["none"] * 4 + ["n_inputs", "ops", "params", "loss",
                                                      "metric", "fused", "capacity"]))
    if which == "n_inputs":
        ctor["n_inputs"] = data.draw(st.sampled_from([0, -1, n_in + 1, 2**31, 2**40, 1.5, None]))
    elif which == "ops":
        i = data.draw(st.integers(0, len(ops) - 1))
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
    y = loss_targets(rng, loss, n, n_out, dtype)
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
                                         {"kind": "adagrad"}, {"kind": "nadam", "clipnorm": 0.1},
                                         {"kind": "adamax", "global_clipnorm": 1.0}]))
        rows = {"sgd": 0, "adam": 2, "rmsprop": 2, "adagrad": 1, "nadam": 2,
                "adamax": 2}[opt["kind"]]
        args = {"x": x, "y": y, "order": rng.permutation(n).astype(np.int64)
                if data.draw(st.booleans()) else None, "batch_size": batch, "first": 0,
                "count": count, "opt": opt, "slots": np.zeros((rows, net.params.size), dtype),
                "iteration": 0, "loss_out": np.zeros(count), "correct_out": np.zeros(count)}
    for key in [k for k, v in args.items() if isinstance(v, np.ndarray)]:
        if data.draw(st.integers(0, 5), label=f"mutate_{key}?") == 0:
            args[key], _ = mutate(data, args[key], label=key)
    if method == "train" and data.draw(st.integers(0, 5)) == 0:
        key = data.draw(st.sampled_from(["batch_size", "first", "count", "iteration", "opt"]))
        args[key] = data.draw(st.sampled_from([-1, 0, 10**6, 2**62, None, {"kind": "lion"},
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
