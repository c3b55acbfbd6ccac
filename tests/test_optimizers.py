"""The optimizer updates against Keras 3: its formulas (reference section 1.4, written out here in
NumPy independently of ``fastdnn.reference``), its single-step test table (1.6) and its five-step
golden trajectories (1.7); then the kernels against the reference on large buffers, serial and
with the OpenMP path engaged.
"""

import numpy as np
import pytest

from _helpers import DTYPES, assert_close
from fastdnn import _kernels as kernels
from fastdnn import reference

DTYPE_IDS = ["float32", "float64"]

# (kind, hyper-parameters) for the public update functions; the ids name the variant
CASES = {
    "sgd": ("sgd", {"learning_rate": 0.1}),
    "sgd_nesterov_no_momentum": ("sgd", {"learning_rate": 0.1, "nesterov": True}),
    "sgd_momentum": ("sgd", {"learning_rate": 0.05, "momentum": 0.9}),
    "sgd_nesterov": ("sgd", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    "sgd_momentum_half": ("sgd", {"learning_rate": 0.3, "momentum": 0.5, "nesterov": True}),
    "adagrad": ("adagrad", {}),
    "adagrad_custom": ("adagrad", {"learning_rate": 0.2, "epsilon": 1e-6}),
    "rmsprop": ("rmsprop", {}),
    "rmsprop_custom": ("rmsprop", {"learning_rate": 0.01, "rho": 0.8, "epsilon": 1e-5}),
    "rmsprop_momentum": ("rmsprop", {"learning_rate": 0.01, "momentum": 0.9}),
    "rmsprop_centered": ("rmsprop", {"learning_rate": 0.01, "centered": True}),
    "rmsprop_centered_momentum": ("rmsprop", {"learning_rate": 0.02, "rho": 0.95,
                                              "momentum": 0.5, "centered": True}),
    "adam": ("adam", {}),
    "adam_custom": ("adam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99,
                             "epsilon": 1e-5}),
    "adam_amsgrad": ("adam", {"learning_rate": 0.01, "amsgrad": True}),
}

DEFAULTS = {
    "sgd": {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
    "adagrad": {"learning_rate": 0.001, "epsilon": 1e-7},
    "rmsprop": {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0, "epsilon": 1e-7,
                "centered": False},
    "adam": {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
             "amsgrad": False},
}


def new_slots(kind, hyper, size, dtype, accumulator=0.1):
    """The slot buffers the public update of ``kind`` takes, by keyword, Keras-initialised."""
    h = {**DEFAULTS[kind], **hyper}
    zeros = lambda: np.zeros(size, dtype)  # noqa: E731
    if kind == "sgd":
        return {"velocity": zeros()} if h["momentum"] > 0 else {}
    if kind == "adagrad":
        return {"accumulator": np.full(size, accumulator, dtype)}
    if kind == "rmsprop":
        slots = {"velocity": zeros()}
        if h["momentum"] > 0:
            slots["momentum_buffer"] = zeros()
        if h["centered"]:
            slots["average_gradient"] = zeros()
        return slots
    slots = {"m": zeros(), "v": zeros()}
    if h["amsgrad"]:
        slots["v_hat"] = zeros()
    return slots


def apply_update(engine, kind, hyper, params, grads, slots, iteration):
    """One call of the engine's public update for ``kind``."""
    if kind == "sgd":
        engine.sgd_update(params, grads, **hyper, **slots)
    elif kind == "adagrad":
        engine.adagrad_update(params, grads, slots["accumulator"], **hyper)
    elif kind == "rmsprop":
        engine.rmsprop_update(params, grads, **slots, **hyper)
    else:
        engine.adam_update(params, grads, slots["m"], slots["v"], iteration, **hyper,
                           v_hat=slots.get("v_hat"))


# --- Keras 3's rules (reference section 1.4), in the weight precision, as Keras computes them


def keras_step(kind, hyper, w, g, state, t):
    """Return w after one step number ``t`` (1-based) of Keras' rule; update ``state`` (a dict)."""
    f = w.dtype.type
    h = {**DEFAULTS[kind], **hyper}
    lr, eps = f(h["learning_rate"]), f(h.get("epsilon", 0.0))
    if kind == "sgd":
        momentum = f(h["momentum"])
        if h["momentum"] == 0:
            return w - lr * g
        state["velocity"] = momentum * state["velocity"] - lr * g
        if h["nesterov"]:
            return w + momentum * state["velocity"] - lr * g
        return w + state["velocity"]
    if kind == "adagrad":
        state["accumulator"] = state["accumulator"] + g * g
        return w - lr * g / np.sqrt(state["accumulator"] + eps)
    if kind == "rmsprop":
        rho = f(h["rho"])
        state["velocity"] = rho * state["velocity"] + f(1 - h["rho"]) * g * g
        if h["centered"]:
            state["average_gradient"] = (rho * state["average_gradient"]
                                         + f(1 - h["rho"]) * g)
            d = state["velocity"] - state["average_gradient"] ** 2 + eps
        else:
            d = state["velocity"] + eps
        u = lr * g / np.sqrt(d)
        if h["momentum"] > 0:
            state["momentum_buffer"] = f(h["momentum"]) * state["momentum_buffer"] + u
            return w - state["momentum_buffer"]
        return w - u
    beta_1, beta_2, tt = f(h["beta_1"]), f(h["beta_2"]), f(t)
    a = lr * np.sqrt(f(1) - beta_2 ** tt) / (f(1) - beta_1 ** tt)
    state["m"] = state["m"] + f(1 - h["beta_1"]) * (g - state["m"])
    state["v"] = state["v"] + f(1 - h["beta_2"]) * (g * g - state["v"])
    v = state["v"]
    if h["amsgrad"]:
        state["v_hat"] = np.maximum(state["v_hat"], state["v"])
        v = state["v_hat"]
    return w - a * state["m"] / (np.sqrt(v) + eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(CASES))
def test_update_follows_keras_formulas_over_several_steps(engine, case, dtype, rng):
    kind, hyper = CASES[case]
    size = 50
    params = rng.normal(size=size).astype(dtype)
    slots = new_slots(kind, hyper, size, dtype)
    expected = params.copy()
    state = {name: slot.copy() for name, slot in slots.items()}
    for step in range(6):
        grads = rng.normal(0, 1 + step, size).astype(dtype)
        grads_before = grads.copy()
        expected = keras_step(kind, hyper, expected, grads, state, t=step + 1)
        apply_update(engine, kind, hyper, params, grads, slots, iteration=step)
        np.testing.assert_array_equal(grads, grads_before)  # grads are only read
        assert_close(params, expected, dtype, scale=np.abs(expected).max())
        for name in slots:
            assert_close(slots[name], state[name], dtype, scale=np.abs(state[name]).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("iteration", [0, 1, 9, 1000])
def test_adam_iteration_is_the_number_of_steps_already_taken(engine, iteration, dtype, rng):
    params = rng.normal(size=20).astype(dtype)
    grads = rng.normal(size=20).astype(dtype)
    m = rng.normal(0, 0.1, 20).astype(dtype)
    v = rng.uniform(0, 0.1, 20).astype(dtype)
    fresh = lambda: {"m": m.copy(), "v": v.copy()}  # noqa: E731
    expected = keras_step("adam", {}, params, grads, fresh(), t=iteration + 1)
    off_by_one = keras_step("adam", {}, params, grads, fresh(), t=iteration + 2)
    assert not np.allclose(off_by_one, expected, rtol=1e-7, atol=0)  # the test can tell them apart
    engine.adam_update(params, grads, m, v, iteration)
    assert_close(params, expected, dtype, scale=np.abs(params).max())


# --- Keras' single-step test (reference 1.6): w0 = [1, 2, 3, 4], g = [1, 6, 7, 2], lr 0.5, float32

SINGLE_STEP = {
    # name: (kind, hyper, Keras test column or None, exact step 1, exact step 2)
    "sgd": ("sgd", {}, [0.5, -1.0, -0.5, 3.0], [0.5, -1.0, -0.5, 3.0], [0.0, -4.0, -4.0, 2.0]),
    "sgd_momentum": ("sgd", {"momentum": 0.9}, None, [0.5, -1.0, -0.5, 3.0],
                     [-0.45, -6.7, -7.15, 1.1]),
    "sgd_nesterov": ("sgd", {"momentum": 0.9, "nesterov": True}, None, [0.05, -3.7, -3.65, 2.1],
                     [-1.305, -11.83, -13.135, -0.61]),
    "adam": ("adam", {}, [0.5, 1.5, 2.5, 3.5], [0.5000049, 1.5000036, 2.5000036, 3.500004],
             [0.0000111, 1.0000087, 2.0000088, 3.0000095]),
    "rmsprop": ("rmsprop", {}, [-0.5811, 0.4189, 1.4189, 2.4189],
                [-0.5811381, 0.4188612, 1.4188613, 2.4188614],
                [-1.7282165, -0.7282176, 0.2717826, 1.2717828]),
    "rmsprop_centered": ("rmsprop", {"centered": True}, None,
                         [-0.6666658, 0.3333334, 1.3333335, 2.3333335],
                         [-1.9411973, -0.9411985, 0.0588015, 1.0588018]),
    "rmsprop_momentum": ("rmsprop", {"momentum": 0.9}, None,
                         [-0.5811381, 0.4188612, 1.4188613, 2.4188614],
                         [-3.1512408, -2.1512425, -1.1512421, -0.151242]),
    "adagrad": ("adagrad", {}, [0.5233, 1.5007, 2.5005, 3.5061],
                [0.5232687, 1.500693, 2.5005095, 3.5061352],
                [0.1782359, 1.1473849, 2.1471362, 3.154771]),
}


@pytest.mark.parametrize("name", list(SINGLE_STEP))
def test_update_matches_keras_single_step_table(engine, name):
    kind, hyper, keras_test, step_1, step_2 = SINGLE_STEP[name]
    hyper = {**hyper, "learning_rate": 0.5}
    params = np.array([1, 2, 3, 4], np.float32)
    grads = np.array([1, 6, 7, 2], np.float32)
    slots = new_slots(kind, hyper, 4, np.float32)
    apply_update(engine, kind, hyper, params, grads, slots, iteration=0)
    assert params.dtype == np.float32
    if keras_test is not None:
        np.testing.assert_allclose(params, keras_test, rtol=1e-4, atol=1e-4)
    # the exact columns are printed to 7 decimals: 1e-6 relative plus that rounding
    np.testing.assert_allclose(params, step_1, rtol=1e-6, atol=1e-7)
    apply_update(engine, kind, hyper, params, grads, slots, iteration=1)
    np.testing.assert_allclose(params, step_2, rtol=1e-6, atol=1e-7)


# --- Keras' five-step golden trajectories (reference 1.7): x = ones(10), g = 0.01 then 0.1..1.0

GOLDEN_EXACT = {
    "adam": [
        [0.999000] * 10,
        [0.998193, 0.998224, 0.998234, 0.998240, 0.998243, 0.998245, 0.998247, 0.998248,
         0.998249, 0.998250],
        [0.997300, 0.997347, 0.997364, 0.997372, 0.997377, 0.997381, 0.997383, 0.997385,
         0.997386, 0.997387],
        [0.996368, 0.996426, 0.996446, 0.996457, 0.996463, 0.996467, 0.996470, 0.996472,
         0.996474, 0.996475],
        [0.995413, 0.995479, 0.995502, 0.995513, 0.995521, 0.995525, 0.995529, 0.995531,
         0.995533, 0.995535],
    ],
    "rmsprop_centered": [
        [0.996685] * 10,
        [0.993334, 0.993339, 0.993342, 0.993344, 0.993346, 0.993347, 0.993347, 0.993348,
         0.993348, 0.993349],
        [0.990765, 0.990778, 0.990785, 0.990789, 0.990792, 0.990793, 0.990795, 0.990796,
         0.990796, 0.990797],
        [0.988496, 0.988518, 0.988528, 0.988534, 0.988537, 0.988540, 0.988542, 0.988543,
         0.988544, 0.988545],
        [0.986373, 0.986403, 0.986416, 0.986424, 0.986428, 0.986431, 0.986434, 0.986435,
         0.986437, 0.986438],
    ],
    "adagrad": [
        [0.996349] * 10,
        [0.960434, 0.927760, 0.900285, 0.878409, 0.861522, 0.848651, 0.838847, 0.831331,
         0.825508, 0.820944],
        [0.925084, 0.862880, 0.813691, 0.776817, 0.749725, 0.729839, 0.715108, 0.704045,
         0.695608, 0.689071],
        [0.890274, 0.801166, 0.734226, 0.686240, 0.652140, 0.627692, 0.609881, 0.596663,
         0.586669, 0.578977],
        [0.855979, 0.742196, 0.660377, 0.603731, 0.564438, 0.536723, 0.516756, 0.502055,
         0.491002, 0.482529],
    ],
}
GOLDEN_G = np.arange(1, 11, dtype=np.float32) / np.float32(10)
GOLDEN_EXACT["sgd_nesterov"] = [0.9999 - 0.01 * k * GOLDEN_G for k in range(5)]
GOLDEN_EXACT["adam_amsgrad"] = GOLDEN_EXACT["adam"]  # v never decreases here
GOLDEN_KERAS = {  # the rows Keras' own tests expect (rtol = atol = 5e-4)
    "sgd_nesterov": GOLDEN_EXACT["sgd_nesterov"],
    "adam_amsgrad": [[v] * 10 for v in (0.999, 0.9982, 0.9974, 0.9965, 0.9955)],
    "adam": [[v] * 10 for v in (0.999, 0.9982, 0.9974, 0.9965, 0.9955)],
    "rmsprop_centered": [[v] * 10 for v in (0.9967, 0.9933, 0.9908, 0.9885, 0.9864)],
    "adagrad": np.round(GOLDEN_EXACT["adagrad"], 4),
}
GOLDEN_SETUP = {  # name: (kind, hyper, initial accumulator)
    "sgd_nesterov": ("sgd", {"nesterov": True}, None),
    "adam": ("adam", {}, None),
    "adam_amsgrad": ("adam", {"amsgrad": True}, None),
    "rmsprop_centered": ("rmsprop", {"centered": True}, None),
    "adagrad": ("adagrad", {"learning_rate": 0.2, "epsilon": 1e-6}, 0.3),
}


def golden_trajectory(engine, name):
    kind, hyper, accumulator = GOLDEN_SETUP[name]
    x = np.ones(10, np.float32)
    slots = new_slots(kind, hyper, 10, np.float32, accumulator)
    rows = []
    for step in range(5):
        g = np.full(10, 0.01, np.float32) if step == 0 else GOLDEN_G
        apply_update(engine, kind, hyper, x, g, slots, iteration=step)
        rows.append(x.copy())
    return np.array(rows)


@pytest.mark.parametrize("name", list(GOLDEN_SETUP))
def test_update_matches_keras_golden_trajectory(engine, name):
    rows = golden_trajectory(engine, name)
    np.testing.assert_allclose(rows, GOLDEN_KERAS[name], rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("name", list(GOLDEN_SETUP))
def test_update_matches_exact_float32_golden_trajectory(engine, name):
    rows = golden_trajectory(engine, name)
    # the tables are printed to 6 decimals
    np.testing.assert_allclose(rows, GOLDEN_EXACT[name], rtol=0, atol=1e-6)


# --- kernels against the reference on 80K-element buffers, serial and parallel

BIG = 80_000  # the chapter model's size: two threads share it (from 2 x 2**15 elements)


def run_big(engine, kind, hyper, dtype, seed):
    rng = np.random.default_rng(seed)
    params = rng.normal(size=BIG).astype(dtype)
    slots = new_slots(kind, hyper, BIG, dtype)
    for step in range(5):
        grads = rng.normal(0, 1 + step, BIG).astype(dtype)
        apply_update(engine, kind, hyper, params, grads, slots, iteration=step)
    return params, slots


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", list(CASES))
def test_kernel_update_matches_reference_on_large_buffers(case, dtype, kernel_threads):
    kind, hyper = CASES[case]
    expected, expected_slots = run_big(reference, kind, hyper, dtype, seed=3)
    kernel_threads(1)
    serial, serial_slots = run_big(kernels, kind, hyper, dtype, seed=3)
    kernel_threads(2)
    parallel, parallel_slots = run_big(kernels, kind, hyper, dtype, seed=3)
    assert_close(serial, expected, dtype, scale=np.abs(expected).max())
    for name in expected_slots:
        assert_close(serial_slots[name], expected_slots[name], dtype,
                     scale=np.abs(expected_slots[name]).max())
    # an element-wise update does not depend on how the buffer is split between threads
    np.testing.assert_array_equal(parallel, serial)
    for name in serial_slots:
        np.testing.assert_array_equal(parallel_slots[name], serial_slots[name])


def at_offset(values, offset):
    """A copy of ``values`` that starts ``offset`` elements past a 64-byte boundary."""
    per_line = 64 // values.itemsize
    buf = np.empty(values.size + 2 * per_line, values.dtype)
    start = (-buf.ctypes.data // values.itemsize) % per_line + offset
    out = buf[start:start + values.size]
    out[...] = values
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("case", ["sgd", "sgd_nesterov", "adagrad", "rmsprop_centered_momentum",
                                  "adam", "adam_amsgrad"])
def test_update_does_not_depend_on_where_the_buffers_start(case, dtype):
    """The first elements before a cache-line boundary take a step of their own
    (``_update_range``): every start within a line, and sizes around one line, give the same
    numbers, bit for bit."""
    kind, hyper = CASES[case]
    rng = np.random.default_rng(11)
    per_line = 64 // np.dtype(dtype).itemsize
    for size in (1, per_line - 1, per_line + 1, 3 * per_line + 5, 1000):
        params, grads = rng.normal(size=size).astype(dtype), rng.normal(size=size).astype(dtype)
        slots = new_slots(kind, hyper, size, dtype)
        want = [params.copy(), {k: v.copy() for k, v in slots.items()}]
        apply_update(kernels, kind, hyper, want[0], grads, want[1], iteration=3)
        for offset in range(per_line):
            got = [at_offset(params, offset), {k: at_offset(v, offset) for k, v in slots.items()}]
            apply_update(kernels, kind, hyper, got[0], at_offset(grads, offset), got[1],
                         iteration=3)
            np.testing.assert_array_equal(got[0], want[0])
            for name in slots:
                np.testing.assert_array_equal(got[1][name], want[1][name])


# 3 threads' shares of 8 pieces each, and of one piece each (a piece holds at least 2**15
# weights), both with a ragged end
@pytest.mark.parametrize("size", [2 * 2**22 + 5, 2**17 + 3])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_parallel_adam_update_is_bit_identical_to_serial(dtype, size, kernel_threads):
    # 3 threads on this 2-core machine: a thread that is not running has its pieces taken by the
    # others (see _kernels._update); every piece must be updated exactly once
    rng = np.random.default_rng(5)
    start = rng.normal(size=size).astype(dtype)
    grads = rng.normal(size=size).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        kernel_threads(threads)
        params, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
        for step in range(2):
            kernels.adam_update(params, grads, m, v, step)
        results.append((params, m, v))
    for parallel in results[1:]:
        for got, want in zip(parallel, results[0]):
            np.testing.assert_array_equal(got, want)


def test_float32_adam_step_is_within_a_few_ulp_of_the_exact_quotient():
    # float32 Adam divides by a refined reciprocal estimate in the AVX2 and AVX-512 variants
    # (fastdnn/simd/adam.h): its step must stay within the rounding of the exact one, over magnitudes from
    # tiny second moments (1e-12) to large gradients, and over a ragged end (1,003 weights)
    rng = np.random.default_rng(11)
    size = 1_003
    w = rng.normal(size=size).astype(np.float32)
    g = (rng.normal(size=size) * 10.0 ** rng.uniform(-6, 3, size)).astype(np.float32)
    m = (rng.normal(size=size) * 10.0 ** rng.uniform(-6, 2, size)).astype(np.float32)
    v = (10.0 ** rng.uniform(-12, 4, size)).astype(np.float32)
    before = w.copy()
    kernels.adam_update(w, g, m, v, 3, learning_rate=0.01)
    # m and v now hold the moments the step divided, so the exact step is computed from them
    alpha = np.float32(0.01) * np.sqrt(np.float32(1) - np.float32(0.999) ** np.float32(4)) / (
        np.float32(1) - np.float32(0.9) ** np.float32(4))
    step = (m.astype(np.float64) * np.float64(np.float32(alpha))) / (
        np.sqrt(v.astype(np.float64)) + np.float64(np.float32(1e-7)))
    exact = before.astype(np.float64) - step
    # the exact step rounded at each of its float32 operations: about 2 ulp, plus the reciprocal
    # (1.5 ulp); then the subtraction's half ulp of the result
    allowed = 4 * 2.0 ** -23 * np.abs(step) + 0.5 * np.spacing(np.abs(w))
    assert np.all(np.abs(w - exact) <= allowed)


@pytest.mark.parametrize("epsilon", [0.0, 1e-7], ids=["eps0", "eps1e-7"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_adam_special_values_follow_the_exact_quotient(dtype, epsilon):
    # epsilon 0: sqrt(v) + eps is 0 where v is 0 (an infinite step, or NaN for 0/0); an
    # overflowing gradient makes v infinite (a zero step); a NaN gradient or second moment a NaN
    # weight; the elements sit in the vector body and in the tail
    huge = np.finfo(dtype).max / 4
    g = np.array([1.0, 0.0, huge, -1.0, 2.0, 0.0, huge, np.nan, 3.0, -huge, 0.0], dtype)
    m = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0], dtype)
    v = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, np.nan, 0.0, 0.0], dtype)
    results = []
    for update in (kernels.adam_update, reference.adam_update):
        w, mk, vk = np.ones_like(g), m.copy(), v.copy()
        with np.errstate(all="ignore"):
            update(w, g, mk, vk, 0, epsilon=epsilon)
        results.append(w)
    kernel, expected = results
    assert not np.isfinite(expected).all()  # the case is the one meant
    np.testing.assert_array_equal(np.isnan(kernel), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(kernel), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_close(kernel[finite], expected[finite], dtype)
    np.testing.assert_array_equal(np.sign(kernel[~np.isnan(kernel)]),
                                  np.sign(expected[~np.isnan(expected)]))


def test_set_num_threads_rejects_zero():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        kernels.set_num_threads(0)
