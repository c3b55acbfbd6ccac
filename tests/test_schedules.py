"""Learning-rate schedules (``keras.optimizers.schedules``) and their use inside ``fit``.

The expected values are Keras' formulas (keras/src/optimizers/schedules/
learning_rate_schedule.py) written out here, and the values of Keras' own unit tests
(learning_rate_schedule_test.py), including its end-to-end fit with an ExponentialDecay Adam.
The compiled loop evaluates the schedule at every step (``_kernels.learning_rate_at``); it is
held to the same formulas, and a training run to the NumPy reference engine.
"""

import math

import numpy as np
import pytest

import fastdnn as keras
from fastdnn import _kernels, reference
from fastdnn.optimizers.schedules import (CosineDecay, ExponentialDecay, InverseTimeDecay,
                                          LearningRateSchedule, PiecewiseConstantDecay,
                                          PolynomialDecay)
from _api_helpers import float64, fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")


def kernel_rate(schedule, step):
    return _kernels.learning_rate_at({"kind": "sgd", "learning_rate": 0.0,
                                      "schedule": schedule.kernel_spec()}, step)


def check(schedule, step, expected):
    """The schedule object, the NumPy twin and the kernel all give ``expected``."""
    assert schedule(step) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert kernel_rate(schedule, step) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def cosine(step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    return (1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha


def test_exponential_decay_keras_values():
    check(ExponentialDecay(0.05, 10, 0.96), 5, 0.05 * 0.96 ** (5.0 / 10.0))
    stairs = ExponentialDecay(0.1, 3, 0.96, staircase=True)
    for step, expected in ((1, 0.1), (2, 0.1), (100, 0.1 * 0.96 ** (100 // 3))):
        check(stairs, step, expected)


def test_piecewise_constant_keras_values():
    schedule = PiecewiseConstantDecay([100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    for step, expected in ((0, 1.0), (100, 1.0), (105, 0.1), (110, 0.1), (120, 0.01),
                           (999, 0.001)):
        check(schedule, step, expected)
    edges = PiecewiseConstantDecay([1, 2, 3], [0.4, 0.5, 0.6, 0.7])
    for step, expected in enumerate([0.4, 0.4, 0.5, 0.6, 0.7]):
        check(edges, step, expected)
    with pytest.raises(ValueError, match="1 less than the length of values"):
        PiecewiseConstantDecay([1, 2], [1.0, 2.0])


def test_inverse_time_decay_keras_values():
    k, rate = 10, 0.96
    smooth, stairs = InverseTimeDecay(0.1, k, rate), InverseTimeDecay(0.1, k, rate, True)
    for i in range(k + 1):
        check(smooth, i, 0.1 / (1 + i / k * rate))
        check(stairs, i, 0.1 / (1 + rate * (i // k)))


def test_cosine_decay_keras_values():
    for step in range(0, 1500, 250):
        check(CosineDecay(1.0, 1000), step, cosine(step, 1000))
        check(CosineDecay(1.0, 1000, 0.1), step, cosine(step, 1000, 0.1))
        # warmup from 0 to 10 over 1500 steps: Keras' test, step/warmup · delta
        check(CosineDecay(0.0, 10, warmup_target=10.0, warmup_steps=1500), step,
              step / 1500 * 10.0)
    for step in range(0, 3000, 250):
        expected = (step / 2000 * 10.0 if step < 2000 + 1
                    else 10.0 * cosine(step - 2000, 1000))
        check(CosineDecay(0.0, 1000, warmup_target=10.0, warmup_steps=2000), step, expected)
    check(CosineDecay(0.5, 100, warmup_target=1.0, warmup_steps=10), 5, 0.75)


def test_polynomial_decay_keras_values():
    check(PolynomialDecay(0.05, 10, 0.0), 5, 0.05 * 0.5)
    check(PolynomialDecay(0.05, 10, 0.001), 10, 0.001)
    check(PolynomialDecay(0.05, 10, 0.001), 15, 0.001)
    check(PolynomialDecay(0.05, 10, 0.001, power=0.5), 5, (0.05 - 0.001) * 0.5**0.5 + 0.001)
    check(PolynomialDecay(0.05, 10, 0.001, cycle=True), 15, (0.05 - 0.001) * 0.25 + 0.001)
    check(PolynomialDecay(0.001, 10, cycle=True), 0, 0.001)


@pytest.mark.parametrize("cls", [ExponentialDecay, InverseTimeDecay])
def test_decay_steps_must_be_positive(cls):
    with pytest.raises(ValueError, match="decay_steps` must be > 0"):
        cls(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="decay_steps` must be > 0"):
        CosineDecay(0.1, -1)


def test_keras_fit_with_an_exponential_decay_adam():
    """keras/src/optimizers/schedules/learning_rate_schedule_test.py, test_fit_lr_correctness."""
    model = keras.Sequential([keras.layers.Dense(2, kernel_initializer="ones",
                                                 bias_initializer="ones")])
    optimizer = keras.optimizers.Adam(learning_rate=ExponentialDecay(
        initial_learning_rate=0.05, decay_steps=1, decay_rate=0.9))
    model.compile(optimizer=optimizer, loss="mse")
    x = np.arange(32).reshape((16, 2))
    history = model.fit(x, x, epochs=3, batch_size=4, shuffle=False, verbose=0)
    assert optimizer.iterations == 4 * 3
    assert np.allclose(history.history["loss"],
                       [230.79457092285156, 128.30319213867188, 79.33648681640625], rtol=5e-5)
    assert optimizer.learning_rate == pytest.approx(0.05 * 0.9**12)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop", "adagrad"])
def test_a_scheduled_fit_matches_the_reference_engine(optimizer, float64):
    def run(engine):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(3, activation="softmax")])
        schedule = PiecewiseConstantDecay([3, 7], [0.1, 0.02, 0.005])
        opt = keras.optimizers.get(optimizer)
        opt = type(opt)(learning_rate=schedule)
        model.compile(opt, "sparse_categorical_crossentropy", engine=engine)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    for a, b in zip(run("fastdnn"), run("numpy")):
        assert a.dtype == np.float64 and np.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_kernel_and_a_per_batch_python_run_agree():
    """The same schedule evaluated per step in C and, as a custom schedule, in Python."""

    class Mine(LearningRateSchedule):
        def __call__(self, step):
            return 0.1 * 0.8**step

    def run(rate):
        keras.utils.set_random_seed(1)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        model.compile(keras.optimizers.SGD(learning_rate=rate), "sparse_categorical_crossentropy")
        rng = np.random.default_rng(2)
        model.fit(rng.normal(size=(30, 4)), rng.integers(0, 3, 30), batch_size=5, verbose=0,
                  shuffle=False)
        return model

    in_c, in_python = run(ExponentialDecay(0.1, 1, 0.8)), run(Mine())
    assert not in_c.optimizer.steps_in_python() and in_python.optimizer.steps_in_python()
    for a, b in zip(in_c.get_weights(), in_python.get_weights()):
        assert np.allclose(a, b, rtol=1e-5, atol=1e-7)
    constant = run(0.1).get_weights()
    assert not np.allclose(constant[0], in_c.get_weights()[0])


def test_the_learning_rate_reads_the_schedule_and_is_not_settable():
    opt = keras.optimizers.SGD(learning_rate=InverseTimeDecay(1.0, 1, 1.0))
    assert opt.learning_rate == 1.0
    opt.iterations = 3
    assert opt.learning_rate == 0.25
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.1
    called = keras.optimizers.SGD(learning_rate=lambda: 0.125)
    assert called.learning_rate == 0.125 and called.steps_in_python()


def test_schedules_survive_get_config_and_saving(tmp_path):
    schedule = CosineDecay(0.05, 10, alpha=0.1, warmup_target=0.2, warmup_steps=2, name="my_cd")
    opt = keras.optimizers.Adam(learning_rate=schedule)
    config = opt.get_config()
    assert config["learning_rate"] == {
        "module": "keras.optimizers.schedules", "class_name": "CosineDecay",
        "config": {"initial_learning_rate": 0.05, "decay_steps": 10, "alpha": 0.1,
                   "name": "my_cd", "warmup_target": 0.2, "warmup_steps": 2},
        "registered_name": None}
    again = keras.optimizers.Adam.from_config(config)
    assert again._schedule.get_config() == schedule.get_config()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=PiecewiseConstantDecay([2], [0.5, 0.1])),
                  "sparse_categorical_crossentropy")
    model.fit(np.ones((8, 3)), np.zeros(8), batch_size=2, verbose=0)
    model.save(tmp_path / "m.fastdnn")
    loaded = keras.models.load_model(tmp_path / "m.fastdnn")
    assert loaded.optimizer.iterations == 4
    assert loaded.optimizer.learning_rate == 0.1
    assert isinstance(loaded.optimizer._schedule, PiecewiseConstantDecay)


def test_the_kernel_refuses_bad_schedule_settings():
    base = {"kind": "sgd", "learning_rate": 0.1}
    for schedule, error in [({"kind": "cosine", "params": [1.0, 0.0, 0, 0, 0, 0]}, "> 0"),
                            ({"kind": "exponential", "params": [1.0, 2.0]}, "4 parameters"),
                            ({"kind": "exponential", "params": [1.0, 2.0, math.nan, 0]},
                             "finite"),
                            ({"kind": "piecewise", "boundaries": list(range(40)),
                              "values": list(range(41))}, "at most"),
                            ({"kind": "nope"}, "unknown schedule")]:
        with pytest.raises(ValueError, match=error):
            _kernels.learning_rate_at({**base, "schedule": schedule}, 0)
    assert _kernels.learning_rate_at(base, 5) == 0.1
    assert reference.learning_rate_at({"kind": "piecewise", "boundaries": [1],
                                       "values": [2.0, 3.0]}, 2) == 3.0
    long = PiecewiseConstantDecay(list(range(40)), [float(v) for v in range(41)])
    assert long.kernel_spec() is None and long(39.5) == 40.0
