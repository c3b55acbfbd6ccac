"""API fuzzing: random wrong inputs to every public entry point, in a subprocess.

The fuzzer itself is the ``tests/fuzz`` package (hypothesis, fixed seed, bounded examples). Each
target runs in its own ``sys.executable`` subprocess with a timeout, so a segfault or an abort is
a failing test with the offending input on its stderr, not a dead test runner, and a hang is a
timeout. The worker exits 0 only when every example either worked correctly (after the
documented conversion) or raised ValueError/TypeError (NotImplementedError for documented
unsupported Keras options) without changing the model.

Bugs the fuzzer found are reproduced below, each by a minimal deterministic test marked
``xfail(strict=True)`` while open: the test states the behaviour fastdnn should have. The worker counts
their occurrences (``known:<tag>`` outcomes) instead of failing, so it keeps guarding everything
else; when a bug is fixed its xfail test starts to pass (strict: the run fails) and both the mark
and the tag in ``tests/fuzz/common.py``'s ``KNOWN_BUGS`` should go.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels as K

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20240601
# Examples per target: ~2-4 s each on one core. FASTDNN_FUZZ_EXAMPLES raises it for a long run.
EXAMPLES = int(os.environ.get("FASTDNN_FUZZ_EXAMPLES", "300"))
TIMEOUT = 300


def run_worker(target, examples=EXAMPLES, seed=SEED):
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        proc = subprocess.run([sys.executable, "-m", "tests.fuzz", target, "--seed", str(seed),
                               "--examples", str(examples)], capture_output=True, text=True,
                              timeout=TIMEOUT, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-3000:]
        pytest.fail(f"fuzz target {target} hung (>{TIMEOUT} s); last stderr:\n{tail!r}")
    return proc


def last_cases(stderr, n=5):
    cases = [line for line in stderr.splitlines() if line.startswith("CASE ")]
    return "\n".join(cases[-n:])


# The reliability targets (re-initialised networks, hostile hyper-parameters, callbacks that
# change the model during fit, interrupts at random points) run fewer, slower examples.
TARGET_EXAMPLES = {"kernels": EXAMPLES, "network": EXAMPLES, "model": EXAMPLES,
                   "constructors": EXAMPLES, "reentry": EXAMPLES // 3, "hyper": EXAMPLES // 3,
                   "callbacks": EXAMPLES // 3, "signals": EXAMPLES // 3}


@pytest.mark.parametrize("target", sorted(TARGET_EXAMPLES))
def test_fuzzing_the_public_api_never_crashes_and_keeps_the_contract(target):
    examples = TARGET_EXAMPLES[target]
    proc = run_worker(target, examples)
    if proc.returncode < 0:
        pytest.fail(f"fuzz target {target} CRASHED with signal {-proc.returncode}; last inputs:\n"
                    f"{last_cases(proc.stderr)}\nstderr tail:\n{proc.stderr[-3000:]}")
    summary_lines = [line for line in proc.stdout.splitlines() if line.startswith("FUZZ-SUMMARY ")]
    assert summary_lines, f"no summary; stdout tail: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(summary_lines[-1][len("FUZZ-SUMMARY "):])
    non_case = "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("CASE "))
    assert proc.returncode == 0, f"contract violated:\n{non_case[-5000:]}\n{summary}"
    assert summary["status"] == 0
    # It really ran the bounded number of examples (hypothesis may run a few more).
    assert summary["examples"] >= examples, summary
    outcomes = summary["outcomes"]
    # Every counted example reached an outcome (hypothesis also starts a few it abandons).
    assert sum(outcomes.values()) >= examples, summary
    # Both paths were exercised: inputs that work and inputs that are refused.
    worked = sum(v for k, v in outcomes.items() if k.startswith(("worked", "accepted")))
    refused = sum(v for k, v in outcomes.items() if k.startswith("refused"))
    assert worked >= examples // 10 and refused >= examples // 10, summary
    print(f"\nfuzz {target}: {summary['examples']} examples: {outcomes}")


# --- minimal reproductions of what the fuzzer found (strict xfail: the behaviour we want)

def run_script(body, timeout=60):
    script = "import numpy as np\nfrom fastdnn import _kernels as K\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=timeout)


NETWORK_MISMATCH = """
    ops = [(K.OP_DENSE, 3, K.{act}, 0.0, 0, 15)]
    try:
        net = K.Network(5, ops, np.zeros(18), K.{loss}, K.{metric}, {fused}, 4)
        x = np.ones((4, 5))
        y = {y}
        net.evaluate(x, y)
        net.train(x, y, None, 4, 0, 1, {{"kind": "sgd"}}, np.zeros((0, 18)), 0, np.zeros(1),
                  np.zeros(1))
    except (TypeError, ValueError) as exc:
        print("refused:", exc)
    else:
        print("accepted")
"""


@pytest.mark.parametrize("loss, metric, act, fused, y", [
    ("LOSS_MSE", "METRIC_SPARSE_ACC", "LINEAR", False, "np.ones((4, 3))"),
    ("LOSS_SPARSE_CE", "METRIC_CATEGORICAL_ACC", "SOFTMAX", True, "np.zeros(4, np.int32)"),
    ("LOSS_SPARSE_CE", "METRIC_BINARY_ACC", "SOFTMAX", True, "np.zeros(4, np.int32)"),
], ids=["mse+sparse_acc", "sparse_ce+categorical_acc", "sparse_ce+binary_acc"])
def test_network_with_a_metric_its_loss_cannot_feed_is_refused_not_a_segfault(loss, metric, act,
                                                                             fused, y):
    proc = run_script(NETWORK_MISMATCH.format(loss=loss, metric=metric, act=act, fused=fused,
                                              y=y))
    assert proc.returncode == 0, f"crashed with {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.startswith("refused:"), proc.stdout


FAILED_RESERVE = {
    "model_predict": """
        import fastdnn as keras
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, "relu"),
                                  keras.layers.Dense(3, "softmax")])
        x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
        before = model.predict(x, verbose=0)
        try:
            model.predict(x, batch_size=BATCH, verbose=0)
        except (MemoryError, ValueError, TypeError, OverflowError) as exc:
            print("refused:", type(exc).__name__)
        after = model.predict(x, verbose=0)
        print("same" if np.array_equal(after, before) else "different")
    """,
    "model_fit": """
        import fastdnn as keras
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, "relu"),
                                  keras.layers.Dense(3, "softmax")])
        model.compile("sgd", "sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 3, 40)
        model.fit(x, y, verbose=0)
        try:
            model.fit(x, y, batch_size=BATCH, verbose=0)
        except (MemoryError, ValueError, TypeError, OverflowError) as exc:
            print("refused:", type(exc).__name__)
        model.fit(x, y, verbose=0)
        print("same")
    """,
    "network_reserve": """
        ops = [(K.OP_DENSE, 8, K.RELU, 0.0, 0, 48), (K.OP_DENSE, 3, K.LINEAR, 0.0, 56, 80)]
        net = K.Network(6, ops, np.zeros(83), K.LOSS_MSE, K.METRIC_NONE, False, 4)
        x = np.ones((40, 6))
        out = np.empty((40, 3))
        try:
            net.reserve(BATCH)
        except (MemoryError, ValueError, TypeError, OverflowError) as exc:
            print("refused:", type(exc).__name__)
        net.predict(x, out)
        print("same" if np.array_equal(out, np.zeros((40, 3))) else "different")
    """,
}


@pytest.mark.parametrize("case, batch", [("model_predict", "2**40"), ("model_fit", "2**40"),
                                         ("network_reserve", "2**40"),
                                         ("model_predict", "2**62")])
def test_a_failed_workspace_allocation_leaves_the_model_usable(case, batch):
    proc = run_script(FAILED_RESERVE[case].replace("BATCH", batch))
    assert proc.returncode == 0, f"crashed with {proc.returncode}: {proc.stderr[-800:]}"
    assert proc.stdout.strip().endswith("same"), proc.stdout


def small_model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(10, 4)).astype(np.float32), rng.integers(0, 3, 10)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_a_batch_size_larger_than_the_data_works_like_one_batch(method):
    model, x, y = small_model()
    before = model.get_weights()
    args = (x,) if method == "predict" else (x, y)
    try:
        result = getattr(model, method)(*args, batch_size=2**40, verbose=0)
    except ValueError as exc:  # acceptable only if it says what is wrong
        assert "batch_size" in str(exc), str(exc)
        return
    if method == "predict":
        model.set_weights(before)
        np.testing.assert_allclose(result, model.predict(x, batch_size=10, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("argument", ["loss", "metric"])
def test_network_refuses_an_out_of_range_loss_or_metric_code_with_value_error(argument):
    args = dict(loss=K.LOSS_MSE, metric=K.METRIC_NONE)
    args[argument] = 2**40
    with pytest.raises(ValueError, match=argument):
        K.Network(3, [(K.OP_DENSE, 3, K.LINEAR, 0.0, 0, -1)], np.zeros(9), args["loss"],
                  args["metric"], False, 4)


def _alias_dense_forward():
    rng = np.random.default_rng(1)
    x, w, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=4)
    expected = x @ w + b
    out = x.copy()
    K.dense_forward(out, w, b, out)  # out is x
    return out, expected


def _alias_dense_backward_dw_is_w():
    rng = np.random.default_rng(2)
    x, w, g = rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    expected = g @ w.T
    ww, dx = w.copy(), np.empty((4, 4))
    K.dense_backward(x, ww, x @ w, g.copy(), ww, None, dx)  # dw is w: dx must use the old w
    return dx, expected


def _alias_sparse_grad_is_logits():
    rng = np.random.default_rng(3)
    z, labels = rng.normal(size=(4, 3)), np.array([0, 1, 2, 1], np.int32)
    expected = K.sparse_softmax_cross_entropy(z, labels)
    zz = z.copy()
    return K.sparse_softmax_cross_entropy(zz, labels, zz), expected


def _alias_ce_grad_is_targets():
    rng = np.random.default_rng(4)
    z, t = rng.normal(size=(4, 3)), np.eye(3)[[0, 1, 2, 1]]
    expected = K.softmax_cross_entropy(z, t)
    tt = t.copy()
    return K.softmax_cross_entropy(z, tt, tt), expected


@pytest.mark.parametrize("case", [_alias_dense_forward, _alias_dense_backward_dw_is_w,
                                  _alias_sparse_grad_is_logits, _alias_ce_grad_is_targets],
                         ids=["dense_forward_out_is_x", "dense_backward_dw_is_w",
                              "sparse_ce_grad_is_logits", "ce_grad_is_targets"])
def test_an_output_that_aliases_an_input_is_refused_or_computed_right(case):
    """Found by the fuzzer (the outputs silently held wrong values)."""
    try:
        got, expected = case()
    except ValueError:
        return
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_a_callbacks_list_with_a_non_callback_raises_type_error(method):
    """Found by the fuzzer (was an AttributeError from CallbackList)."""
    model, x, y = small_model()
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(TypeError, match="callbacks"):
        getattr(model, method)(*args, callbacks=[None], verbose=0)


def test_a_layer_too_large_for_the_kernels_is_refused_with_value_error():
    """Found by the fuzzer (was a MemoryError, or many GB allocated before the kernels refused)."""
    with pytest.raises(ValueError):
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(2**40)])


def test_a_refused_first_fit_does_not_build_the_model():
    """A failing call changes nothing, not even the input shape of an unbuilt model."""
    model = keras.Sequential([keras.layers.Dense(4, "relu"), keras.layers.Dense(3, "softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        model.fit(rng.normal(size=(8, 5)), np.full(8, np.nan), verbose=0)
    assert not model.built
    model.fit(rng.normal(size=(8, 7)), rng.integers(0, 3, 8), verbose=0)


# --- documented conversions the fuzzer relies on, checked directly

@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed", "list", "float64", "uint8",
                                    "int64", "bool", "readonly"])
def test_array_likes_are_converted_once_and_predict_and_fit_alike(layout):
    """Section 14.5: any numeric array-like works and gives what its C float32 copy gives."""
    model, x, y = small_model()
    base = (np.abs(x) * 10).astype(np.uint8).astype(np.float32) if layout == "uint8" else x
    variants = {
        "fortran": lambda a: np.asfortranarray(a),
        "strided": lambda a: np.repeat(a, 2, axis=0)[::2],
        "reversed": lambda a: a[::-1].copy()[::-1],
        "list": lambda a: a.tolist(),
        "float64": lambda a: a.astype(np.float64),
        "uint8": lambda a: a.astype(np.uint8),
        "int64": lambda a: np.round(a).astype(np.int64),
        "bool": lambda a: a > 0,
        "readonly": lambda a: np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape),
    }
    xv = variants[layout](base)
    canonical = np.ascontiguousarray(np.asarray(xv), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(xv, verbose=0),
                                  model.predict(canonical, verbose=0))
    runs = []
    for data in (xv, canonical):
        fresh, _, _ = small_model()
        fresh.set_weights(model.get_weights())
        keras.utils.set_random_seed(1)
        labels = y.tolist() if layout == "list" and data is xv else y
        history = fresh.fit(data, labels, epochs=2, batch_size=4, verbose=0).history
        runs.append((history, fresh.get_weights()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("call", ["activation_forward", "dense_forward"])
def test_zero_column_arrays_are_refused_like_in_the_loss_kernels(call):
    with pytest.raises(ValueError, match="no columns"):
        if call == "activation_forward":
            K.activation_forward(np.empty((3, 0)), np.empty((3, 0)), "softmax")
        else:
            K.dense_forward(np.ones((3, 2)), np.empty((2, 0)), None, np.empty((3, 0)), "softmax")
