"""Initializers: Keras 3's distributions (keras/src/initializers/random_initializers.py).

The expected bounds and variances are written out here from Keras' formulas: VarianceScaling
with ``n = max(1, fan)`` has variance ``scale / n``; its uniform form lies on ``[-L, L]`` with
``L = sqrt(3·scale/n)``; its truncated normal is cut at two standard deviations of a normal of
stddev ``sqrt(scale/n) / 0.87962566103423978`` (the stddev of a unit normal truncated to
[-2, 2], computed below from erf). Random streams are NumPy's, so the checks are statistical,
on 120,000 draws with fixed seeds: variances within 2%, means within 4 standard errors.
"""

import math

import numpy as np
import pytest

import fastdnn as keras
from _api_helpers import fresh_names  # noqa: F401

pytestmark = pytest.mark.usefixtures("fresh_names")

init = keras.initializers
SHAPE = (400, 300)  # fan_in 400, fan_out 300
FANS = {"fan_in": 400, "fan_out": 300, "fan_avg": 350}


def _unit_truncated_variance():
    """Variance of a unit normal truncated to [-2, 2]: 1 - 2·2·φ(2) / (Φ(2) - Φ(-2))."""
    phi = math.exp(-2) / math.sqrt(2 * math.pi)
    mass = math.erf(2 / math.sqrt(2))
    return 1 - 4 * phi / mass


def test_the_truncation_constant_is_the_truncated_unit_normals_stddev():
    assert math.sqrt(_unit_truncated_variance()) == pytest.approx(0.87962566103423978, rel=1e-12)


def check_moments(values, variance, mean=0.0):
    n = values.size
    assert abs(values.mean() - mean) < 4 * math.sqrt(variance / n)
    assert values.var() == pytest.approx(variance, rel=0.02)


PRESETS = [  # name, scale, mode, distribution (Keras' definitions)
    ("glorot_uniform", 1.0, "fan_avg", "uniform"),
    ("glorot_normal", 1.0, "fan_avg", "truncated_normal"),
    ("he_uniform", 2.0, "fan_in", "uniform"),
    ("he_normal", 2.0, "fan_in", "truncated_normal"),
    ("lecun_uniform", 1.0, "fan_in", "uniform"),
    ("lecun_normal", 1.0, "fan_in", "truncated_normal"),
]


@pytest.mark.parametrize("name, scale, mode, distribution", PRESETS)
def test_variance_scaling_presets_have_keras_bounds_and_variance(name, scale, mode, distribution):
    values = init.get(name)(SHAPE)
    assert values.shape == SHAPE and values.dtype == np.float32
    variance = scale / FANS[mode]
    check_moments(values.astype(np.float64), variance)
    if distribution == "uniform":
        bound = math.sqrt(3 * scale / FANS[mode])
    else:
        bound = 2 * math.sqrt(scale / FANS[mode]) / 0.87962566103423978
    assert np.abs(values).max() <= np.float32(bound)
    assert np.abs(values).max() > 0.99 * bound
    assert type(init.get(name)) is init.ALL[name]
    same = init.VarianceScaling(scale, mode, distribution, seed=3)
    assert np.array_equal(init.ALL[name](seed=3)(SHAPE), same(SHAPE))


def test_untruncated_normal_variance_scaling():
    values = init.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=1)(SHAPE, "float64")
    assert values.dtype == np.float64
    check_moments(values, 2.0 / 300)
    assert np.abs(values).max() > 3 * math.sqrt(2.0 / 300)  # not truncated


def test_fan_below_one_counts_as_one():
    values = init.VarianceScaling(0.5, "fan_avg", "uniform", seed=0)((120000,), "float64")
    # a 1-D shape has fan_in = fan_out = its length
    assert np.abs(values).max() <= math.sqrt(3 * 0.5 / 120000)
    assert init.compute_fans(()) == (1, 1)
    assert init.compute_fans((3, 4, 5, 6)) == (5 * 12, 6 * 12)
    tiny = init.VarianceScaling(3.0, "fan_in", "uniform", seed=0)((0, 5))
    assert tiny.shape == (0, 5)


def test_random_normal_uniform_and_truncated_defaults():
    check_moments(init.RandomNormal(seed=0)(SHAPE).astype(np.float64), 0.05**2)
    u = init.RandomUniform(seed=0)(SHAPE).astype(np.float64)
    assert u.min() >= -0.05 and u.max() < 0.05
    check_moments(u, 0.1**2 / 12)
    t = init.TruncatedNormal(mean=1.0, stddev=0.5, seed=0)(SHAPE).astype(np.float64)
    assert np.abs(t - 1.0).max() <= 1.0
    check_moments(t, 0.25 * _unit_truncated_variance(), mean=1.0)
    u2 = init.RandomUniform(2.0, 3.0, seed=1)((1000,))
    assert u2.min() >= 2.0 and u2.max() < 3.0


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (30, 30), (4, 5, 6)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    q = init.Orthogonal(gain=2.0, seed=0)(shape, "float64")
    assert q.shape == shape
    flat = q.reshape(-1, shape[-1])
    small = min(flat.shape)
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    assert np.allclose(gram, 4.0 * np.eye(small), atol=1e-12)
    with pytest.raises(ValueError, match="at least two-dimensional"):
        init.Orthogonal()((5,))


def test_constants_and_identity():
    assert np.all(init.get("zeros")((2, 3)) == 0)
    assert np.all(init.get("ones")((2, 3)) == 1)
    assert np.all(init.Constant(0.25)((4,), "float64") == 0.25)
    assert np.array_equal(init.Identity(3.0)((2, 3)), 3.0 * np.eye(2, 3))
    with pytest.raises(ValueError, match="number"):
        init.Constant("a")


def test_seeds_repeat_and_unseeded_initializers_follow_set_random_seed():
    a = init.HeNormal(seed=7)
    assert np.array_equal(a((10, 10)), a((10, 10)))  # stateless with a seed, as Keras
    assert not np.array_equal(a((10, 10)), init.HeNormal(seed=8)((10, 10)))
    keras.utils.set_random_seed(5)
    first = init.GlorotNormal()((10, 10))
    keras.utils.set_random_seed(5)
    assert np.array_equal(first, init.GlorotNormal()((10, 10)))
    with pytest.raises(ValueError, match="seed"):
        init.HeNormal(seed=1.5)


def test_unknown_names_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="Could not interpret initializer identifier: he_norml"
                                         ".*he_normal"):
        init.get("he_norml")
    with pytest.raises(ValueError, match="he_normal"):
        keras.layers.Dense(3, kernel_initializer="HE_NORMAL")
    with pytest.raises(ValueError, match="expected one of"):
        init.VarianceScaling(mode="fan_max")
    with pytest.raises(ValueError, match="expected one of"):
        init.VarianceScaling(distribution="normal")
    with pytest.raises(ValueError, match="positive"):
        init.VarianceScaling(scale=0.0)


def test_names_classes_and_configs_resolve_as_in_keras():
    assert isinstance(init.get("HeNormal"), init.HeNormal)
    assert isinstance(init.get("uniform"), init.RandomUniform)
    assert isinstance(init.get(init.Orthogonal), init.Orthogonal)
    original = init.VarianceScaling(2.0, "fan_avg", "uniform", seed=4)
    config = init.serialize(original)
    assert config == {"module": "keras.initializers", "class_name": "VarianceScaling",
                      "config": {"scale": 2.0, "mode": "fan_avg", "distribution": "uniform",
                                 "seed": 4}, "registered_name": None}
    again = init.get(config)
    assert np.array_equal(again((6, 7)), original((6, 7)))
    assert init.serialize(init.HeUniform())["config"] == {"seed": None}


def test_dense_uses_its_initializers():
    model = keras.Sequential([
        keras.Input((400,)),
        keras.layers.Dense(300, kernel_initializer="he_normal", bias_initializer="ones"),
        keras.layers.Dense(3, kernel_initializer=init.Constant(0.5),
                           bias_initializer=init.RandomUniform(1.0, 2.0, seed=1)),
    ])
    kernel, bias, k2, b2 = model.get_weights()
    check_moments(kernel.astype(np.float64), 2.0 / 400)
    assert np.abs(kernel).max() <= 2 * math.sqrt(2.0 / 400) / 0.87962566103423978
    assert np.all(bias == 1) and np.all(k2 == 0.5)
    assert np.all((b2 >= 1) & (b2 < 2))


def test_seeded_dense_layers_are_identical_and_callables_work():
    def build():
        return keras.Sequential([keras.Input((5,)), keras.layers.Dense(
            4, kernel_initializer=init.Orthogonal(seed=3),
            bias_initializer=lambda shape, dtype=None: np.full(shape, 0.1, dtype))])
    a, b = build().get_weights(), build().get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.allclose(a[1], 0.1)
    with pytest.raises(ValueError, match="shape"):
        keras.Sequential([keras.Input((5,)), keras.layers.Dense(
            4, kernel_initializer=lambda shape, dtype=None: np.zeros((2, 2)))])


def test_initializers_survive_get_config_and_saving(tmp_path):
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(
        3, kernel_initializer=init.HeUniform(seed=2), bias_initializer=init.Constant(0.3))])
    model.compile("sgd", "mse")
    path = tmp_path / "m.fastdnn"
    model.save(path)
    loaded = keras.models.load_model(path)
    dense = loaded.layers[0]
    assert isinstance(dense.kernel_initializer, init.HeUniform)
    assert dense.kernel_initializer.get_config() == {"seed": 2}
    assert dense.bias_initializer.get_config() == {"value": 0.3}
    assert all(np.array_equal(x, y) for x, y in zip(model.get_weights(), loaded.get_weights()))
    rebuilt = keras.layers.Dense.from_config(model.layers[0].get_config())
    assert rebuilt.kernel_initializer.get_config() == {"seed": 2}
