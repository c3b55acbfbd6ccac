"""Batch normalization and normalization ops in ``kernels.Network`` against ``reference.Network``
(float64, 1e-10): training (batch statistics, gamma and beta stepped, moving averages updated
after each applied step), frozen batch normalization (moving statistics, as Keras' inference
mode), predict and evaluate with the moving statistics, and the same numbers on any thread count.
"""

import numpy as np
import pytest

from _helpers import init_slots, network_data
from fastdnn import _kernels as kernels
from fastdnn import reference

SCALE_CENTER = kernels.BN_SCALE | kernels.BN_CENTER


def build(rng, n_inputs, layers, dtype=np.float64):
    """Ops, normalizations, trainable flags and a parameter buffer for ``layers``: ``("dense",
    units, activation, use_bias)``, ``("activation", name)``, ``("batchnorm", flags,
    trainable)`` or ``("normalization", invert)``."""
    ops, norms, trainable, values, width = [], [], [], [], n_inputs
    offset = 0
    for layer in layers:
        kind = layer[0]
        norms.append(None)
        trainable.append(True)
        if kind == "dense":
            _, units, activation, use_bias = layer
            values.append(rng.normal(0, 1 / np.sqrt(width), width * units))
            b_off = offset + width * units if use_bias else -1
            if use_bias:
                values.append(rng.normal(0, 0.1, units))
            ops.append((kernels.OP_DENSE, units, kernels.ACTIVATIONS[activation], 0.0, offset,
                        b_off))
            offset += width * units + (units if use_bias else 0)
            width = units
        elif kind == "activation":
            ops.append((kernels.OP_ACTIVATION, width, kernels.ACTIVATIONS[layer[1]], 0.0, -1, -1))
        elif kind == "batchnorm":
            _, flags, trainable[-1] = layer
            n_vectors = 2 + bool(flags & kernels.BN_SCALE) + bool(flags & kernels.BN_CENTER)
            if flags & kernels.BN_SCALE:
                values.append(rng.uniform(0.5, 1.5, width))
            if flags & kernels.BN_CENTER:
                values.append(rng.normal(0, 0.2, width))
            values += [rng.normal(0, 0.3, width), rng.uniform(0.5, 2, width)]
            ops.append((kernels.OP_BATCH_NORMALIZATION, width, flags, 0.0, offset, -1))
            norms[-1] = (0.9, 1e-3)
            offset += n_vectors * width
        else:
            values += [rng.normal(0, 1, width), rng.uniform(0.5, 3, width), [0.0]]
            ops.append((kernels.OP_NORMALIZATION, width, int(layer[1]), 0.0, offset, -1))
            norms[-1] = (0.0, 1e-7)
            offset += 2 * width + 1
    params = np.concatenate(values).astype(dtype)
    assert params.size == offset
    return ops, norms, trainable, params


ARCHITECTURES = {
    # HOML ch. 11: Dense(use_bias=False), BatchNormalization(), Activation("relu")
    "dense_bn_relu": (5, [("dense", 8, "linear", False), ("batchnorm", SCALE_CENTER, True),
                          ("activation", "relu"), ("dense", 4, "softmax", True)],
                      kernels.LOSS_SPARSE_CE),
    "bn_first": (5, [("batchnorm", SCALE_CENTER, True), ("dense", 8, "tanh", True),
                     ("batchnorm", SCALE_CENTER, True), ("dense", 4, "softmax", True)],
                 kernels.LOSS_SPARSE_CE),
    "bn_plain_and_center_only": (5, [("dense", 8, "linear", True), ("batchnorm", 0, True),
                                     ("activation", "elu"), ("dense", 6, "linear", True),
                                     ("batchnorm", kernels.BN_CENTER, True),
                                     ("dense", 2, "linear", True)], kernels.LOSS_MSE),
    "bn_frozen": (5, [("dense", 8, "relu", True), ("batchnorm", SCALE_CENTER, False),
                      ("dense", 4, "softmax", True)], kernels.LOSS_SPARSE_CE),
    "bn_scale_only_last": (5, [("dense", 6, "relu", True),
                               ("dense", 3, "linear", True), ("batchnorm", kernels.BN_SCALE, True)],
                           kernels.LOSS_MSE),
    # HOML ch. 10's regression MLP: Normalization first; and one inside (its gradient)
    "normalization_first": (5, [("normalization", False), ("dense", 8, "relu", True),
                                ("dense", 1, "linear", True)], kernels.LOSS_MSE),
    "normalization_inside": (5, [("dense", 8, "tanh", True), ("normalization", True),
                                 ("dense", 2, "linear", True)], kernels.LOSS_MSE),
}

OPTIMIZERS = {
    "sgd": {"kind": "sgd", "learning_rate": 0.05},
    "adam_clipnorm": {"kind": "adam", "learning_rate": 0.01, "clipnorm": 0.05},
    "nadam_global_clipnorm": {"kind": "nadam", "learning_rate": 0.01, "global_clipnorm": 0.1},
    "adam_decay": {"kind": "adam", "learning_rate": 0.01, "weight_decay": 0.01},
    "rmsprop_momentum": {"kind": "rmsprop", "learning_rate": 0.01, "momentum": 0.9},
}


def run(engine, arch, opt, threads=None, batch=16, n=50, n_inputs=None, seed=3):
    """Train two shuffled epochs (in calls of 2 and 1 batches) on ``engine``; return the
    params, slots, losses, predictions and evaluation."""
    width, layers, loss = ARCHITECTURES[arch] if n_inputs is None else (n_inputs, arch, None)
    loss = kernels.LOSS_SPARSE_CE if loss is None else loss
    rng = np.random.default_rng(seed)
    ops, norms, trainable, params = build(rng, width, layers)
    n_out = ops[-1][1]
    x, y = network_data(rng, loss, n, width, n_out)
    fused = loss == kernels.LOSS_SPARSE_CE
    metric = kernels.METRIC_SPARSE_ACC if fused else kernels.METRIC_NONE
    net = engine.Network(width, ops, params, loss, metric, fused, batch, 7, trainable, None,
                         norms)
    slots, iteration, losses = init_slots(opt, params.size, params.dtype), 0, []
    n_batches = -(-n // batch)
    for epoch in range(2):
        order = rng.permutation(n).astype(np.int64)
        first = 0
        while first < n_batches:
            count = min(2 - epoch, n_batches - first)
            loss_out, correct_out = np.zeros(count), np.zeros(count)
            done, iteration = net.train(x, y, order, batch, first, count, opt, slots, iteration,
                                        loss_out, correct_out)
            assert done == count
            losses.extend(loss_out)
            first += count
    out = np.empty((n, n_out))
    net.predict(x, out)
    return params, slots, np.array(losses), out, net.evaluate(x, y)


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_network_with_normalizations_matches_reference(arch, opt):
    got = run(kernels, arch, OPTIMIZERS[opt])
    want = run(reference, arch, OPTIMIZERS[opt])
    before = build(np.random.default_rng(3), *ARCHITECTURES[arch][:2])[3]
    assert not np.allclose(got[0], before)
    for a, b in zip(got[:4], want[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[4][0], want[4][0], rtol=1e-10)


def test_batch_normalization_moving_statistics_follow_keras_update():
    """One batch, momentum 0.9: moving = moving·0.9 + batch statistic·0.1 (biased variance);
    frozen batch normalization and normalization weights do not move."""
    rng = np.random.default_rng(0)
    layers = [("normalization", False), ("dense", 4, "linear", True),
              ("batchnorm", SCALE_CENTER, True), ("batchnorm", SCALE_CENTER, False),
              ("dense", 2, "linear", True)]
    ops, norms, trainable, params = build(rng, 3, layers)
    before = params.copy()
    x, y = network_data(rng, kernels.LOSS_MSE, 16, 3, 2)
    net = kernels.Network(3, ops, params, kernels.LOSS_MSE, kernels.METRIC_NONE, False, 16, 0,
                          trainable, None, norms)
    opt = {"kind": "sgd", "learning_rate": 0.1}
    net.train(x, y, None, 16, 0, 1, opt, init_slots(opt, params.size, params.dtype), 0,
              np.zeros(1), np.zeros(1))
    mean, var = before[:3], before[3:6]
    z = (x - mean) / np.sqrt(var) @ before[7:19].reshape(3, 4) + before[19:23]
    bn = ops[2][4]
    np.testing.assert_allclose(params[bn + 8:bn + 12], before[bn + 8:bn + 12] * 0.9
                               + z.mean(axis=0) * 0.1, rtol=1e-12)
    np.testing.assert_allclose(params[bn + 12:bn + 16], before[bn + 12:bn + 16] * 0.9
                               + z.var(axis=0) * 0.1, rtol=1e-12)
    assert not np.allclose(params[bn:bn + 8], before[bn:bn + 8])  # gamma and beta stepped
    frozen = ops[3][4]
    np.testing.assert_array_equal(params[frozen:frozen + 16], before[frozen:frozen + 16])
    np.testing.assert_array_equal(params[:7], before[:7])


def test_non_finite_step_leaves_moving_statistics_unchanged():
    rng = np.random.default_rng(1)
    ops, norms, trainable, params = build(rng, 3, [("dense", 4, "linear", True),
                                                   ("batchnorm", SCALE_CENTER, True),
                                                   ("dense", 1, "linear", True)])
    before = params.copy()
    x, y = network_data(rng, kernels.LOSS_MSE, 8, 3, 1)
    x[3, 0] = 1e300  # the batch's variance overflows: inf loss, no step, no moving update
    net = kernels.Network(3, ops, params, kernels.LOSS_MSE, kernels.METRIC_NONE, False, 8, 0,
                          trainable, None, norms)
    opt = {"kind": "adam", "learning_rate": 0.1}
    done, _ = net.train(x, y, None, 8, 0, 1, opt, init_slots(opt, params.size, params.dtype), 0,
                        np.zeros(1), np.zeros(1))
    assert done == 0
    np.testing.assert_array_equal(params, before)


def test_cut_layers_with_batch_normalization_are_bit_identical_on_any_thread_count(
        kernel_threads):
    layers = [("dense", 256, "linear", False), ("batchnorm", SCALE_CENTER, True),
              ("activation", "relu"), ("dense", 128, "linear", True),
              ("batchnorm", kernels.BN_CENTER, True), ("activation", "tanh"),
              ("dense", 10, "softmax", True)]
    results = []
    for threads in (1, 2, 3):
        kernel_threads(threads)
        results.append(run(kernels, layers, {"kind": "adam", "learning_rate": 0.01}, batch=64,
                           n=330, n_inputs=200))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


BAD = {
    "no_entry": (lambda ops, norms: (ops, None), "normalizations entry"),
    "epsilon_zero": (lambda ops, norms: (ops, [None, (0.9, 0.0), None]), "epsilon"),
    "momentum_2": (lambda ops, norms: (ops, [None, (2.0, 1e-3), None]), "momentum"),
    "flags_8": (lambda ops, norms: ([ops[0], (ops[1][0], 4, 8) + ops[1][3:], ops[2]], norms),
                "flags"),
    "short_span": (lambda ops, norms: ([ops[0], (ops[1][0], 4, kernels.BN_SCALE) + ops[1][3:],
                                        ops[2]], norms), "cover params"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_network_refuses_bad_normalization_ops(case):
    ops, norms, _, params = build(np.random.default_rng(0), 3, [
        ("dense", 4, "linear", True), ("batchnorm", SCALE_CENTER, True),
        ("dense", 1, "linear", True)])
    change, message = BAD[case]
    ops, norms = change(ops, norms)
    with pytest.raises(ValueError, match=message):
        kernels.Network(3, ops, params, kernels.LOSS_MSE, kernels.METRIC_NONE, False, 8, 0,
                        None, None, norms)
