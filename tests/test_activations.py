"""The activations beyond relu/sigmoid/tanh/softmax, and the LeakyReLU layer.

Expected values: Keras 3's definitions (keras/src/activations/activations.py), written out
below with Python's math module one number at a time, independent of the kernels and of the
NumPy reference. Gradients: central differences in float64, for the kernels and the reference.
gelu, silu and leaky_relu run as their own op (their derivative needs the input, or a slope);
the others are fused into the dense layer, and work from the output alone.
"""

import math

import numpy as np
import pytest

import fastdnn as keras
from _helpers import assert_activation_backward_matches_finite_differences
from _api_helpers import float64, fresh_names  # noqa: F401
from fastdnn import _kernels as kernels
from fastdnn import _plan
from fastdnn import reference

pytestmark = pytest.mark.usefixtures("fresh_names")

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


FORMULAS = {  # Keras 3, one scalar at a time
    "elu": lambda x: x if x > 0 else math.exp(x) - 1,
    "selu": lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * (math.exp(x) - 1)),
    "gelu": lambda x: 0.5 * x * (1 + math.erf(x / math.sqrt(2))),
    "silu": lambda x: x * _sigmoid(x),
    "softplus": lambda x: math.log1p(math.exp(x)) if x < 30 else x,
    "softsign": lambda x: x / (1 + abs(x)),
    "leaky_relu": lambda x: x if x >= 0 else 0.2 * x,
    "relu6": lambda x: min(max(x, 0.0), 6.0),
    "hard_sigmoid": lambda x: min(max(x + 3, 0.0), 6.0) / 6,
    "exponential": math.exp,
}
NEW = sorted(FORMULAS)
# points away from every kink (0, -3, 3, 6) so that finite differences are exact enough
Z = np.array([[-7.5, -3.7, -2.2, -0.9, -0.31, 0.27],
              [0.8, 1.6, 2.6, 3.4, 5.3, 7.1]])


def expected(name, z):
    return np.vectorize(FORMULAS[name])(z)


@pytest.mark.parametrize("name", NEW)
def test_forward_matches_keras_formula(engine, name):
    out = np.empty_like(Z)
    engine.activation_forward(Z.copy(), out, name)
    np.testing.assert_allclose(out, expected(name, Z), rtol=1e-14, atol=1e-15)
    z32, out32 = Z.astype(np.float32), np.empty(Z.shape, np.float32)
    engine.activation_forward(z32, out32, name)
    np.testing.assert_allclose(out32, expected(name, Z), rtol=2e-6, atol=1e-7)
    assert np.allclose(getattr(keras.activations, name)(Z), expected(name, Z), rtol=1e-14)


@pytest.mark.parametrize("name", NEW)
def test_backward_matches_finite_differences(engine, name, rng):
    z = Z.copy()
    assert_activation_backward_matches_finite_differences(engine, z, name, rng, z=z)


@pytest.mark.parametrize("name", NEW)
def test_float32_kernels_match_the_reference(name, rng):
    z = (rng.normal(size=(50, 7)) * 4).astype(np.float32)
    outs, grads = [], []
    for engine in (kernels, reference):
        out = np.empty_like(z)
        engine.activation_forward(z, out, name, negative_slope=0.1)
        grad = np.ones_like(z)
        engine.activation_backward(out, grad, name, z=z, negative_slope=0.1)
        outs.append(out)
        grads.append(grad)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_extreme_inputs_stay_finite_where_keras_is():
    z = np.array([[-1e4, -100.0, 100.0, 1e4]])
    for name in ("elu", "selu", "gelu", "silu", "softplus", "softsign", "hard_sigmoid", "relu6",
                 "leaky_relu"):
        out = np.empty_like(z)
        kernels.activation_forward(z, out, name)
        grad = np.ones_like(z)
        kernels.activation_backward(out, grad, name, z=z)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), name
    out = np.empty_like(z)
    kernels.activation_forward(z, out, "softplus")
    assert out[0, 3] == 1e4 and out[0, 0] == 0.0


def test_the_kernels_check_z_and_the_slope():
    a, g = np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError, match="needs its input z"):
        kernels.activation_backward(a, g, "gelu")
    with pytest.raises(ValueError, match="shape"):
        kernels.activation_backward(a, g, "silu", z=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="overlap"):
        kernels.activation_backward(a, g, "silu", z=g)
    with pytest.raises(ValueError, match="negative_slope"):
        kernels.activation_forward(a, g, "leaky_relu", negative_slope=-1.0)
    with pytest.raises(ValueError, match="cannot be fused"):
        kernels.dense_forward(np.ones((2, 2)), np.ones((2, 3)), None, a, "gelu")
    params = np.zeros(6)
    with pytest.raises(ValueError, match="cannot apply gelu"):
        kernels.Network(2, [(kernels.OP_DENSE, 3, kernels.GELU, 0.0, 0, -1)], params,
                        kernels.LOSS_MSE, kernels.METRIC_NONE, False, 4)
    with pytest.raises(ValueError, match="slope"):
        kernels.Network(2, [(kernels.OP_DENSE, 3, kernels.LINEAR, 0.0, 0, -1),
                            (kernels.OP_ACTIVATION, 3, kernels.LEAKY_RELU, -0.5, -1, -1)],
                        params, kernels.LOSS_MSE, kernels.METRIC_NONE, False, 4)


@pytest.mark.parametrize("name", NEW)
def test_dense_with_each_activation_predicts_the_formula_and_trains_as_the_reference(
        name, float64):
    def run(engine):
        keras.utils.set_random_seed(4)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(6, activation=name),
                                  keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(0.01), "mse", engine=engine)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
        kernel, bias = model.layers[0].get_weights()
        hidden = expected(name, x @ kernel + bias)
        second = model.layers[1].get_weights()
        assert np.allclose(model.predict(x, verbose=0), hidden @ second[0] + second[1],
                           rtol=1e-12, atol=1e-12)
        model.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    for a, b in zip(run("fastdnn"), run("numpy")):
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_the_plan_fuses_only_activations_that_work_from_the_output():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="elu"),
                              keras.layers.Dense(4, activation="gelu"),
                              keras.layers.Dense(4), keras.layers.Activation("silu"),
                              keras.layers.LeakyReLU(negative_slope=0.5)])
    plan = _plan.build(model._flat_layers(), model.input_shape[1:], model._trained_layers())
    kinds = [(op.kind, op.activation, op.param) for op in plan.ops]
    assert kinds == [(kernels.OP_DENSE, kernels.ELU, 0.0),
                     (kernels.OP_DENSE, kernels.LINEAR, 0.0),
                     (kernels.OP_ACTIVATION, kernels.GELU, 0.0),
                     (kernels.OP_DENSE, kernels.LINEAR, 0.0),
                     (kernels.OP_ACTIVATION, kernels.SILU, 0.0),
                     (kernels.OP_ACTIVATION, kernels.LEAKY_RELU, 0.5)]


def test_leaky_relu_layer_slope_training_config_and_saving(tmp_path, float64):
    layer = keras.layers.LeakyReLU()
    assert layer.name == "leaky_re_lu" and layer.negative_slope == 0.3
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2),
                              keras.layers.LeakyReLU(negative_slope=1.5)])
    model.layers[0].set_weights([np.eye(2), np.zeros(2)])
    x = np.array([[-2.0, 3.0]])
    assert np.array_equal(model.predict(x, verbose=0), [[-3.0, 3.0]])
    model.compile("sgd", "mse")
    path = tmp_path / "m.fastdnn"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[1].negative_slope == 1.5
    assert np.array_equal(loaded.predict(x, verbose=0), [[-3.0, 3.0]])
    for bad in (-0.1, None, math.nan):
        with pytest.raises(ValueError, match="negative_slope"):
            keras.layers.LeakyReLU(negative_slope=bad)
    with pytest.raises(ValueError, match="alpha"):
        keras.layers.LeakyReLU(alpha=0.1)


def test_names_and_aliases():
    assert keras.activations.get("swish") == "silu"
    assert keras.activations.get(keras.activations.swish) == "silu"
    assert keras.layers.Dense(2, activation="hard_sigmoid").activation == "hard_sigmoid"
    with pytest.raises(ValueError, match="Could not interpret activation function identifier: "
                                         "Gelu"):
        keras.layers.Dense(2, activation="Gelu")
    approx = keras.activations.gelu(np.array([1.0]), approximate=True)
    assert approx[0] == pytest.approx(
        0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (1 + 0.044715))))
    assert keras.activations.leaky_relu(np.array([-1.0]), negative_slope=0.1)[0] == -0.1
    assert keras.activations.elu(np.array([-1.0]), alpha=2.0)[0] == pytest.approx(
        2 * (math.exp(-1) - 1))
