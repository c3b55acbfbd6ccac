"""Shared helpers for the kernel test files (imported by the tests, no fixtures here).

The fixtures themselves live in ``conftest.py``; this module holds plain functions and constants
that several test files need: tolerances per precision, finite differences, the builders of
``Network`` ops, parameter buffers and optimizer slots, and a tiny Fashion-MNIST.
"""

import numpy as np

from fastdnn import _kernels as kernels

DTYPES = (np.float32, np.float64)
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")

# Relative tolerance of a kernel against the reference: float32 rounding over a few operations,
# float64 the same in double precision.
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(actual, expected, dtype, scale=1.0):
    """Assert ``actual`` equals ``expected`` to the precision of ``dtype``.

    ``scale`` is the magnitude of the terms that were summed (e.g. ``max(|x| @ |w|)`` for a GEMM):
    the absolute tolerance is the relative one times that scale, which is what rounding allows
    where a result is much smaller than its terms.
    """
    rtol = RTOL[np.dtype(dtype).type]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar function ``f()`` with respect to array ``x`` (in place)."""
    grad = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)  # a view: x is C-contiguous
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        grad.reshape(-1)[i] = (up - down) / (2 * eps)
    return grad


def assert_gradient_close(analytic, numeric, rtol=1e-6):
    """Compare an analytic gradient with central differences (float64, eps ~1e-6)."""
    scale = max(1.0, float(np.abs(numeric).max()))
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=1e-8 * scale)


def assert_activation_backward_matches_finite_differences(engine, inputs, activation, rng,
                                                          **kwargs):
    """``engine.activation_backward`` (``kwargs`` passed on, e.g. ``z=``) against central
    differences of sum(activation(inputs) * r) for a random r."""
    r = rng.normal(size=inputs.shape)
    out = np.empty_like(inputs)

    def loss():
        engine.activation_forward(inputs, out, activation)
        return float((out * r).sum())

    numeric = numerical_gradient(loss, inputs)
    engine.activation_forward(inputs, out, activation)
    grad = r.copy()
    engine.activation_backward(out, grad, activation, **kwargs)
    assert_gradient_close(grad, numeric)


# --- Network builders


def build_ops(n_inputs, layers):
    """Lay out ``layers`` as Network ops on one flat parameter buffer.

    Args:
        n_inputs: features per sample.
        layers: list of ``("dense", units, activation, use_bias)``, ``("activation", activation)``
            or ``("dropout", rate)``.

    Returns:
        ``(ops, n_params)``: the ops tuples and the parameter count.
    """
    ops, offset, width = [], 0, n_inputs
    for layer in layers:
        if layer[0] == "dense":
            _, units, activation, use_bias = layer
            w_off = offset
            offset += width * units
            b_off = offset if use_bias else -1
            offset += units if use_bias else 0
            code = kernels.ACTIVATIONS[activation]
            ops.append((kernels.OP_DENSE, units, code, 0.0, w_off, b_off))
            width = units
        elif layer[0] == "activation":
            ops.append((kernels.OP_ACTIVATION, width, kernels.ACTIVATIONS[layer[1]], 0.0, -1, -1))
        else:
            ops.append((kernels.OP_DROPOUT, width, kernels.LINEAR, layer[1], -1, -1))
    return ops, offset


def init_params(rng, n_inputs, layers, dtype):
    """Ops and a parameter buffer for them: kernels ~ N(0, 1/fan_in), biases small."""
    ops, n_params = build_ops(n_inputs, layers)
    params = np.empty(n_params, dtype)
    width = n_inputs
    for (kind, units, _, _, w_off, b_off) in ops:
        if kind == kernels.OP_DENSE:
            params[w_off:w_off + width * units] = rng.normal(0, 1 / np.sqrt(width), width * units)
            if b_off >= 0:
                params[b_off:b_off + units] = rng.normal(0, 0.1, units)
        width = units
    return ops, params


def network_data(rng, loss, n, n_inputs, n_outputs, dtype=np.float64):
    """Inputs and the targets ``loss`` expects: int32 labels, one-hot rows, 0/1 or real values."""
    x = rng.normal(size=(n, n_inputs)).astype(dtype)
    if loss == kernels.LOSS_SPARSE_CE:
        return x, rng.integers(0, n_outputs, n).astype(np.int32)
    if loss == kernels.LOSS_CE:
        return x, np.eye(n_outputs, dtype=dtype)[rng.integers(0, n_outputs, n)]
    if loss == kernels.LOSS_BCE:
        return x, rng.integers(0, 2, (n, n_outputs)).astype(dtype)
    return x, rng.normal(size=(n, n_outputs)).astype(dtype)


# Per loss: the output activation its fused form needs, and a metric that reads its targets.
FUSED_OUTPUT = {kernels.LOSS_SPARSE_CE: kernels.SOFTMAX, kernels.LOSS_CE: kernels.SOFTMAX,
                kernels.LOSS_BCE: kernels.SIGMOID, kernels.LOSS_MSE: kernels.LINEAR}
LOSS_METRIC = {kernels.LOSS_SPARSE_CE: kernels.METRIC_SPARSE_ACC,
               kernels.LOSS_CE: kernels.METRIC_CATEGORICAL_ACC,
               kernels.LOSS_BCE: kernels.METRIC_BINARY_ACC, kernels.LOSS_MSE: kernels.METRIC_NONE}


def loss_targets(rng, loss, n, n_outputs, dtype):
    """Targets ``loss`` reads: int32 labels, else 0/1 values (cross-entropies, soft targets
    allowed) or real values (mean squared error)."""
    if loss == kernels.LOSS_SPARSE_CE:
        return rng.integers(0, n_outputs, n).astype(np.int32)
    if loss == kernels.LOSS_MSE:
        return rng.normal(size=(n, n_outputs)).astype(dtype)
    return rng.integers(0, 2, (n, n_outputs)).astype(dtype)


def slot_rows(opt):
    """Rows of the slots array an optimizer settings dict needs (``SLOT_LAYOUT``)."""
    return len(kernels.OptimizerConfig(**opt).slot_names)


def init_slots(opt, n_params, dtype):
    """Fresh slots: zeros, except Adagrad's accumulator at Keras' initial value 0.1."""
    slots = np.zeros((slot_rows(opt), n_params), dtype)
    if opt["kind"] == "adagrad":
        slots[0] = 0.1
    return slots


# docs/keras-reference.md 7.6: real Keras 3.15.1 summary() output, stdout captured (76 columns).
KERAS_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ flatten (Flatten)               │ (None, 784)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 100)            │        78,500 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │         1,010 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 79,510 (310.59 KB)
 Trainable params: 79,510 (310.59 KB)
 Non-trainable params: 0 (0.00 B)
"""


def tiny_fashion_mnist(n_train, n_test):
    """A Fashion-MNIST look-alike in ``load_data``'s form: 28x28 uint8 images of faint noise
    whose class (0-9) is two bright rows, ``n_train`` then ``n_test`` of them from one seed."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for image, label in zip(x, y):
            image[2 * label:2 * label + 2] = 255
        return x, y

    return make(n_train), make(n_test)
