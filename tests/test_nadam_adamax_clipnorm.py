"""Nadam, Adamax, clipnorm and global_clipnorm against Keras 3.

Keras' rules are written out here in NumPy, independently of ``fastdnn.reference``
(keras/src/optimizers/nadam.py, adamax.py; base_optimizer.py's ``_clip_by_norm`` and
``clip_by_global_norm``), and Keras' own unit-test values (nadam_test.py, adamax_test.py) are
the golden tables. The kernels' training loop against the reference for these optimizers is in
``test_network.py``'s table.
"""

import copy
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

import fastdnn as keras
from _helpers import DTYPES, build_ops, init_params, network_data
from fastdnn import _kernels as kernels
from fastdnn import reference

DTYPE_IDS = ["float32", "float64"]


def keras_nadam(w, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """w after Keras 3's Nadam steps with each gradient of ``grads`` in turn (w's precision)."""
    f = w.dtype.type
    m, v, product = np.zeros_like(w), np.zeros_like(w), f(1)
    for t, g in enumerate(grads, start=1):
        product = product * f(beta_1) * (f(1) - f(0.5) * f(0.96) ** f(t))
        u_t = f(beta_1) * (f(1) - f(0.5) * f(0.96) ** f(t))
        u_next = f(beta_1) * (f(1) - f(0.5) * f(0.96) ** f(t + 1))
        m = m + (g - m) * (f(1) - f(beta_1))
        v = v + (g * g - v) * (f(1) - f(beta_2))
        m_hat = u_next * m / (f(1) - product * u_next) + (f(1) - u_t) * g / (f(1) - product)
        v_hat = v / (f(1) - f(beta_2) ** f(t))
        w = w - m_hat * f(learning_rate) / (np.sqrt(v_hat) + f(epsilon))
    return w


def keras_adamax(w, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """w after Keras 3's Adamax steps with each gradient of ``grads`` in turn."""
    f = w.dtype.type
    m, u = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = m + (g - m) * f(1 - beta_1)
        u = np.maximum(f(beta_2) * u, np.abs(g))
        w = w - f(learning_rate) * m / ((f(1) - f(beta_1) ** f(t)) * (u + f(epsilon)))
    return w


KERAS_RULES = {"nadam": keras_nadam, "adamax": keras_adamax}


def run_updates(engine, kind, w, grads, **hyper):
    """w after the engine's public update of ``kind`` with each gradient in turn."""
    w = w.copy()
    m, s = np.zeros_like(w), np.zeros_like(w)
    update = getattr(engine, f"{kind}_update")
    for iteration, g in enumerate(grads):
        update(w, np.ascontiguousarray(g, w.dtype), m, s, iteration, **hyper)
    return w


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("kind,hyper", [
    ("nadam", {"learning_rate": 0.01}),
    ("nadam", {"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}),
    ("adamax", {"learning_rate": 0.01}),
    ("adamax", {"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6})])
def test_updates_follow_keras_formulas_over_several_steps(engine, kind, hyper, dtype, rng):
    w = rng.normal(size=37).astype(dtype)
    grads = [rng.normal(size=37).astype(dtype) for _ in range(6)]
    got = run_updates(engine, kind, w, grads, **hyper)
    want = KERAS_RULES[kind](w, grads, **hyper)
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind,expected", [("nadam", [0.4686, 1.4686, 2.4686, 3.4686]),
                                           ("adamax", [0.5, 1.5, 2.5, 3.5])])
def test_single_step_matches_keras_unit_test(engine, kind, expected):
    w = run_updates(engine, kind, np.array([1.0, 2.0, 3.0, 4.0], np.float32),
                    [np.array([1.0, 6.0, 7.0, 2.0])], learning_rate=0.5)
    np.testing.assert_allclose(w, expected, rtol=1e-4, atol=1e-4)


# keras/src/optimizers/{nadam,adamax}_test.py, test_correctness_with_golden: one step with
# gradients 0.01, then steps with 0.1, 0.2, ..., 1.0; x after each step but the last
GOLDEN = {
    "nadam": ({"learning_rate": 0.5, "beta_1": 0.5, "beta_2": 0.67, "epsilon": 1e-5}, [
        [0.4281] * 10,
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455,
         -1.7454]]),
    "adamax": ({"learning_rate": 0.2, "beta_1": 0.85, "beta_2": 0.95, "epsilon": 1e-6}, [
        [0.8] * 10,
        [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
        [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
        [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
        [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126]]),
}


@pytest.mark.parametrize("kind", list(GOLDEN))
def test_trajectory_matches_keras_golden_values(engine, kind):
    hyper, golden = GOLDEN[kind]
    grads = [np.full(10, 0.01)] + [np.arange(1, 11) / 10] * 4
    for steps, expected in enumerate(golden, start=1):
        w = run_updates(engine, kind, np.ones(10, np.float32), grads[:steps], **hyper)
        np.testing.assert_allclose(w, expected, rtol=5e-4, atol=5e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_nadam_u_product_is_keras_running_product(engine, dtype):
    f = np.dtype(dtype).type
    product = f(1)
    for t in range(1, 30):
        product = product * f(0.9) * (f(1) - f(0.5) * f(0.96) ** f(t))
        assert engine.nadam_u_product(t, 0.9, dtype) == float(product)
    assert 0 < engine.nadam_u_product(10**9, 0.9, dtype) < 2.0**-60


# --- clipnorm and global_clipnorm in the training loop, against Keras' formulas

LAYERS = [("dense", 7, "tanh", True), ("dense", 3, "softmax", True)]


def one_sgd_step(engine, params, x, labels, **options):
    """params after one full-batch SGD step (learning rate 0.5) with ``options``; and the
    network's gradients buffer."""
    ops, _ = build_ops(x.shape[1], LAYERS)
    params = params.copy()
    net = engine.Network(x.shape[1], ops, params, kernels.LOSS_SPARSE_CE, kernels.METRIC_NONE,
                         True, len(x))
    opt = kernels.OptimizerConfig("sgd", learning_rate=0.5, **options)
    net.train(x, labels, None, len(x), 0, 1, opt, np.zeros((0, params.size)), 0, np.zeros(1),
              np.zeros(1))
    return params, net.grads.copy()


def variables(x_width):
    """Slices of each kernel and bias in the flat buffer, as ``build_ops`` lays them out."""
    ops, _ = build_ops(x_width, LAYERS)
    spans, width = [], x_width
    for _, units, _, _, w_off, b_off in ops:
        spans += [slice(w_off, w_off + width * units), slice(b_off, b_off + units)]
        width = units
    return spans


@pytest.fixture
def problem(rng):
    _, params = init_params(rng, 5, LAYERS, np.float64)
    x, labels = network_data(rng, kernels.LOSS_SPARSE_CE, 12, 5, 3)
    return params, x * 4, labels


@pytest.mark.parametrize("clipnorm", [1e-3, 0.05, 1.0, 64.0, 100.0])
def test_clipnorm_scales_each_kernel_and_bias_as_keras(engine, problem, clipnorm):
    params, x, labels = problem
    _, raw = one_sgd_step(reference, params, x, labels)  # the gradients, unclipped
    expected = params.copy()
    for span in variables(5):
        g = raw[span]
        expected[span] -= 0.5 * g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm)
    got, _ = one_sgd_step(engine, params, x, labels, clipnorm=clipnorm)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    if clipnorm < 0.05:  # every variable's gradient was larger: each step is clipnorm long
        for span in variables(5):
            assert np.linalg.norm(params[span] - got[span]) == pytest.approx(0.5 * clipnorm)


@pytest.mark.parametrize("clipnorm", [1e-3, 0.3, 100.0])
def test_global_clipnorm_scales_all_gradients_together_as_keras(engine, problem, clipnorm):
    params, x, labels = problem
    _, raw = one_sgd_step(reference, params, x, labels)
    norm = np.sqrt(sum(np.sum(raw[span] ** 2) for span in variables(5)))
    expected = params - 0.5 * raw * clipnorm * min(1 / norm, 1 / clipnorm)
    got, _ = one_sgd_step(engine, params, x, labels, global_clipnorm=clipnorm)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_global_clipnorm_leaves_frozen_layers_out(rng):
    layers = [("dense", 6, "relu", True), ("dense", 3, "softmax", True)]
    ops, _ = build_ops(5, layers)
    _, params = init_params(rng, 5, layers, np.float64)
    x, labels = network_data(rng, kernels.LOSS_SPARSE_CE, 12, 5, 3)
    results = []
    for engine in (kernels, reference):
        p = params.copy()
        net = engine.Network(5, ops, p, kernels.LOSS_SPARSE_CE, kernels.METRIC_NONE, True, 12,
                             trainable=[False, True])
        opt = kernels.OptimizerConfig("sgd", learning_rate=0.5, global_clipnorm=1e-3)
        net.train(x, labels, None, 12, 0, 1, opt, np.zeros((0, p.size)), 0, np.zeros(1),
                  np.zeros(1))
        results.append(p)
    w_end = 5 * 6 + 6
    np.testing.assert_array_equal(results[0][:w_end], params[:w_end])  # the frozen layer
    step = np.linalg.norm(results[0][w_end:] - params[w_end:])
    assert step == pytest.approx(0.5e-3)  # the trainable layer alone makes the norm
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("options", [{"global_clipnorm": 0.5}, {"clipnorm": 0.05}])
def test_clipped_steps_on_a_thread_team_match_one_thread(options, kernel_threads):
    """A model wide enough for the team to cut its layers: every gradient first, then the clipped
    steps, the same numbers at any thread count."""
    rng = np.random.default_rng(3)
    layers = [("dense", 512, "relu", True), ("dense", 10, "softmax", True)]
    ops, _ = build_ops(256, layers)
    _, params = init_params(rng, 256, layers, np.float32)
    x, labels = network_data(rng, kernels.LOSS_SPARSE_CE, 256, 256, 10, np.float32)
    results = []
    for threads in (1, 2):
        kernel_threads(threads)
        p = params.copy()
        net = kernels.Network(256, ops, p, kernels.LOSS_SPARSE_CE, kernels.METRIC_NONE, True, 64)
        opt = kernels.OptimizerConfig("nadam", learning_rate=0.01, **options)
        slots = np.zeros((2, p.size), np.float32)
        assert net.train(x, labels, None, 64, 0, 4, opt, slots, 0, np.zeros(4),
                         np.zeros(4)) == (4, 4)
        results.append((p, slots))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert not np.array_equal(results[0][0], params)


# --- the Keras API

def test_nadam_and_adamax_by_name_and_config():
    for name, cls in [("nadam", keras.optimizers.Nadam), ("adamax", keras.optimizers.Adamax)]:
        opt = keras.optimizers.get(name)
        assert type(opt) is cls and opt.name == name
        assert (opt.learning_rate, opt.beta_1, opt.beta_2, opt.epsilon) == (0.001, 0.9, 0.999,
                                                                            1e-7)
        custom = cls(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5, clipnorm=2.0)
        again = cls.from_config(custom.get_config())
        assert again.get_config() == custom.get_config()
        assert again.clipnorm == 2.0 and again.beta_2 == 0.67
    with pytest.raises(ValueError, match="beta_1"):
        keras.optimizers.Nadam(beta_1=1.0)


def test_only_one_clip_option_with_keras_message():
    with pytest.raises(ValueError) as info:
        keras.optimizers.Adamax(clipnorm=1.0, global_clipnorm=2.0)
    assert str(info.value) == ("Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can "
                               "be set. Received: clipnorm=1.0, clipvalue=None, "
                               "global_clipnorm=2.0")
    for option in ("clipnorm", "global_clipnorm"):
        with pytest.raises(ValueError, match=option):
            keras.optimizers.Adam(**{option: -1.0})


def tutorial_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 20)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("int32") + 2 * (x[:, 3] > 0.5)
    return x, y


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.Nadam(learning_rate=1e-3, clipnorm=1.0),
    lambda: keras.optimizers.Adamax(learning_rate=2e-3, global_clipnorm=1.0), lambda: "nadam",
    lambda: keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, global_clipnorm=0.5)])
def test_tutorial_style_fit_with_clipping_lowers_the_loss(optimizer):
    x, y = tutorial_data()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    assert model.optimizer.iterations == 5 * 16


@pytest.mark.parametrize("suffix", [".fastdnn", ".keras", ".weights.h5"])
@pytest.mark.parametrize("make", [lambda: keras.optimizers.Nadam(0.01, clipnorm=0.5),
                                  lambda: keras.optimizers.Adamax(0.01)])
def test_saved_state_resumes_training_exactly(tmp_path, suffix, make):
    if suffix != ".fastdnn":
        pytest.importorskip("h5py")
    x, y = tutorial_data()

    def new_model():
        keras.utils.set_random_seed(2)
        model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(4, activation="softmax")])
        model.compile(make(), "sparse_categorical_crossentropy")
        return model

    model = new_model()
    model.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    path = tmp_path / f"m{suffix}"
    if suffix == ".weights.h5":
        model.save_weights(path)
        loaded = new_model()
        loaded.fit(x[:1], y[:1], epochs=1, verbose=0)  # builds the optimizer's slots
        loaded.load_weights(path)
    else:
        model.save(path)
        loaded = keras.models.load_model(path)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8
    np.testing.assert_array_equal(loaded.optimizer.slots, model.optimizer.slots)
    for m in (model, loaded):
        m.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
    np.testing.assert_array_equal(loaded.params, model.params)


# --- files made by real Keras (tests/fixtures/keras/make_optimizer_trajectories.py)

FIXTURES = Path(__file__).parent / "fixtures" / "keras"
sys.path.insert(0, str(FIXTURES))
import make_optimizer_trajectories as trajectories  # noqa: E402


@pytest.mark.parametrize("case", list(trajectories.cases(keras.optimizers)))
def test_fit_follows_keras_weights_over_sixty_steps(case):
    arrays = np.load(FIXTURES / "optimizer_trajectories.npz")
    start = [arrays[f"start/{i}"] for i in range(4)]
    got = trajectories.train(keras, trajectories.cases(keras.optimizers)[case], arrays["x"],
                             arrays["y"], start)
    for i, w in enumerate(got):
        np.testing.assert_allclose(w, arrays[f"{case}/{i}"], rtol=0, atol=2e-5)


def test_summary_counts_nadams_scalar_variable_as_keras(capsys):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Nadam(), "mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    model.summary()
    text = capsys.readouterr().out
    # Keras 3.15: 2 + 2 slots x 8 weights + u_product
    assert "Total params: 27 (108.00 B)" in text
    assert "Optimizer params: 19 (76.00 B)" in text


def test_optimizer_config_is_checked_once_and_copies():
    opt = keras.optimizers.Nadam(0.01, global_clipnorm=2.0)
    config = opt.settings()
    assert opt.settings() is config  # made once, read by every call
    opt.learning_rate = 0.02
    assert opt.settings() is not config and opt.settings().learning_rate == 0.02
    again = pickle.loads(pickle.dumps(opt.settings()))
    assert (again.kind, again.slot_names, again.global_clipnorm) == ("nadam", ("momentum",
                                                                               "velocity"), 2.0)
    assert copy.deepcopy(opt).settings().learning_rate == 0.02
    with pytest.raises(RuntimeError, match="built once"):
        config.__init__("sgd")
