"""Property tests (hypothesis): every public kernel equals its NumPy twin in ``fastdnn.reference``.

Shapes are drawn at random (1..64 rows, 1..300 features), in float32 and float64, with values in
several regimes: ordinary (N(0, 1)), large (±1e4), tiny (1e-30, and subnormals, which the kernels
flush to zero while they run), exact zeros, and mixtures of all of these. The fused losses must
stay finite for any finite logits. An optimizer step with a zero gradient must leave the
parameters bit-identical exactly where its formula says so, and move them where it says so.

The arrays are drawn by NumPy from a hypothesis-chosen seed (fast for 64 x 300), so a failing
example replays from its printed seed and regime. Runs are derandomized (the same examples in
every CI run); FASTDNN_HYPOTHESIS_EXAMPLES sets the number of examples per test (default 50),
FASTDNN_HYPOTHESIS_RANDOM=1 draws new ones on each run.
"""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import FUSED_OUTPUT, LOSS_METRIC, loss_targets
from fastdnn import _kernels as K
from fastdnn import reference as R

EXAMPLES = int(os.environ.get("FASTDNN_HYPOTHESIS_EXAMPLES", "50"))
# FASTDNN_HYPOTHESIS_RANDOM=1 explores new examples on every run (for long local runs).
DERANDOMIZE = os.environ.get("FASTDNN_HYPOTHESIS_RANDOM") != "1"
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ACTS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
DTYPES = [np.float32, np.float64]
REGIMES = ["normal", "large", "tiny", "subnormal", "zero", "mixed"]
# Relative tolerance against the magnitude of the terms summed (see assert_close).
RTOL = {np.float32: 1e-4, np.float64: 1e-11}
# Absolute floor: below it the kernels' flush-to-zero may differ from NumPy's subnormals.
FLOOR = {np.float32: 1e-35, np.float64: 1e-300}

rows = st.integers(1, 64)
features = st.integers(1, 300)
dtypes = st.sampled_from(DTYPES)
regimes = st.sampled_from(REGIMES)
seeds = st.integers(0, 2**32 - 1)


def values(seed, shape, dtype, regime):
    """An array of ``shape`` in the value regime ``regime``."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=shape)
    if regime == "large":
        a = base * 1e4
    elif regime == "tiny":
        a = base * 1e-30
    elif regime == "subnormal":
        a = base * (1e-41 if dtype == np.float32 else 1e-310)
    elif regime == "zero":
        a = np.zeros(shape)
    elif regime == "mixed":
        pick = rng.integers(0, 5, shape)
        a = np.choose(pick, [base, base * 1e4, -1e4 * np.ones(shape), base * 1e-30,
                             np.zeros(shape)])
    else:
        a = base
    return a.astype(dtype)


def assert_close(actual, expected, dtype, scale=1.0):
    rtol = RTOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + FLOOR[dtype])


def magnitude(*arrays):
    return max([1.0] + [float(np.max(np.abs(a))) for a in arrays if a.size])


# --- activations and dense layers


@PROPERTY
@given(n=rows, c=features, dtype=dtypes, regime=regimes, seed=seeds, act=st.sampled_from(ACTS))
def test_activation_forward_equals_reference(n, c, dtype, regime, seed, act):
    z = values(seed, (n, c), dtype, regime)
    out_k, out_r = np.full_like(z, np.nan), np.full_like(z, np.nan)
    K.activation_forward(z, out_k, act)
    R.activation_forward(z, out_r, act)
    assert np.all(np.isfinite(out_k))
    assert_close(out_k, out_r, dtype)


@PROPERTY
@given(n=rows, c=features, dtype=dtypes, regime=regimes, seed=seeds, act=st.sampled_from(ACTS))
def test_activation_backward_equals_reference(n, c, dtype, regime, seed, act):
    z = values(seed, (n, c), dtype, "normal")
    a = np.empty_like(z)
    R.activation_forward(z, a, act)
    g = values(seed + 1, (n, c), dtype, regime)
    g_k, g_r = g.copy(), g.copy()
    K.activation_backward(a, g_k, act)
    R.activation_backward(a, g_r, act)
    assert_close(g_k, g_r, dtype, scale=magnitude(g) * (c if act == "softmax" else 1))


@PROPERTY
@given(n=rows, n_in=features, n_out=st.integers(1, 64), dtype=dtypes, regime=regimes, seed=seeds,
       act=st.sampled_from(ACTS), use_bias=st.booleans())
def test_dense_forward_equals_reference(n, n_in, n_out, dtype, regime, seed, act, use_bias):
    x = values(seed, (n, n_in), dtype, regime)
    w = values(seed + 1, (n_in, n_out), dtype, "normal")
    b = values(seed + 2, (n_out,), dtype, regime) if use_bias else None
    out_k, out_r = np.full((n, n_out), np.nan, dtype), np.full((n, n_out), np.nan, dtype)
    K.dense_forward(x, w, b, out_k, act)
    R.dense_forward(x, w, b, out_r, act)
    scale = float(np.max(np.abs(x) @ np.abs(w).astype(np.float64))) + magnitude(b if use_bias
                                                                                  else x[:0])
    assert np.all(np.isfinite(out_k))
    assert_close(out_k, out_r, dtype, scale=scale)


@PROPERTY
@given(n=rows, n_in=features, n_out=st.integers(1, 64), dtype=dtypes, regime=regimes, seed=seeds,
       act=st.sampled_from(ACTS), use_bias=st.booleans(), with_dx=st.booleans())
def test_dense_backward_equals_reference(n, n_in, n_out, dtype, regime, seed, act, use_bias,
                                         with_dx):
    x = values(seed, (n, n_in), dtype, regime)
    w = values(seed + 1, (n_in, n_out), dtype, "normal")
    a = np.empty((n, n_out), dtype)
    # The layer's output as training computes it: by the kernel, so subnormals are already
    # flushed (with a reference output, ReLU's mask `a > 0` would differ at a = 1e-42).
    K.dense_forward(x, w, None, a, act)
    g = values(seed + 2, (n, n_out), dtype, "normal")
    outs = {}
    for name, engine in (("k", K), ("r", R)):
        grad = g.copy()
        dw = np.full((n_in, n_out), np.nan, dtype)
        db = np.full(n_out, np.nan, dtype) if use_bias else None
        dx = np.full((n, n_in), np.nan, dtype) if with_dx else None
        engine.dense_backward(x, w, a, grad, dw, db, dx, act)
        outs[name] = (grad, dw, db, dx)
    # dL/dZ is bounded by |g| times the activation's derivative (softmax: by c·|g|).
    gz = np.abs(outs["r"][0]).astype(np.float64)
    gz_scale = magnitude(g) * (n_out if act == "softmax" else 1)
    assert_close(outs["k"][0], outs["r"][0], dtype, scale=gz_scale)
    slack = gz + gz_scale * RTOL[dtype]
    assert_close(outs["k"][1], outs["r"][1], dtype,
                 scale=float(np.max(np.abs(x).T.astype(np.float64) @ slack)))
    if use_bias:
        assert_close(outs["k"][2], outs["r"][2], dtype, scale=float(np.sum(gz)) + gz_scale)
    if with_dx:
        assert_close(outs["k"][3], outs["r"][3], dtype,
                     scale=float(np.max((gz + gz_scale) @ np.abs(w).T.astype(np.float64))))


# --- fused losses: equal to the reference, and finite for any finite logits

LOSS_KERNELS = ["sparse_softmax_cross_entropy", "softmax_cross_entropy",
                "sigmoid_binary_cross_entropy", "mean_squared_error"]


def loss_arguments(name, n, c, dtype, regime, seed):
    rng = np.random.default_rng(seed + 7)
    logits = values(seed, (n, c), dtype, regime)
    if name == "sparse_softmax_cross_entropy":
        return logits, rng.integers(0, c, n).astype(np.int32)
    if name == "softmax_cross_entropy":
        if rng.integers(2):  # one-hot, or a soft distribution
            return logits, np.eye(c, dtype=dtype)[rng.integers(0, c, n)]
        t = rng.random((n, c))
        return logits, (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    if name == "sigmoid_binary_cross_entropy":
        return logits, (rng.integers(0, 2, (n, c)) if rng.integers(2) else
                        rng.random((n, c))).astype(dtype)
    return logits, values(seed + 3, (n, c), dtype, regime)


@PROPERTY
@given(name=st.sampled_from(LOSS_KERNELS), n=rows, c=features, dtype=dtypes, regime=regimes,
       seed=seeds)
def test_loss_kernels_equal_reference_and_fused_losses_are_finite(name, n, c, dtype, regime,
                                                                  seed):
    logits, targets = loss_arguments(name, n, c, dtype, regime, seed)
    g_k, g_r = np.full_like(logits, np.nan), np.full_like(logits, np.nan)
    loss_k = getattr(K, name)(logits, targets, g_k)
    loss_r = getattr(R, name)(logits, targets, g_r)
    assert isinstance(loss_k, float)
    assert np.isfinite(loss_k), f"{name} returned {loss_k} for finite logits"
    assert np.all(np.isfinite(g_k))
    if name != "mean_squared_error":
        assert loss_k >= -RTOL[dtype] * magnitude(logits)  # a cross-entropy is >= 0
    spread = magnitude(logits, targets) ** (2 if name == "mean_squared_error" else 1)
    np.testing.assert_allclose(loss_k, loss_r, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * spread + FLOOR[dtype])
    grad_scale = (2 * magnitude(logits, targets) if name == "mean_squared_error" else 1.0) / n
    assert_close(g_k, g_r, dtype, scale=grad_scale)


@PROPERTY
@given(n=rows, c=st.integers(1, 300), dtype=dtypes, regime=regimes, seed=seeds,
       binary=st.booleans(), sparse=st.booleans())
def test_count_correct_equals_reference(n, c, dtype, regime, seed, binary, sparse):
    rng = np.random.default_rng(seed + 11)
    scores = values(seed, (n, c), dtype, regime)
    if sparse:
        labels = rng.integers(0, c, n).astype(np.int32)
        assert K.count_correct(scores, labels=labels) == R.count_correct(scores, labels=labels)
    else:
        targets = rng.integers(0, 2, (n, c)).astype(dtype)
        got = K.count_correct(scores, targets=targets, binary=binary)
        want = R.count_correct(scores, targets=targets, binary=binary)
        np.testing.assert_allclose(got, want, rtol=1e-12)


@PROPERTY
@given(n=rows, c=features, dtype=dtypes, regime=regimes, seed=seeds,
       rate=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), stream=st.integers(0, 2**64 - 1),
       counter=st.integers(0, 2**62))
def test_dropout_forward_equals_reference_exactly(n, c, dtype, regime, seed, rate, stream,
                                                  counter):
    x = values(seed, (n, c), dtype, regime)
    out_k, mask_k = np.full_like(x, np.nan), np.full_like(x, np.nan)
    out_r, mask_r = np.full_like(x, np.nan), np.full_like(x, np.nan)
    K.dropout_forward(x, out_k, mask_k, rate, stream, counter)
    R.dropout_forward(x, out_r, mask_r, rate, stream, counter)
    np.testing.assert_array_equal(mask_k, mask_r)
    assert_close(out_k, out_r, dtype, scale=0.0)


# --- optimizers: equal to the reference; what a zero gradient does


OPTIMIZERS = ["sgd", "sgd_momentum", "sgd_nesterov", "adagrad", "rmsprop", "rmsprop_momentum",
              "rmsprop_centered", "adam", "adam_amsgrad", "nadam", "adamax"]


def optimizer_call(kind, params, grads, slots, lr, iteration):
    """(kernel kwargs, reference kwargs) for ``kind`` with the given slots (dict of arrays)."""
    p = {"learning_rate": lr}
    if kind == "sgd":
        return "sgd_update", {**p}
    if kind in ("sgd_momentum", "sgd_nesterov"):
        return "sgd_update", {**p, "momentum": 0.9, "nesterov": kind == "sgd_nesterov",
                              "velocity": slots["velocity"]}
    if kind == "adagrad":
        return "adagrad_update", {**p, "accumulator": slots["accumulator"]}
    if kind.startswith("rmsprop"):
        return "rmsprop_update", {
            **p, "velocity": slots["second_moment"],
            "momentum": 0.9 if kind == "rmsprop_momentum" else 0.0,
            "centered": kind == "rmsprop_centered",
            "momentum_buffer": slots["momentum_buffer"] if kind == "rmsprop_momentum" else None,
            "average_gradient": slots["average_gradient"] if kind == "rmsprop_centered" else None}
    if kind == "nadam":
        return "nadam_update", {**p, "m": slots["m"], "v": slots["v"], "iteration": iteration}
    if kind == "adamax":
        return "adamax_update", {**p, "m": slots["m"], "u": slots["u"], "iteration": iteration}
    return "adam_update", {**p, "m": slots["m"], "v": slots["v"], "iteration": iteration,
                           "amsgrad": kind == "adam_amsgrad",
                           "v_hat": slots["v_hat"] if kind == "adam_amsgrad" else None}


def fresh_slots(seed, size, dtype, zero_moments):
    """Slots as a real run leaves them: RMSprop's second moment >= average_gradient², Adam's
    v_hat >= v >= m², Adamax's u >= |m|, Adagrad's accumulator > 0; SGD's velocity of either
    sign."""
    rng = np.random.default_rng(seed + 5)
    avg = np.zeros(size) if zero_moments else rng.normal(size=size) * 0.1
    second = avg * avg + (0 if zero_moments else rng.random(size) * 0.01)
    slots = {"velocity": np.zeros(size) if zero_moments else rng.normal(size=size) * 0.1,
             "accumulator": 0.1 + rng.random(size), "momentum_buffer": rng.normal(size=size) * 0.01,
             "average_gradient": avg, "second_moment": second.copy(), "m": avg.copy(),
             "v": second.copy(), "v_hat": second * 1.5,
             "u": np.abs(avg) * 1.2 + (0 if zero_moments else rng.random(size) * 0.01)}
    if zero_moments:
        slots["momentum_buffer"] = np.zeros(size)
    return {k: v.astype(dtype) for k, v in slots.items()}


@PROPERTY
@given(kind=st.sampled_from(OPTIMIZERS), size=st.integers(1, 300 * 64), dtype=dtypes,
       regime=regimes, seed=seeds, lr=st.sampled_from([1e-3, 0.01, 0.5]),
       iteration=st.integers(0, 10**6))
def test_optimizer_step_equals_reference(kind, size, dtype, regime, seed, lr, iteration):
    params = values(seed, (size,), dtype, "normal")
    grads = values(seed + 1, (size,), dtype, regime)
    results = []
    for engine in (K, R):
        slots = fresh_slots(seed, size, dtype, zero_moments=False)
        p = params.copy()
        name, kwargs = optimizer_call(kind, p, grads, slots, lr, iteration)
        getattr(engine, name)(p, grads, **kwargs)
        results.append((p, slots))
    (p_k, s_k), (p_r, s_r) = results
    assert np.all(np.isfinite(p_k))
    assert_close(p_k, p_r, dtype, scale=magnitude(params))
    for key in s_k:
        assert_close(s_k[key], s_r[key], dtype, scale=magnitude(s_r[key]) ** 1)


# Where the formula says a zero gradient changes nothing, and where it says the weights move.
ZERO_GRAD_UNCHANGED = {
    # kind: (slots zeroed?, iteration, parameters unchanged?)
    "sgd": (False, 7, True),                  # w -= lr·0
    "sgd_momentum": (True, 7, True),          # v = 0.9·0 - 0; w += 0
    "sgd_nesterov": (True, 7, True),          # w += 0.9·0 - lr·0
    "adagrad": (False, 7, True),              # s += 0; w -= lr·0/√(s+ε)
    "rmsprop": (False, 7, True),              # u = lr·0/√(ρr+ε) = 0
    "rmsprop_centered": (False, 7, True),     # u = lr·0/√(ρr - ρ²c² + ε) = 0 (r >= c²)
    "adam": (True, 0, True),                  # step 1, m = v = 0: w -= α·0/(0+ε)
    "adam_amsgrad": (True, 0, True),
    "nadam": (True, 0, True),                 # step 1, m = v = 0: m̂ = 0
    "adamax": (True, 0, True),                # step 1, m = u = 0: w -= lr·0/((1-β₁)ε)
}
ZERO_GRAD_MOVES = {
    "sgd_momentum": (False, 7),               # v = 0.9·v ≠ 0; w += v
    "sgd_nesterov": (False, 7),               # w += 0.9·(0.9·v)
    "rmsprop_momentum": (False, 7),           # b = 0.9·b ≠ 0; w -= b
    "adam": (False, 3),                       # m = 0.9·m ≠ 0; w -= α·m/(√v+ε)
    "adam_amsgrad": (False, 3),
    "nadam": (False, 3),                      # m = 0.9·m ≠ 0; m̂ ≠ 0
    "adamax": (False, 3),                     # m = 0.9·m ≠ 0, u = β₂·u > 0
}


@PROPERTY
@given(kind=st.sampled_from(sorted(ZERO_GRAD_UNCHANGED)), size=st.integers(1, 300 * 64),
       dtype=dtypes, regime=regimes, seed=seeds, lr=st.sampled_from([1e-3, 0.01, 0.5, 10.0]))
def test_a_zero_gradient_leaves_parameters_unchanged_where_the_formula_says(kind, size, dtype,
                                                                             regime, seed, lr):
    zeroed, iteration, _ = ZERO_GRAD_UNCHANGED[kind]
    params = values(seed, (size,), dtype, regime)
    slots = fresh_slots(seed, size, dtype, zero_moments=zeroed)
    p = params.copy()
    name, kwargs = optimizer_call(kind, p, np.zeros(size, dtype), slots, lr, iteration)
    getattr(K, name)(p, np.zeros(size, dtype), **kwargs)
    # The kernels flush subnormals to zero while they run (documented): a subnormal weight
    # comes back as 0; every other weight comes back bit-identical.
    expected = np.where(np.abs(params) < np.finfo(dtype).tiny, dtype(0), params)
    np.testing.assert_array_equal(p, expected)


@PROPERTY
@given(kind=st.sampled_from(sorted(ZERO_GRAD_MOVES)), size=st.integers(1, 300 * 64),
       dtype=dtypes, seed=seeds, lr=st.sampled_from([1e-3, 0.01, 0.5]))
def test_a_zero_gradient_still_moves_parameters_where_the_formula_says(kind, size, dtype, seed,
                                                                        lr):
    zeroed, iteration = ZERO_GRAD_MOVES[kind]
    params = values(seed, (size,), dtype, "normal")
    results = []
    for engine in (K, R):
        slots = fresh_slots(seed, size, dtype, zero_moments=zeroed)
        # Momentum-like slots of a size that moves float32 weights by more than rounding.
        for key in ("velocity", "momentum_buffer", "m"):
            slots[key] = np.where(np.abs(slots[key]) < 1e-2, 1e-2, slots[key]).astype(dtype)
        p = params.copy()
        name, kwargs = optimizer_call(kind, p, np.zeros(size, dtype), slots, lr, iteration)
        getattr(engine, name)(p, np.zeros(size, dtype), **kwargs)
        results.append(p)
    p_k, p_r = results
    assert np.all(p_k != params), f"{kind}: a zero gradient should still move the weights"
    assert_close(p_k, p_r, dtype, scale=magnitude(params))


# --- the driver: Network.predict/evaluate against the reference network


@PROPERTY
@given(n=rows, n_in=features, hidden=st.integers(1, 64), n_out=st.integers(1, 16), dtype=dtypes,
       regime=regimes, seed=seeds, act=st.sampled_from(ACTS),
       loss=st.sampled_from([K.LOSS_SPARSE_CE, K.LOSS_CE, K.LOSS_BCE, K.LOSS_MSE]))
def test_network_predict_and_evaluate_equal_reference(n, n_in, hidden, n_out, dtype, regime,
                                                      seed, act, loss):
    metric = LOSS_METRIC[loss]
    ops = [(K.OP_DENSE, hidden, K.ACTIVATIONS[act], 0.0, 0, n_in * hidden),
           (K.OP_DENSE, n_out, FUSED_OUTPUT[loss], 0.0, n_in * hidden + hidden, -1)]
    rng = np.random.default_rng(seed)
    params = (rng.normal(size=n_in * hidden + hidden + hidden * n_out) /
              np.sqrt(n_in)).astype(dtype)
    x = values(seed + 1, (n, n_in), dtype, regime)
    y = loss_targets(rng, loss, n, n_out, dtype)
    fused = loss != K.LOSS_MSE
    capacity = int(rng.integers(1, 65))
    nets = [engine.Network(n_in, ops, params.copy(), loss, metric, fused, capacity)
            for engine in (K, R)]
    preds = []
    for net in nets:
        out = np.full((n, n_out), np.nan, dtype)
        net.predict(x, out)
        preds.append(out)
    scale = magnitude(x) * n_in * float(np.max(np.abs(params))) ** 2 * hidden
    assert_close(preds[0], preds[1], dtype, scale=scale)
    (loss_k, correct_k), (loss_r, correct_r) = (net.evaluate(x, y) for net in nets)
    if regime in ("normal", "zero", "tiny", "subnormal"):  # no near-ties in the argmax
        np.testing.assert_allclose(loss_k, loss_r, rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype] * n * scale)
        if regime == "normal":
            assert abs(correct_k - correct_r) <= 0.01 * n + (1 if dtype == np.float32 else 0)
