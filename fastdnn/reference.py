"""The kernels' maths in plain NumPy: the oracle for tests, the baseline for benchmarks.

Every function here has the name and signature of its twin in ``fastdnn._kernels`` and writes
into the same output buffers, so the two are interchangeable (the model API takes either as its
engine). The code is written to be read, not to be fast; it checks nothing.
"""

import math

import numpy as np

from fastdnn._kernels import (ACTIVATIONS, ELU, EXPONENTIAL, GELU, HARD_SIGMOID, LEAKY_RELU,
                              LINEAR, LOSS_BCE, LOSS_CE, LOSS_MSE, LOSS_SPARSE_CE,
                              METRIC_BINARY_ACC, METRIC_MAE, METRIC_MSE, METRIC_NONE,
                              METRIC_PRECISION, METRIC_SPARSE_ACC, METRIC_SPARSE_TOP_K,
                              OP_ACTIVATION, OP_BATCH_NORMALIZATION, OP_DENSE, OP_NORMALIZATION,
                              BN_CENTER, BN_SCALE, RELU, RELU6, SELU, SIGMOID, SILU, SOFTMAX,
                              SOFTPLUS, SOFTSIGN, TANH, OptimizerConfig)
from fastdnn._plan import Op

__all__ = ["activation_forward", "activation_backward", "dense_forward", "dense_backward",
           "sparse_softmax_cross_entropy", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
           "mean_squared_error", "count_nonfinite", "metric_sums", "count_correct",
           "dropout_forward", "batch_normalization_forward", "batch_normalization_backward",
           "normalization_forward", "sgd_update", "adagrad_update", "rmsprop_update",
           "adam_update", "learning_rate_at", "nadam_u_product", "nadam_update", "adamax_update", "clip_by_norm",
           "clip_by_global_norm", "Network"]

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _code(activation):
    return ACTIVATIONS[activation] if isinstance(activation, str) else activation


# --- activations

def _sigmoid(z):
    """1 / (1 + exp(-z)) without overflow: exp is only taken of non-positive numbers."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z, axis=-1):
    """exp(z - max) / Σ exp(z - max) along ``axis``: the one softmax in NumPy."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _erf(x):
    """The error function, elementwise (NumPy has none; math.erf is exact to double)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(np.result_type(x, np.float32))


def _apply(z, act, slope=0.2):
    """act(z); ``slope`` is leaky_relu's negative slope."""
    f = z.dtype.type
    if act == RELU:
        return np.maximum(z, 0)
    if act == SIGMOID:
        return _sigmoid(z)
    if act == TANH:
        return np.tanh(z)
    if act == SOFTMAX:
        return _softmax(z)
    if act in (ELU, SELU):
        scale, alpha = (f(1), f(1)) if act == ELU else (f(SELU_SCALE), f(SELU_ALPHA))
        return np.where(z > 0, scale * z, scale * alpha * np.expm1(np.minimum(z, 0)))
    if act == GELU:
        return f(0.5) * z * (1 + _erf(z / f(math.sqrt(2))))
    if act == SILU:
        return z * _sigmoid(z)
    if act == SOFTPLUS:
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
    if act == SOFTSIGN:
        return z / (1 + np.abs(z))
    if act == LEAKY_RELU:
        return np.where(z < 0, f(slope) * z, z)
    if act == RELU6:
        return np.clip(z, 0, 6)
    if act == HARD_SIGMOID:
        return np.clip(z + 3, 0, 6) / 6
    if act == EXPONENTIAL:
        return np.exp(z)
    return z


def _derive(a, g, act, z=None, slope=0.2):
    """dL/dZ from the activation's output a and dL/dA (gelu and silu: from its input z)."""
    f = a.dtype.type
    if act == RELU:
        return np.where(a > 0, g, 0)
    if act == SIGMOID:
        return g * a * (1 - a)
    if act == TANH:
        return g * (1 - a * a)
    if act == SOFTMAX:
        return a * (g - (g * a).sum(axis=1, keepdims=True))
    if act == ELU:
        return np.where(a > 0, g, g * (a + 1))
    if act == SELU:
        return np.where(a > 0, g * f(SELU_SCALE), g * (a + f(SELU_SCALE * SELU_ALPHA)))
    if act == GELU:
        cdf = f(0.5) * (1 + _erf(z / f(math.sqrt(2))))
        return g * (cdf + z * np.exp(-z * z / 2) / f(math.sqrt(2 * math.pi)))
    if act == SILU:
        s = _sigmoid(z)
        return g * s * (1 + z * (1 - s))
    if act == SOFTPLUS:
        return -g * np.expm1(-a)
    if act == SOFTSIGN:
        return g * (1 - np.abs(a)) ** 2
    if act == LEAKY_RELU:
        return np.where(a > 0, g, g * f(slope))
    if act == RELU6:
        return np.where((a > 0) & (a < 6), g, 0)
    if act == HARD_SIGMOID:
        return np.where((a > 0) & (a < 1), g / 6, 0)
    if act == EXPONENTIAL:
        return g * a
    return g


def activation_forward(z, out, activation, negative_slope=0.2):
    """``out = activation(z)`` (see ``fastdnn._kernels.activation_forward``)."""
    out[...] = _apply(z, _code(activation), negative_slope)


def activation_backward(a, grad, activation, z=None, negative_slope=0.2):
    """``grad`` := dL/dZ from dL/dA (see ``fastdnn._kernels.activation_backward``)."""
    grad[...] = _derive(a, grad, _code(activation), z, negative_slope)


# --- dense layer

def dense_forward(x, w, b, out, activation="linear"):
    """``out = activation(x @ w + b)`` (see ``fastdnn._kernels.dense_forward``)."""
    z = x @ w
    if b is not None:
        z = z + b
    out[...] = _apply(z, _code(activation))


def dense_backward(x, w, a, grad, dw, db, dx=None, activation="linear"):
    """Gradients of a dense layer (see ``fastdnn._kernels.dense_backward``)."""
    grad[...] = _derive(a, grad, _code(activation))
    dw[...] = x.T @ grad
    if db is not None:
        db[...] = grad.sum(axis=0)
    if dx is not None:
        dx[...] = grad @ w.T


# --- losses

def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _sparse_ce(z, labels, y, n):
    logp = _log_softmax(z)
    onehot = np.zeros_like(z)
    onehot[np.arange(len(labels)), labels] = 1
    return -logp[np.arange(len(labels)), labels].sum(), (np.exp(logp) - onehot) / n


def _ce(z, labels, y, n):
    logp = _log_softmax(z)
    per_sample = -(np.where(y != 0, y * logp, 0)).sum(axis=1)
    return per_sample.sum(), (np.exp(logp) * y.sum(axis=1, keepdims=True) - y) / n


def _bce(z, labels, y, n):
    per_element = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    return per_element.mean(axis=1).sum(), (_sigmoid(z) - y) / (n * z.shape[1])


def _mse(p, labels, y, n):
    d = p - y
    return (d * d).mean(axis=1).sum(), 2 * d / (n * p.shape[1])


_LOSSES = {LOSS_SPARSE_CE: _sparse_ce, LOSS_CE: _ce, LOSS_BCE: _bce, LOSS_MSE: _mse}


def _loss_entry(kind, out, labels, targets, grad):
    n = out.shape[0]
    total, g = _LOSSES[kind](out.astype(np.float64), labels, targets, n)
    if grad is not None:
        grad[...] = g
    return float(total) / n


def sparse_softmax_cross_entropy(logits, labels, grad=None):
    """Mean of ``-log softmax(logits)[label]``; grad ``(softmax - onehot) / n``."""
    return _loss_entry(LOSS_SPARSE_CE, logits, labels, None, grad)


def softmax_cross_entropy(logits, targets, grad=None):
    """Mean of ``-Σ targets · log softmax(logits)``; grad ``(softmax·Σtargets - targets) / n``."""
    return _loss_entry(LOSS_CE, logits, None, targets, grad)


def sigmoid_binary_cross_entropy(logits, targets, grad=None):
    """Mean binary cross-entropy of ``sigmoid(logits)``, from logits; grad ``(σ - y) / (n·c)``."""
    return _loss_entry(LOSS_BCE, logits, None, targets, grad)


def mean_squared_error(predictions, targets, grad=None):
    """Mean over samples of the mean over the last axis of ``(p - y)²``; grad ``2(p - y) / (n·c)``."""
    return _loss_entry(LOSS_MSE, predictions, None, targets, grad)


def count_nonfinite(a):
    """Number of NaN or infinite elements (see ``fastdnn._kernels.count_nonfinite``)."""
    return int(a.size - np.count_nonzero(np.isfinite(a)))


def metric_sums(metric, k, outputs, scores, labels, targets, weights=None):
    """One metric's two sums over a batch, each sample counting ``weights[i]`` times (None: once;
    see ``fastdnn._kernels._metric_sums``): ``outputs`` are the model's outputs, ``scores`` what
    top-k ranks."""
    w = np.ones(outputs.shape[0]) if weights is None else np.asarray(weights, np.float64)
    if metric == METRIC_BINARY_ACC and targets is None:  # one output: the label is its target
        targets = labels.reshape(-1, 1).astype(outputs.dtype)
    if metric <= METRIC_BINARY_ACC:
        sparse = metric == METRIC_SPARSE_ACC
        hits = _hits(outputs, labels if sparse else None, None if sparse else targets,
                     binary=metric == METRIC_BINARY_ACC)
        return float(w @ hits), float(w.sum())
    if metric == METRIC_SPARSE_TOP_K:
        label_scores = scores[np.arange(len(labels)), labels][:, None]
        return float(w @ ((scores > label_scores).sum(axis=1) < k)), float(w.sum())
    if metric in (METRIC_MAE, METRIC_MSE):
        d = targets - outputs
        per_element = np.abs(d) if metric == METRIC_MAE else d * d
        return float(w @ per_element.mean(axis=1, dtype=np.float64)), float(w.sum())
    predicted, actual = outputs > 0.5, targets > 0.5
    return float(w @ (predicted & actual).sum(axis=1)), float(
        w @ (predicted if metric == METRIC_PRECISION else actual).sum(axis=1))


def _hits(scores, labels=None, targets=None, binary=False):
    """Each sample's hit (binary: the fraction of its row's elements that hit)."""
    if labels is not None:
        return scores.argmax(axis=1) == labels
    if binary:
        return ((scores > 0.5) == targets).mean(axis=1)
    return scores.argmax(axis=1) == targets.argmax(axis=1)


def count_correct(scores, labels=None, targets=None, binary=False):
    """Number of correct samples (see ``fastdnn._kernels.count_correct``)."""
    return float(_hits(scores, labels, targets, binary).sum())


# --- dropout: the same counter-based generator as the kernels

def _uniform(seed, counter, size):
    """splitmix64 of ``seed + (counter + i)·golden``, top 53 bits as a float in [0, 1)."""
    with np.errstate(over="ignore"):
        i = np.arange(size, dtype=np.uint64) + np.uint64(counter)
        z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53


def dropout_forward(x, out, mask, rate, seed, counter):
    """Inverted dropout with the kernels' generator (see ``fastdnn._kernels.dropout_forward``)."""
    scale = 1 / (1 - rate) if rate < 1 else 0
    keep = _uniform(seed, counter, x.size).reshape(x.shape) >= rate
    mask[...] = np.where(keep, scale, 0)
    out[...] = x * mask



# --- per-feature normalization (Keras 3's BatchNormalization and Normalization)

def _bn_scale_shift(mean, var, gamma, beta, epsilon):
    """Keras' ``ops.batch_normalization`` coefficients: out = x·scale + shift."""
    f = mean.dtype.type
    istd = 1 / np.sqrt(var + f(epsilon))
    scale = istd * gamma if gamma is not None else istd
    shift = -mean * scale + (beta if beta is not None else 0)
    return istd, scale, shift


def batch_normalization_forward(x, gamma, beta, moving_mean, moving_variance, out,
                                momentum=0.99, epsilon=1e-3, training=False):
    """Batch normalization over the last axis (see ``fastdnn._kernels``' twin)."""
    if training:
        mean, var = x.mean(axis=0), x.var(axis=0)
        f = x.dtype.type
        moving_mean[...] = moving_mean * f(momentum) + mean * f(1 - momentum)
        moving_variance[...] = moving_variance * f(momentum) + var * f(1 - momentum)
    else:
        mean, var = moving_mean.copy(), moving_variance.copy()
    _, scale, shift = _bn_scale_shift(mean, var, gamma, beta, epsilon)
    out[...] = x * scale + shift


def batch_normalization_backward(x, gamma, grad, dgamma, dbeta, epsilon=1e-3):
    """The training-mode backward pass (see ``fastdnn._kernels``' twin): the gradient through
    the batch's mean and biased variance."""
    n = x.shape[0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    istd, scale, _ = _bn_scale_shift(mean, var, gamma, None, epsilon)
    xhat = (x - mean) * istd
    sum_g, sum_gx = grad.sum(axis=0), (grad * xhat).sum(axis=0)
    if dgamma is not None:
        dgamma[...] = sum_gx
    if dbeta is not None:
        dbeta[...] = sum_g
    grad[...] = scale / n * (n * grad - sum_g - xhat * sum_gx)


def _normalization_divisor(variance, epsilon):
    return np.maximum(np.sqrt(variance), variance.dtype.type(epsilon))


def normalization_forward(x, mean, variance, out, invert=False, epsilon=1e-7):
    """Keras' Normalization layer (see ``fastdnn._kernels``' twin)."""
    divisor = _normalization_divisor(variance, epsilon)
    out[...] = mean + x * divisor if invert else (x - mean) / divisor

# --- optimizers (Keras 3 rules; scalars in the parameter precision, as Keras computes them)

def sgd_update(params, grads, learning_rate=0.01, momentum=0.0, nesterov=False, velocity=None):
    """SGD step in place (see ``fastdnn._kernels.sgd_update``)."""
    lr, mom = params.dtype.type(learning_rate), params.dtype.type(momentum)
    if velocity is None:
        params -= lr * grads
        return
    velocity[...] = mom * velocity - lr * grads
    if nesterov:
        params += mom * velocity - lr * grads
    else:
        params += velocity


def adagrad_update(params, grads, accumulator, learning_rate=0.001, epsilon=1e-7):
    """Adagrad step in place (see ``fastdnn._kernels.adagrad_update``)."""
    f = params.dtype.type
    accumulator += grads * grads
    params -= f(learning_rate) * grads / np.sqrt(accumulator + f(epsilon))


def rmsprop_update(params, grads, velocity, learning_rate=0.001, rho=0.9, momentum=0.0,
                   epsilon=1e-7, centered=False, momentum_buffer=None, average_gradient=None):
    """RMSprop step in place (see ``fastdnn._kernels.rmsprop_update``)."""
    f = params.dtype.type
    velocity[...] = f(rho) * velocity + f(1 - rho) * (grads * grads)
    if centered:
        average_gradient[...] = f(rho) * average_gradient + f(1 - rho) * grads
        denominator = velocity - average_gradient * average_gradient + f(epsilon)
    else:
        denominator = velocity + f(epsilon)
    increment = f(learning_rate) * grads / np.sqrt(denominator)
    if momentum_buffer is not None:
        momentum_buffer[...] = f(momentum) * momentum_buffer + increment
        params -= momentum_buffer
    else:
        params -= increment


def adam_update(params, grads, m, v, iteration, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                epsilon=1e-7, amsgrad=False, v_hat=None):
    """Adam step in place (see ``fastdnn._kernels.adam_update``)."""
    f = params.dtype.type
    t = f(iteration + 1)
    alpha = f(learning_rate) * np.sqrt(f(1) - f(beta_2) ** t) / (f(1) - f(beta_1) ** t)
    m += (grads - m) * f(1 - beta_1)
    v += (grads * grads - v) * f(1 - beta_2)
    if amsgrad:
        np.maximum(v_hat, v, out=v_hat)
    params -= (m * alpha) / (np.sqrt(v_hat if amsgrad else v) + f(epsilon))


def learning_rate_at(schedule, step):
    """The learning rate of step ``step`` under a schedule as the kernels read it
    (``fastdnn.schedules``' ``kernel_spec()``: a kind and its parameters), in float64."""
    kind = schedule["kind"]
    if kind == "piecewise":
        for boundary, value in zip(schedule["boundaries"], schedule["values"]):
            if step <= boundary:
                return float(value)
        return float(schedule["values"][-1])
    s = [float(v) for v in schedule["params"]]
    if kind in ("exponential", "inverse_time"):
        initial, decay_steps, rate, staircase = s
        p = np.floor(step / decay_steps) if staircase else step / decay_steps
        return initial * rate**p if kind == "exponential" else initial / (1 + rate * p)
    if kind == "polynomial":
        initial, decay_steps, end, power, cycle = s
        if cycle:
            decay_steps *= 1.0 if step == 0 else np.ceil(step / decay_steps)
        else:
            step = min(step, decay_steps)
        return (initial - end) * (1 - step / decay_steps) ** power + end
    if kind == "cosine":
        initial, decay_steps, alpha, target, warmup_steps, warm = s
        if warm:
            step = min(step, decay_steps + warmup_steps)
            if step < warmup_steps:
                return (target - initial) * (step / warmup_steps) + initial
            initial, step = target, step - warmup_steps
        else:
            step = min(step, decay_steps)
        cosine = 0.5 * (1 + np.cos(np.pi * step / decay_steps))
        return initial * ((1 - alpha) * cosine + alpha)
    raise ValueError(f"unknown schedule kind {kind!r}")


def nadam_u_product(iteration, beta_1=0.9, dtype=np.float32):
    """Nadam's product of momentum caches after ``iteration`` steps (see
    ``fastdnn._kernels.nadam_u_product``)."""
    f = np.dtype(dtype).type
    u = f(1)
    for k in range(iteration):
        if u < f(2.0**-60):  # from here on 1 - u is 1: no step changes
            break
        u = u * f(beta_1) * (f(1) - f(0.5) * f(0.96) ** f(k + 1))
    return float(u)


def nadam_update(params, grads, m, v, iteration, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7):
    """Nadam step in place (see ``fastdnn._kernels.nadam_update``)."""
    f = params.dtype.type
    cache = lambda step: f(beta_1) * (f(1) - f(0.5) * f(0.96) ** f(step))  # noqa: E731
    u_t, u_next = cache(iteration + 1), cache(iteration + 2)
    product = f(nadam_u_product(iteration + 1, beta_1, params.dtype))
    m += (grads - m) * (f(1) - f(beta_1))
    v += (grads * grads - v) * (f(1) - f(beta_2))
    m_hat = u_next * m / (f(1) - product * u_next) + (f(1) - u_t) * grads / (f(1) - product)
    v_hat = v / (f(1) - f(beta_2) ** f(iteration + 1))
    params -= m_hat * f(learning_rate) / (np.sqrt(v_hat) + f(epsilon))


def adamax_update(params, grads, m, u, iteration, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                  epsilon=1e-7):
    """Adamax step in place (see ``fastdnn._kernels.adamax_update``)."""
    f = params.dtype.type
    m += (grads - m) * f(1 - beta_1)
    np.maximum(f(beta_2) * u, np.abs(grads), out=u)
    params -= f(learning_rate) * m / ((f(1) - f(beta_1) ** f(iteration + 1)) * (u + f(epsilon)))


def clip_by_norm(grads, clipnorm):
    """Keras 3's ``clipnorm`` on one variable's gradient, in place: ``g·c / max(‖g‖, c)``."""
    f = grads.dtype.type
    square = f(np.square(grads, dtype=np.float64).sum())
    norm = np.sqrt(square) if square > 0 else square
    grads[...] = grads * f(clipnorm) / np.maximum(norm, f(clipnorm))


def clip_by_global_norm(grads, clipnorm):
    """Keras 3's ``global_clipnorm`` on a list of gradients, in place: each times
    ``c·min(1/‖all‖, 1/c)``."""
    f = grads[0].dtype.type
    norm = np.sqrt(f(sum(np.square(g, dtype=np.float64).sum() for g in grads)))
    with np.errstate(divide="ignore"):
        scale = f(clipnorm) * np.minimum(f(1) / norm, f(1) / f(clipnorm)) + (norm - norm)
    for g in grads:
        g *= scale


def _apply_update(opt, params, grads, slots, iteration, variables):
    """One step of the optimizer described by ``opt`` (an ``OptimizerConfig``; see
    Network.train) on the trainable ``variables`` (slices of params: kernels and biases)."""
    f = params.dtype.type
    lr = opt.learning_rate
    if opt.schedule is not None:
        lr = learning_rate_at(opt.schedule, float(iteration))
    if opt.clipnorm:
        for span in variables:
            clip_by_norm(grads[span], opt.clipnorm)
    elif opt.global_clipnorm:
        clip_by_global_norm([grads[span] for span in variables], opt.global_clipnorm)
    elif opt.clipvalue:
        np.clip(grads, -f(opt.clipvalue), f(opt.clipvalue), out=grads)
    if opt.weight_decay:
        params -= params * f(opt.weight_decay) * f(lr)
    slot = dict(zip(opt.slot_names, slots))
    moments = {"beta_1": opt.beta_1, "beta_2": opt.beta_2, "epsilon": opt.epsilon}
    if opt.kind == "sgd":
        sgd_update(params, grads, lr, opt.momentum, opt.nesterov, slot.get("momentum"))
    elif opt.kind == "adagrad":
        adagrad_update(params, grads, slot["accumulator"], lr, opt.epsilon)
    elif opt.kind == "rmsprop":
        rmsprop_update(params, grads, slot["velocity"], lr, opt.rho, opt.momentum, opt.epsilon,
                       opt.centered, slot.get("momentum"), slot.get("average_gradient"))
    elif opt.kind == "adam":
        adam_update(params, grads, slot["momentum"], slot["velocity"], iteration, lr,
                    amsgrad=opt.amsgrad, v_hat=slot.get("velocity_hat"), **moments)
    elif opt.kind == "nadam":
        nadam_update(params, grads, slot["momentum"], slot["velocity"], iteration, lr, **moments)
    else:
        adamax_update(params, grads, slot["momentum"], slot["norm"], iteration, lr, **moments)


# --- the network driver, step by step

class Network:
    """The NumPy twin of ``fastdnn._kernels.Network``: same constructor, same methods."""

    def __init__(self, n_inputs, ops, params, loss, metric, fused, capacity, seed=0,
                 trainable=None, penalties=None, normalizations=None, activities=None):
        self.n_inputs = n_inputs
        self.ops = [Op(*op) for op in ops]
        self.trainable = [True] * len(self.ops) if trainable is None else list(trainable)
        self.penalties = [None] * len(self.ops) if penalties is None else list(penalties)
        self.norms = [None] * len(self.ops) if normalizations is None else list(normalizations)
        self.activities = [None] * len(self.ops) if activities is None else list(activities)
        self.params = params
        self.grads = np.zeros_like(params)
        self.dtype = params.dtype
        self.loss, self.metric, self.fused = loss, metric, fused
        self._one_metric = isinstance(metric, (int, np.integer))
        if self._one_metric:
            self.metrics = [] if metric == METRIC_NONE else [(metric, 0, False)]
        else:
            self.metrics = [tuple(spec) + (False,) * (3 - len(spec)) for spec in metric]
        self.n_metrics = len(self.metrics)
        self.n_outputs = self.ops[-1].units
        self.capacity = capacity
        self.seed, self.counter = seed, 0

    def reserve(self, capacity):
        """Grow the batch capacity (nothing to allocate here)."""
        self.capacity = max(self.capacity, capacity)

    def _weights(self, buffer, i, width_in):
        op = self.ops[i]
        w = buffer[op.kernel_offset:op.kernel_offset + width_in * op.units].reshape(
            width_in, op.units)
        b = buffer[op.bias_offset:op.bias_offset + op.units] if op.bias_offset >= 0 else None
        return w, b

    def _bn_weights(self, buffer, i):
        """Views of batch-normalization op i's gamma, beta (None when absent), moving mean and
        moving variance in ``buffer``."""
        op = self.ops[i]
        units, offset, views = op.units, op.kernel_offset, []
        for present in (op.activation & BN_SCALE, op.activation & BN_CENTER, True, True):
            views.append(buffer[offset:offset + units] if present else None)
            offset += units if present else 0
        return views

    def _act(self, i):
        return LINEAR if self.fused and i == len(self.ops) - 1 else self.ops[i].activation

    def _widths(self):
        """Each op's input width."""
        return [self.n_inputs] + [op.units for op in self.ops[:-1]]

    def _forward(self, x, training):
        """Return the input and output of every op (the last output is logits when fused)."""
        inputs, outputs, masks = [], [], []
        cur, width = x, self.n_inputs
        self._stats = {}
        for i, op in enumerate(self.ops):
            inputs.append(cur)
            if op.kind == OP_DENSE:
                w, b = self._weights(self.params, i, width)
                z = cur @ w + (b if b is not None else 0)
                cur = _apply(z, self._act(i))
            elif op.kind == OP_ACTIVATION:
                cur = _apply(cur, self._act(i), op.param)
            elif op.kind == OP_BATCH_NORMALIZATION:
                gamma, beta, moving_mean, moving_var = self._bn_weights(self.params, i)
                batch = training and self.trainable[i]
                mean, var = (cur.mean(axis=0), cur.var(axis=0)) if batch else (moving_mean,
                                                                               moving_var)
                self._stats[i] = (mean, var) + _bn_scale_shift(mean, var, gamma, beta,
                                                               self.norms[i][1])
                cur = cur * self._stats[i][3] + self._stats[i][4]
            elif op.kind == OP_NORMALIZATION:
                start, units = op.kernel_offset, op.units
                mean, var = self.params[start:start + units], self.params[
                    start + units:start + 2 * units]
                self._stats[i] = _normalization_divisor(var, self.norms[i][1])
                out = np.empty_like(cur)
                normalization_forward(cur, mean, var, out, op.activation, self.norms[i][1])
                cur = out
            elif training:
                mask = np.empty_like(cur)
                out = np.empty_like(cur)
                dropout_forward(cur, out, mask, op.param, self.seed, self.counter)
                self.counter += cur.size
                masks.append(mask)
                cur = out
            outputs.append(cur)
            width = op.units
        return inputs, outputs, masks

    def _loss(self, out, labels, targets, weights=None):
        """(Σ_i w_i·loss_i, gradient with row i scaled by w_i / n); no weights: all 1."""
        n = out.shape[0]
        if weights is None:
            return _LOSSES[self.loss](out, labels, targets, n)
        rows = [_LOSSES[self.loss](out[i:i + 1], None if labels is None else labels[i:i + 1],
                                   None if targets is None else targets[i:i + 1], n)
                for i in range(n)]
        total = sum(w * loss for w, (loss, _) in zip(weights, rows))
        return total, np.concatenate([w * g for w, (_, g) in zip(weights, rows)])

    def _metric_sums(self, out, labels, targets, weights=None):
        """Every metric's two sums, (n_metrics, 2), the weighted ones' by ``weights``."""
        outputs = _apply(out, self.ops[-1].activation) if self.fused else out
        return np.array([metric_sums(code, k, outputs, out, labels, targets,
                                     weights if weighted else None)
                         for code, k, weighted in self.metrics]).reshape(-1, 2)

    def _penalized(self):
        """(slice, l1, l2) of every trainable dense op's kernel and bias with a penalty."""
        spans = []
        for op, width, flag, penalty in zip(self.ops, self._widths(), self.trainable,
                                            self.penalties):
            if op.kind == OP_DENSE and flag and penalty is not None:
                kernel, bias = self._dense_spans(op, width)
                spans.append((kernel, penalty[0], penalty[1]))
                if bias is not None:
                    spans.append((bias, penalty[2], penalty[3]))
        return spans

    @staticmethod
    def _dense_spans(op, width):
        """A dense op's kernel and bias (None without) as slices of the parameter buffer."""
        kernel = slice(op.kernel_offset, op.kernel_offset + width * op.units)
        bias = slice(op.bias_offset, op.bias_offset + op.units) if op.bias_offset >= 0 else None
        return kernel, bias

    def _penalty(self):
        """Keras' regularization loss: Σ l1·Σ|w| + l2·Σw² over the penalized weights."""
        return sum(l1 * np.abs(self.params[s]).sum(dtype=np.float64)
                   + l2 * np.square(self.params[s], dtype=np.float64).sum()
                   for s, l1, l2 in self._penalized())

    def _activity_penalty(self, outputs):
        """Keras' activity penalties times the batch size: Σ l1·Σ|a| + l2·Σa² over the ops'
        outputs a."""
        return sum(l1 * np.abs(a).sum(dtype=np.float64) + l2 * np.square(a, dtype=np.float64).sum()
                   for a, (l1, l2) in ((outputs[i], self.activities[i])
                                       for i in range(len(self.ops))
                                       if self.activities[i] is not None))

    def _activity_gradient(self, i, a, g):
        """g plus the gradient of op i's activity penalty divided by the batch size."""
        if self.activities[i] is None:
            return g
        f, n = a.dtype.type, a.shape[0]
        l1, l2 = self.activities[i]
        return g + (f(2 * l2 / n) * a + f(l1 / n) * np.sign(a))

    def _spans(self, trainable):
        """The variables (slices of the parameter buffer) that take a step: trainable dense
        ops' kernels and biases, trainable batch normalizations' gamma and beta; or, with
        trainable False, all the others (frozen layers' weights, moving statistics, adapted
        means and variances)."""
        spans = []
        for i, (op, width, flag) in enumerate(zip(self.ops, self._widths(), self.trainable)):
            if op.kind == OP_DENSE and bool(flag) == trainable:
                spans += [span for span in self._dense_spans(op, width) if span is not None]
            elif op.kind == OP_NORMALIZATION and not trainable:
                spans.append(slice(op.kernel_offset, op.kernel_offset + 2 * op.units + 1))
            elif op.kind == OP_BATCH_NORMALIZATION:
                weights = [w for w in self._bn_weights(np.arange(self.params.size), i)
                           if w is not None]
                stepped = weights[:-2] if flag else []
                spans += [slice(w[0], w[-1] + 1) for w in weights
                          if any(w is v for v in stepped) == trainable]
        return spans

    def _backward(self, inputs, outputs, masks, g):
        widths = self._widths()
        stepped = [i for i, op in enumerate(self.ops)
                   if op.kind in (OP_DENSE, OP_BATCH_NORMALIZATION) and self.trainable[i]]
        first_dense = stepped[0] if stepped else len(self.ops)
        for i in range(len(self.ops) - 1, first_dense - 1, -1):
            kind = self.ops[i].kind
            g = self._activity_gradient(i, outputs[i], g)
            if kind == OP_DENSE:
                g = _derive(outputs[i], g, self._act(i))
                w, _ = self._weights(self.params, i, widths[i])
                dw, db = self._weights(self.grads, i, widths[i])
                dw[...] = inputs[i].T @ g
                if db is not None:
                    db[...] = g.sum(axis=0)
                g = g @ w.T
            elif kind == OP_ACTIVATION:
                g = _derive(outputs[i], g, self._act(i), inputs[i], self.ops[i].param)
            elif kind == OP_BATCH_NORMALIZATION and self.trainable[i]:
                gamma, beta = self._bn_weights(self.params, i)[:2]
                dgamma, dbeta = self._bn_weights(self.grads, i)[:2]
                g = g.copy()
                batch_normalization_backward(inputs[i], gamma, g, dgamma, dbeta,
                                             self.norms[i][1])
            elif kind == OP_BATCH_NORMALIZATION:
                g = g * self._stats[i][3]
            elif kind == OP_NORMALIZATION:
                g = g * self._stats[i] if self.ops[i].activation else g / self._stats[i]
            else:
                g = g * masks.pop()

    def _update_moving_statistics(self):
        """Each training batch normalization's moving averages of the last batch's statistics."""
        for i, stats in self._stats.items():
            if self.ops[i].kind == OP_BATCH_NORMALIZATION and self.trainable[i]:
                f, momentum = self.dtype.type, self.norms[i][0]
                for moving, batch in zip(self._bn_weights(self.params, i)[2:], stats[:2]):
                    moving[...] = moving * f(momentum) + batch * f(1 - momentum)

    def train(self, x, y, order, batch_size, first, count, opt, slots, iteration, loss_out,
              correct_out, sample_weight=None):
        """Train ``count`` batches from batch ``first`` (see ``fastdnn._kernels.Network.train``)."""
        n = x.shape[0]
        sparse = self.loss == LOSS_SPARSE_CE
        counter = iteration if isinstance(iteration, np.ndarray) else np.array([iteration])
        if isinstance(opt, dict):
            opt = OptimizerConfig(**opt)
        for b in range(count):
            rows = np.arange((first + b) * batch_size, min(n, (first + b + 1) * batch_size))
            if order is not None:
                rows = order[rows]
            xb = x[rows]
            labels, targets = (y[rows], None) if sparse else (None, y[rows])
            weights = None if sample_weight is None else sample_weight[rows]
            inputs, outputs, masks = self._forward(xb, training=True)
            total, g = self._loss(outputs[-1], labels, targets, weights)
            total += len(rows) * self._penalty() + self._activity_penalty(outputs)
            loss_out[b] = total
            sums = self._metric_sums(outputs[-1], labels, targets, weights)
            if self._one_metric:
                correct_out[b] = sums[0, 0] if self.n_metrics else 0.0
            else:
                correct_out[b] = sums
            if not np.isfinite(total):
                return b, int(counter[0])
            kept = self.params.copy(), slots.copy()
            self._backward(inputs, outputs, masks, g.astype(self.dtype))
            f = self.dtype.type
            for span, l1, l2 in self._penalized():
                w = self.params[span]
                self.grads[span] += f(2 * l2) * w + f(l1) * np.sign(w)
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                _apply_update(opt, self.params, self.grads, slots, int(counter[0]),
                              self._spans(True))
            for span in self._spans(False):
                self.params[span], slots[:, span] = kept[0][span], kept[1][:, span]
            self._update_moving_statistics()
            if not (np.isfinite(self.params).all() and np.isfinite(slots).all()):
                self.params[...], slots[...] = kept  # a step to non-finite weights is not applied
                return b, int(counter[0])
            counter[0] += 1
        return count, int(counter[0])

    def evaluate(self, x, y, sample_weight=None):
        """Return ``(loss_sum, correct)`` over all samples, in inference mode (weighted by
        ``sample_weight`` unless None)."""
        sparse = self.loss == LOSS_SPARSE_CE
        labels, targets = (y, None) if sparse else (None, y)
        loss_sum, sums = 0.0, np.zeros((self.n_metrics, 2))
        for start in range(0, x.shape[0], self.capacity):
            part = slice(start, start + self.capacity)
            outputs = self._forward(x[part], training=False)[1]
            out = outputs[-1]
            lb, tb = (labels[part], None) if sparse else (None, targets[part])
            wb = None if sample_weight is None else sample_weight[part]
            loss_sum += float(self._loss(out, lb, tb, wb)[0]) + self._activity_penalty(outputs)
            sums += self._metric_sums(out, lb, tb, wb)
        loss_sum += x.shape[0] * self._penalty()
        if self._one_metric:
            return loss_sum, float(sums[0, 0]) if self.n_metrics else 0.0
        return loss_sum, sums

    def predict(self, x, out):
        """Write the model's outputs for x into ``out``."""
        for start in range(0, x.shape[0], self.capacity):
            part = slice(start, start + self.capacity)
            z = self._forward(x[part], training=False)[1][-1]
            out[part] = _apply(z, self.ops[-1].activation) if self.fused else z
