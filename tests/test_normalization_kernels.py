"""The normalization kernels (batch normalization, Keras' Normalization) against the formulas of
Keras 3 written out here, the kernels against the reference, and the backward pass against
finite differences (float64).

Keras 3: training ``out = (x - mean) / sqrt(var + epsilon) * gamma + beta`` with the batch's
mean and biased variance, ``moving = moving * momentum + batch_stat * (1 - momentum)``;
inference the same with the moving statistics; ``Normalization``: ``(x - mean) /
max(sqrt(variance), epsilon)``, inverted ``mean + x * max(sqrt(variance), epsilon)``.
"""

import numpy as np
import pytest

from _helpers import DTYPES, assert_close, assert_gradient_close, numerical_gradient
from fastdnn import _kernels as kernels
from fastdnn import reference

N, C = 7, 5


def bn_case(rng, dtype, n=N, c=C):
    x = rng.normal(5.0, 10.0, (n, c)).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.normal(0, 1, c).astype(dtype)
    mean = rng.normal(0, 1, c).astype(dtype)
    var = rng.uniform(0.5, 2.0, c).astype(dtype)
    return x, gamma, beta, mean, var


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
def test_batch_normalization_forward_follows_keras_formula(engine, dtype, training, rng):
    x, gamma, beta, mean, var = bn_case(rng, dtype)
    x64 = x.astype(np.float64)
    if training:
        m, v = x64.mean(axis=0), ((x64 - x64.mean(axis=0)) ** 2).mean(axis=0)
    else:
        m, v = mean.astype(np.float64), var.astype(np.float64)
    expected = (x64 - m) / np.sqrt(v + 0.01) * gamma + beta
    expected_mean = mean * 0.9 + m * 0.1 if training else mean
    expected_var = var * 0.9 + v * 0.1 if training else var
    out = np.empty_like(x)
    engine.batch_normalization_forward(x, gamma, beta, mean, var, out, momentum=0.9,
                                       epsilon=0.01, training=training)
    assert_close(out, expected, dtype, scale=10)
    assert_close(mean, expected_mean, dtype, scale=10)
    assert_close(var, expected_var, dtype, scale=100)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_normalization_kernel_matches_reference(dtype, rng):
    x, gamma, beta, mean, var = bn_case(rng, dtype, 33, 12)
    outs, stats = [], []
    for engine in (kernels, reference):
        m, v, out = mean.copy(), var.copy(), np.empty_like(x)
        engine.batch_normalization_forward(x, gamma, beta, m, v, out, training=True)
        grad, dgamma, dbeta = np.cos(x), np.empty_like(gamma), np.empty_like(beta)
        engine.batch_normalization_backward(x, gamma, grad, dgamma, dbeta)
        outs.append(out)
        stats.append((m, v, grad, dgamma, dbeta))
    assert_close(outs[0], outs[1], dtype, scale=10)
    for got, want in zip(*stats):
        assert_close(got, want, dtype, scale=10 * np.abs(want).max())


def test_batch_normalization_without_gamma_beta_is_the_plain_standardization(engine, rng):
    x = rng.normal(3.0, 2.0, (40, 3))
    mean, var, out = np.zeros(3), np.ones(3), np.empty_like(x)
    engine.batch_normalization_forward(x, None, None, mean, var, out, momentum=0.0,
                                       epsilon=1e-12, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, rtol=1e-9)
    # momentum 0: the moving statistics are the batch's, so inference now gives the same output
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, x.var(axis=0), rtol=1e-12)
    again = np.empty_like(x)
    engine.batch_normalization_forward(x, None, None, mean, var, again, epsilon=1e-12)
    np.testing.assert_allclose(again, out, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("with_gamma", [True, False], ids=["gamma", "no_gamma"])
def test_batch_normalization_backward_matches_finite_differences(engine, with_gamma, rng):
    x, gamma, beta, mean, var = bn_case(rng, np.float64)
    gamma = gamma if with_gamma else None
    r = rng.normal(size=x.shape)
    out = np.empty_like(x)

    def loss():
        engine.batch_normalization_forward(x, gamma, beta, mean.copy(), var.copy(), out,
                                           epsilon=0.01, training=True)
        return float((out * r).sum())

    numeric_x = numerical_gradient(loss, x)
    numeric_beta = numerical_gradient(loss, beta)
    grad, dgamma, dbeta = r.copy(), np.empty(C), np.empty(C)
    engine.batch_normalization_backward(x, gamma, grad, dgamma if with_gamma else None, dbeta,
                                        epsilon=0.01)
    assert_gradient_close(grad, numeric_x)
    assert_gradient_close(dbeta, numeric_beta)
    if with_gamma:
        assert_gradient_close(dgamma, numerical_gradient(loss, gamma))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("invert", [False, True], ids=["normalize", "invert"])
def test_normalization_forward_follows_keras_formula(engine, dtype, invert, rng):
    x = rng.normal(2.0, 3.0, (N, C)).astype(dtype)
    mean = rng.normal(0, 1, C).astype(dtype)
    variance = np.array([4.0, 0.25, 0.0, 1e-20, 9.0], dtype)  # 0 and tiny: epsilon's floor
    divisor = np.maximum(np.sqrt(variance.astype(np.float64)), 1e-7)
    expected = mean + x * divisor if invert else (x - mean) / divisor
    out = np.empty_like(x)
    engine.normalization_forward(x, mean, variance, out, invert=invert)
    assert_close(out, expected, dtype, scale=np.abs(expected).max())


BAD_BN_CALLS = {
    "gamma_shape": (lambda a: {**a, "gamma": np.ones(4)}, ValueError, "gamma"),
    "x_float16": (lambda a: {**a, "x": a["x"].astype(np.float16)}, TypeError, "x"),
    "empty_batch": (lambda a: {**a, "x": np.empty((0, 5)), "out": np.empty((0, 5))},
                    ValueError, "x"),
    "momentum_above_1": (lambda a: {**a, "momentum": 1.5}, ValueError, "momentum"),
    "epsilon_zero": (lambda a: {**a, "epsilon": 0.0}, ValueError, "epsilon"),
    "epsilon_nan": (lambda a: {**a, "epsilon": float("nan")}, ValueError, "epsilon"),
    "moving_mean_read_only": (lambda a: {**a, "moving_mean": _read_only(np.zeros(5))},
                              ValueError, "moving_mean"),
    "out_is_x": (lambda a: {**a, "out": a["x"]}, ValueError, "out"),
    "strided_x": (lambda a: {**a, "x": np.ones((4, 10))[:, ::2]}, ValueError, "x"),
}


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("case", sorted(BAD_BN_CALLS))
def test_batch_normalization_forward_refuses_bad_arguments(case):
    args = {"x": np.ones((4, 5)), "gamma": np.ones(5), "beta": np.zeros(5),
            "moving_mean": np.zeros(5), "moving_variance": np.ones(5), "out": np.empty((4, 5)),
            "momentum": 0.99, "epsilon": 1e-3, "training": True}
    change, error, name = BAD_BN_CALLS[case]
    with pytest.raises(error, match=name):
        kernels.batch_normalization_forward(**change(args))


def test_batch_normalization_backward_and_normalization_refuse_bad_arguments():
    x = np.ones((4, 5))
    with pytest.raises(ValueError, match="grad"):
        kernels.batch_normalization_backward(x, None, np.ones((4, 6)), None, None)
    with pytest.raises(ValueError, match="dbeta"):
        kernels.batch_normalization_backward(x, None, np.ones((4, 5)), None, np.ones(3))
    with pytest.raises(ValueError, match="variance"):
        kernels.normalization_forward(x, np.zeros(5), np.ones(4), np.empty((4, 5)))
    with pytest.raises(TypeError, match="mean"):
        kernels.normalization_forward(x, np.zeros(5, np.float32), np.ones(5), np.empty((4, 5)))
