"""Finite-difference checks of every gradient, in float64, for the kernels and the reference.

Central differences with eps = 1e-6 against the analytic gradients, to about 1e-6 relative: the
dense layer with each activation (w.r.t. x, w and b, through the scalar loss sum(out * r)), each
fused loss w.r.t. its logits or predictions, and a two-layer ``Network`` end to end (the
gradient read off one plain-SGD step with learning rate 1, the loss from ``evaluate``).
"""

import numpy as np
import pytest

from _helpers import (
    ACTIVATIONS,
    assert_activation_backward_matches_finite_differences,
    assert_gradient_close,
    init_params,
    network_data,
    numerical_gradient,
)
from fastdnn import _kernels as kernels
from fastdnn import reference

N, N_IN, N_OUT = 3, 4, 5


def away_from_kinks(rng, n, n_in, n_out):
    """x, w, b whose pre-activations are all at least 0.05 from 0 (relu's kink)."""
    while True:
        x = rng.normal(size=(n, n_in))
        w = rng.normal(0, 0.7, (n_in, n_out))
        b = rng.normal(0, 0.3, n_out)
        if np.abs(x @ w + b).min() > 0.05:
            return x, w, b


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(engine, activation, rng):
    z = away_from_kinks(rng, N, N_OUT, N_OUT)[0] * 2
    assert_activation_backward_matches_finite_differences(engine, z, activation, rng)


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradients_match_finite_differences(engine, activation, use_bias, rng):
    x, w, b = away_from_kinks(rng, N, N_IN, N_OUT)
    if not use_bias:
        b = None
        while np.abs(x @ w).min() <= 0.05:
            w = rng.normal(0, 0.7, w.shape)
    r = rng.normal(size=(N, N_OUT))
    out = np.empty((N, N_OUT))

    def loss():
        engine.dense_forward(x, w, b, out, activation)
        return float((out * r).sum())

    numeric = {"x": numerical_gradient(loss, x), "w": numerical_gradient(loss, w)}
    if use_bias:
        numeric["b"] = numerical_gradient(loss, b)
    engine.dense_forward(x, w, b, out, activation)
    grad = r.copy()
    dw, dx = np.empty_like(w), np.empty_like(x)
    db = np.empty_like(b) if use_bias else None
    engine.dense_backward(x, w, out, grad, dw, db, dx, activation)
    assert_gradient_close(dx, numeric["x"])
    assert_gradient_close(dw, numeric["w"])
    if use_bias:
        assert_gradient_close(db, numeric["b"])


def loss_cases(rng):
    """(loss name, logits or predictions, labels or targets) for each fused loss."""
    n, c = 4, 6
    labels = rng.integers(0, c, n).astype(np.int32)
    one_hot = np.eye(c)[labels]
    return {
        "sparse_ce": ("sparse_softmax_cross_entropy", rng.normal(0, 2, (n, c)), labels),
        "ce_one_hot": ("softmax_cross_entropy", rng.normal(0, 2, (n, c)), one_hot),
        "ce_soft": ("softmax_cross_entropy", rng.normal(0, 2, (n, c)),
                    rng.dirichlet(np.ones(c), n)),
        "ce_unnormalised": ("softmax_cross_entropy", rng.normal(0, 2, (n, c)),
                            rng.uniform(0, 1, (n, c))),
        "bce": ("sigmoid_binary_cross_entropy", rng.normal(0, 2, (n, c)),
                rng.integers(0, 2, (n, c)).astype(np.float64)),
        "bce_soft": ("sigmoid_binary_cross_entropy", rng.normal(0, 2, (n, c)),
                     rng.uniform(0, 1, (n, c))),
        "bce_one_column": ("sigmoid_binary_cross_entropy", rng.normal(0, 2, (n, 1)),
                           rng.integers(0, 2, (n, 1)).astype(np.float64)),
        "mse": ("mean_squared_error", rng.normal(size=(n, c)), rng.normal(size=(n, c))),
        "mse_one_column": ("mean_squared_error", rng.normal(size=(n, 1)), rng.normal(size=(n, 1))),
    }



@pytest.mark.parametrize("case", ["sparse_ce", "ce_one_hot", "ce_soft", "ce_unnormalised", "bce",
                                  "bce_soft", "bce_one_column", "mse", "mse_one_column"])
def test_loss_gradient_matches_finite_differences(engine, case, rng):
    name, out, target = loss_cases(rng)[case]
    fn = getattr(engine, name)
    numeric = numerical_gradient(lambda: fn(out, target), out)
    grad = np.empty_like(out)
    fn(out, target, grad)
    assert_gradient_close(grad, numeric)


# --- a two-layer network end to end

NET_CASES = {
    # name: (hidden activation, output activation, outputs, loss, metric, fused)
    "sparse_softmax_relu": ("relu", "softmax", 3, kernels.LOSS_SPARSE_CE,
                            kernels.METRIC_SPARSE_ACC, True),
    "categorical_softmax_tanh": ("tanh", "softmax", 3, kernels.LOSS_CE,
                                 kernels.METRIC_CATEGORICAL_ACC, True),
    "binary_sigmoid_one_output": ("sigmoid", "sigmoid", 1, kernels.LOSS_BCE,
                                  kernels.METRIC_BINARY_ACC, True),
    "binary_sigmoid_three_outputs": ("sigmoid", "sigmoid", 3, kernels.LOSS_BCE,
                                     kernels.METRIC_BINARY_ACC, True),
    "mse_linear_one_output": ("tanh", "linear", 1, kernels.LOSS_MSE, kernels.METRIC_NONE, False),
    "mse_linear_three_outputs": ("tanh", "linear", 3, kernels.LOSS_MSE, kernels.METRIC_NONE, False),
    "mse_sigmoid_one_output": ("relu", "sigmoid", 1, kernels.LOSS_MSE, kernels.METRIC_NONE, False),
}


@pytest.mark.parametrize("network_engine", [kernels, reference], ids=["kernels", "reference"])
@pytest.mark.parametrize("case", list(NET_CASES))
def test_two_layer_network_gradient_matches_finite_differences(network_engine, case, rng):
    hidden, output, n_outputs, loss, metric, fused = NET_CASES[case]
    n, n_inputs, n_hidden = 6, 4, 5
    layers = [("dense", n_hidden, hidden, True), ("dense", n_outputs, output, True)]
    ops, params = init_params(rng, n_inputs, layers, np.float64)
    x, y = network_data(rng, loss, n, n_inputs, n_outputs)
    if hidden == "relu":  # keep every hidden pre-activation away from the kink
        w1 = params[:n_inputs * n_hidden].reshape(n_inputs, n_hidden)
        b1 = params[n_inputs * n_hidden:n_inputs * n_hidden + n_hidden]
        while np.abs(x @ w1 + b1).min() <= 0.05:
            x = rng.normal(size=x.shape)

    probe = network_engine.Network(n_inputs, ops, params, loss, metric, fused, n)

    def mean_loss():
        return probe.evaluate(x, y)[0] / n

    numeric = numerical_gradient(mean_loss, params)

    before = params.copy()
    after = params.copy()
    trainer = network_engine.Network(n_inputs, ops, after, loss, metric, fused, n)
    loss_out, correct_out = np.empty(1), np.empty(1)
    done, iteration = trainer.train(x, y, None, n, 0, 1, {"kind": "sgd", "learning_rate": 1.0},
                                    np.zeros((0, params.size)), 0, loss_out, correct_out)
    assert (done, iteration) == (1, 1)
    np.testing.assert_array_equal(params, before)  # the probe restored every perturbation
    assert loss_out[0] / n == pytest.approx(mean_loss(), rel=1e-12)
    assert_gradient_close(before - after, numeric)
    assert_gradient_close(trainer.grads, numeric)
