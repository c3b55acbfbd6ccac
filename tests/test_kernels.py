"""Every public kernel against its plain-NumPy twin in ``fastdnn.reference``, on random data.

Shapes cover a batch of one, odd sizes, one large case (512 x 784 x 100, MNIST's first layer)
and one cut into blocks of columns (64 x 40 x 2000: too few inputs to cut by rows).
float32 must agree to about 1e-5 relative, float64 to about 1e-12; where a result is a sum of many
terms, the absolute tolerance scales with the magnitude of those terms (see ``assert_close``).
The optimizer updates are compared in ``test_optimizers.py``.
"""

import numpy as np
import pytest

from _helpers import ACTIVATIONS, DTYPES, assert_close
from fastdnn import _kernels as kernels
from fastdnn import reference

DTYPE_IDS = ["float32", "float64"]
ROWS = [(1, 5), (7, 13), (512, 100)]
ROW_IDS = ["batch1", "odd", "large"]
# the last four are cut into blocks whose products go to BLAS in chunks (see _kernels._gemm), along
# either side of the result, with either operand transposed
DENSE_SHAPES = [(1, 7, 5), (7, 13, 5), (512, 784, 100), (64, 40, 2000), (32, 96, 1024),
                (256, 392, 50)]
DENSE_IDS = ["batch1", "odd_7x13x5", "large_512x784x100", "few_inputs_64x40x2000",
             "chunks_of_units_32x96x1024", "chunks_of_rows_256x392x50"]


def normal(rng, shape, dtype, scale=1.0):
    return (rng.normal(0.0, scale, shape)).astype(dtype)


def blank(shape, dtype):
    """An output buffer full of NaN, so an element the kernel forgets to write shows up."""
    return np.full(shape, np.nan, dtype)


def random_labels(rng, n, classes):
    return rng.integers(0, classes, n).astype(np.int32)


def one_hot(labels, classes, dtype):
    y = np.zeros((len(labels), classes), dtype)
    y[np.arange(len(labels)), labels] = 1
    return y


# --- activations


@pytest.mark.parametrize("shape", ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_matches_reference(activation, dtype, shape, rng):
    z = normal(rng, shape, dtype, 3.0)
    out_k, out_r = blank(shape, dtype), blank(shape, dtype)
    kernels.activation_forward(z, out_k, activation)
    reference.activation_forward(z, out_r, activation)
    assert_close(out_k, out_r, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_in_place_equals_out_of_place(activation, dtype, rng):
    z = normal(rng, (7, 13), dtype, 3.0)
    out = blank(z.shape, dtype)
    kernels.activation_forward(z, out, activation)
    kernels.activation_forward(z, z, activation)
    np.testing.assert_array_equal(z, out)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_code_equals_activation_name(activation, rng):
    z = normal(rng, (7, 13), np.float64, 3.0)
    by_name, by_code = blank(z.shape, z.dtype), blank(z.shape, z.dtype)
    kernels.activation_forward(z, by_name, activation)
    kernels.activation_forward(z, by_code, kernels.ACTIVATIONS[activation])
    np.testing.assert_array_equal(by_name, by_code)


def test_activation_forward_values_by_hand():
    z = np.array([[-2.0, 0.0, 3.0]])
    expected = {
        "linear": [-2.0, 0.0, 3.0],
        "relu": [0.0, 0.0, 3.0],
        "sigmoid": [1 / (1 + np.exp(2.0)), 0.5, 1 / (1 + np.exp(-3.0))],
        "tanh": np.tanh([-2.0, 0.0, 3.0]),
        "softmax": np.exp([-2.0, 0.0, 3.0]) / np.exp([-2.0, 0.0, 3.0]).sum(),
    }
    for activation, want in expected.items():
        out = blank(z.shape, z.dtype)
        kernels.activation_forward(z, out, activation)
        np.testing.assert_allclose(out[0], want, rtol=1e-15, err_msg=activation)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "softmax"])
def test_activation_forward_saturates_without_overflow(activation, dtype):
    z = np.array([[-1e4, 0.0, 1e4], [1e4, 1e4, -1e4]], dtype)
    out = blank(z.shape, dtype)
    kernels.activation_forward(z, out, activation)
    assert np.all(np.isfinite(out))
    expected = blank(z.shape, dtype)
    reference.activation_forward(z, expected, activation)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_propagates_non_finite_inputs_like_the_reference(activation, dtype):
    z = np.array([[np.nan, 1.0, -2.0], [np.inf, -np.inf, 0.5]], dtype)
    out_k, out_r = blank(z.shape, dtype), blank(z.shape, dtype)
    kernels.activation_forward(z, out_k, activation)
    with np.errstate(invalid="ignore"):
        reference.activation_forward(z, out_r, activation)
    np.testing.assert_array_equal(np.isnan(out_k), np.isnan(out_r))
    np.testing.assert_allclose(out_k, out_r, rtol=1e-6)
    assert np.isnan(out_k[0, 0])  # a NaN input never becomes a number


@pytest.mark.parametrize("shape", ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_backward_matches_reference(activation, dtype, shape, rng):
    a = blank(shape, dtype)
    reference.activation_forward(normal(rng, shape, dtype, 2.0), a, activation)
    g = normal(rng, shape, dtype)
    g_k, g_r = g.copy(), g.copy()
    kernels.activation_backward(a, g_k, activation)
    reference.activation_backward(a, g_r, activation)
    assert_close(g_k, g_r, dtype, scale=np.abs(g).max())


# --- dense layer


def dense_data(rng, shape, dtype, use_bias):
    n, n_in, n_out = shape
    x = normal(rng, (n, n_in), dtype)
    w = normal(rng, (n_in, n_out), dtype, 1 / np.sqrt(n_in))
    b = normal(rng, (n_out,), dtype, 0.5) if use_bias else None
    return x, w, b


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=DENSE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_matches_reference(activation, dtype, shape, use_bias, rng):
    x, w, b = dense_data(rng, shape, dtype, use_bias)
    out_k, out_r = blank((shape[0], shape[2]), dtype), blank((shape[0], shape[2]), dtype)
    kernels.dense_forward(x, w, b, out_k, activation)
    reference.dense_forward(x, w, b, out_r, activation)
    magnitude = (np.abs(x) @ np.abs(w)).max() + (np.abs(b).max() if use_bias else 0)
    assert_close(out_k, out_r, dtype, scale=magnitude)


def test_dense_forward_default_activation_is_linear(rng):
    x, w, b = dense_data(rng, (7, 13, 5), np.float64, True)
    out = blank((7, 5), np.float64)
    kernels.dense_forward(x, w, b, out)
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("use_bias,with_dx", [(True, True), (False, True), (True, False),
                                              (False, False)],
                         ids=["bias_dx", "no_bias_dx", "bias_no_dx", "no_bias_no_dx"])
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=DENSE_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_backward_matches_reference(activation, dtype, shape, use_bias, with_dx, rng):
    n, n_in, n_out = shape
    x, w, b = dense_data(rng, shape, dtype, use_bias)
    a = blank((n, n_out), dtype)
    reference.dense_forward(x, w, b, a, activation)
    g = normal(rng, (n, n_out), dtype)
    results = {}
    for engine in (kernels, reference):
        grad = g.copy()
        dw = blank(w.shape, dtype)
        db = blank((n_out,), dtype) if use_bias else None
        dx = blank(x.shape, dtype) if with_dx else None
        engine.dense_backward(x, w, a, grad, dw, db, dx, activation)
        results[engine] = grad, dw, db, dx
    (g_k, dw_k, db_k, dx_k), (g_r, dw_r, db_r, dx_r) = results[kernels], results[reference]
    # grad is overwritten with dL/dZ, then dw, db, dx are sums over the batch or the units
    assert_close(g_k, g_r, dtype, scale=np.abs(g).max())
    assert_close(dw_k, dw_r, dtype, scale=(np.abs(x).T @ np.abs(g_r)).max())
    if use_bias:
        assert_close(db_k, db_r, dtype, scale=np.abs(g_r).sum(axis=0).max())
    if with_dx:
        assert_close(dx_k, dx_r, dtype, scale=(np.abs(g_r) @ np.abs(w).T).max())


def test_dense_backward_values_by_hand():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    w = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    a = x @ w  # linear
    grad = np.array([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5]])
    dw, db, dx = blank(w.shape, w.dtype), blank(3, w.dtype), blank(x.shape, x.dtype)
    kernels.dense_backward(x, w, a, grad.copy(), dw, db, dx)
    np.testing.assert_array_equal(dw, [[-2.0, 3.0, 3.5], [3.0, -1.0, 3.5]])
    np.testing.assert_array_equal(db, [0.0, 1.0, 2.5])
    np.testing.assert_array_equal(dx, [[4.5, 0.5], [-0.5, -1.75]])


# --- losses

LOSS_ROWS = [(1, 10), (7, 13), (512, 100)]


def check_loss(name, dtype, out, labels_or_targets, grad_scale, loss_scale=1.0):
    """Run loss ``name`` on both engines, with and without grad; compare everything."""
    k, r = getattr(kernels, name), getattr(reference, name)
    g_k, g_r = blank(out.shape, dtype), blank(out.shape, dtype)
    loss_k = k(out, labels_or_targets, g_k)
    loss_r = r(out, labels_or_targets, g_r)
    assert isinstance(loss_k, float)
    assert_close(loss_k, loss_r, dtype, scale=loss_scale)
    assert_close(g_k, g_r, dtype, scale=grad_scale)
    # grad=None computes the same loss, and touches nothing else
    assert k(out, labels_or_targets, None) == loss_k
    assert k(out, labels_or_targets) == loss_k
    return loss_k, g_k


@pytest.mark.parametrize("shape", LOSS_ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sparse_softmax_cross_entropy_matches_reference(dtype, shape, rng):
    logits = normal(rng, shape, dtype, 3.0)
    labels = random_labels(rng, shape[0], shape[1])
    check_loss("sparse_softmax_cross_entropy", dtype, logits, labels, grad_scale=1 / shape[0],
               loss_scale=np.abs(logits).max())


@pytest.mark.parametrize("targets_kind", ["one_hot", "soft", "unnormalised"])
@pytest.mark.parametrize("shape", LOSS_ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_matches_reference(dtype, shape, targets_kind, rng):
    n, c = shape
    logits = normal(rng, shape, dtype, 3.0)
    if targets_kind == "one_hot":
        targets = one_hot(random_labels(rng, n, c), c, dtype)
    elif targets_kind == "soft":
        targets = rng.dirichlet(np.ones(c), n).astype(dtype)
    else:
        targets = rng.uniform(0, 1, shape).astype(dtype)
    check_loss("softmax_cross_entropy", dtype, logits, targets,
               grad_scale=targets.sum(axis=1).max() / n,
               loss_scale=np.abs(logits).max() * targets.sum(axis=1).max())


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_with_one_hot_equals_sparse(dtype, rng):
    logits = normal(rng, (7, 13), dtype, 3.0)
    labels = random_labels(rng, 7, 13)
    g_dense, g_sparse = blank(logits.shape, dtype), blank(logits.shape, dtype)
    dense = kernels.softmax_cross_entropy(logits, one_hot(labels, 13, dtype), g_dense)
    sparse = kernels.sparse_softmax_cross_entropy(logits, labels, g_sparse)
    assert_close(dense, sparse, dtype)
    assert_close(g_dense, g_sparse, dtype, scale=1 / 7)


@pytest.mark.parametrize("targets_kind", ["binary", "soft"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (512, 100)], ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_binary_cross_entropy_matches_reference(dtype, shape, targets_kind, rng):
    logits = normal(rng, shape, dtype, 3.0)
    if targets_kind == "binary":
        targets = rng.integers(0, 2, shape).astype(dtype)
    else:
        targets = rng.uniform(0, 1, shape).astype(dtype)
    check_loss("sigmoid_binary_cross_entropy", dtype, logits, targets, grad_scale=1 / shape[0],
               loss_scale=np.abs(logits).max())


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (512, 100)], ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mean_squared_error_matches_reference(dtype, shape, rng):
    predictions = normal(rng, shape, dtype)
    targets = normal(rng, shape, dtype)
    diff = np.abs(predictions.astype(np.float64) - targets)
    check_loss("mean_squared_error", dtype, predictions, targets,
               grad_scale=2 * diff.max() / shape[0], loss_scale=(diff ** 2).max())


# --- accuracy counts


@pytest.mark.parametrize("shape", ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct_sparse_matches_reference(dtype, shape, rng):
    scores = normal(rng, shape, dtype)
    labels = random_labels(rng, shape[0], shape[1])
    labels[: shape[0] // 2] = scores[: shape[0] // 2].argmax(axis=1)  # guarantee some hits
    hits = kernels.count_correct(scores, labels=labels)
    assert hits == reference.count_correct(scores, labels=labels)
    assert hits >= shape[0] // 2


@pytest.mark.parametrize("shape", ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct_categorical_matches_reference(dtype, shape, rng):
    scores = normal(rng, shape, dtype)
    labels = random_labels(rng, shape[0], shape[1])
    labels[: shape[0] // 2] = scores[: shape[0] // 2].argmax(axis=1)
    targets = one_hot(labels, shape[1], dtype)
    hits = kernels.count_correct(scores, targets=targets)
    assert hits == reference.count_correct(scores, targets=targets)
    assert hits >= shape[0] // 2


@pytest.mark.parametrize("shape", ROWS, ids=ROW_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_count_correct_binary_matches_reference(dtype, shape, rng):
    scores = rng.uniform(0, 1, shape).astype(dtype)
    targets = rng.integers(0, 2, shape).astype(dtype)
    hits = kernels.count_correct(scores, targets=targets, binary=True)
    assert hits == pytest.approx(reference.count_correct(scores, targets=targets, binary=True),
                                 rel=1e-12)


def test_count_correct_ties_go_to_the_first_maximum():
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 5.0, 5.0]])
    assert kernels.count_correct(scores, labels=np.array([1, 0, 2], np.int32)) == 3.0
    assert kernels.count_correct(scores, labels=np.array([2, 3, 3], np.int32)) == 0.0
    # categorical: the targets' argmax breaks ties the same way
    targets = np.array([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    assert kernels.count_correct(scores, targets=targets) == 2.0


def test_count_correct_binary_threshold_is_strict_and_rows_count_fractionally():
    scores = np.array([[0.5, 0.51], [0.9, 0.1], [0.2, 0.7]], np.float32)
    targets = np.array([[0.0, 1.0], [1.0, 1.0], [1.0, 0.0]], np.float32)
    # 0.5 is class 0 (strictly greater than the threshold); row 2 half right, row 3 all wrong
    assert kernels.count_correct(scores, targets=targets, binary=True) == 1.5


# --- dropout


def run_dropout(engine, x, rate, seed, counter):
    out, mask = blank(x.shape, x.dtype), blank(x.shape, x.dtype)
    engine.dropout_forward(x, out, mask, rate, seed, counter)
    return out, mask


@pytest.mark.parametrize("seed,counter", [(0, 0), (12345, 987), (2**63 + 5, 2**64 - 3)],
                         ids=["zero", "small", "wrapping"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (2, 3, 5), (64, 100)],
                         ids=["1x1", "7x13", "3d", "64x100"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout_forward_draws_the_reference_mask(dtype, shape, seed, counter, rng):
    x = normal(rng, shape, dtype)
    out_k, mask_k = run_dropout(kernels, x, 0.3, seed, counter)
    out_r, mask_r = run_dropout(reference, x, 0.3, seed, counter)
    np.testing.assert_array_equal(mask_k, mask_r)
    np.testing.assert_array_equal(out_k, out_r)
    np.testing.assert_array_equal(out_k, x * mask_k)
    assert set(np.unique(mask_k)) <= {dtype(0), dtype(1 / 0.7)}


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_forward_keeps_about_one_minus_rate(rate, rng):
    x = np.ones(200_000)
    _, mask = run_dropout(kernels, x, rate, seed=7, counter=0)
    kept = np.count_nonzero(mask) / mask.size
    # binomial standard deviation is at most 0.0012 here: 0.01 is over 8 of them
    assert abs(kept - (1 - rate)) < 0.01
    np.testing.assert_allclose(mask[mask != 0], 1 / (1 - rate), rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout_forward_rate_zero_keeps_everything(dtype, rng):
    x = normal(rng, (64, 100), dtype)
    out, mask = run_dropout(kernels, x, 0.0, seed=3, counter=11)
    np.testing.assert_array_equal(mask, np.ones_like(x))
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_dropout_forward_rate_one_zeros_everything(dtype, rng):
    x = normal(rng, (64, 100), dtype)
    out, mask = run_dropout(kernels, x, 1.0, seed=3, counter=11)
    np.testing.assert_array_equal(mask, np.zeros_like(x))
    np.testing.assert_array_equal(out, np.zeros_like(x))
    assert np.all(np.isfinite(out))


def test_dropout_forward_counter_advances_along_one_stream(rng):
    x = np.ones(1000)
    _, whole = run_dropout(kernels, x, 0.5, seed=42, counter=100)
    _, tail = run_dropout(kernels, x[:900].copy(), 0.5, seed=42, counter=200)
    np.testing.assert_array_equal(tail, whole[100:])


def test_dropout_forward_differs_between_seeds():
    x = np.ones(1000)
    _, mask_a = run_dropout(kernels, x, 0.5, seed=1, counter=0)
    _, mask_b = run_dropout(kernels, x, 0.5, seed=2, counter=0)
    _, mask_c = run_dropout(kernels, x, 0.5, seed=1, counter=0)
    assert np.count_nonzero(mask_a != mask_b) > 300
    np.testing.assert_array_equal(mask_a, mask_c)


def test_dropout_forward_in_place(rng):
    x = normal(rng, (7, 13), np.float64)
    expected_out, expected_mask = run_dropout(kernels, x, 0.4, seed=5, counter=0)
    mask = blank(x.shape, x.dtype)
    kernels.dropout_forward(x, x, mask, 0.4, 5, 0)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_array_equal(x, expected_out)


# --- loss values: by hand, Keras' reference values, and stability for huge logits


def test_sparse_softmax_cross_entropy_matches_keras_from_logits_value():
    # Keras 4.4: label 2 of logits [0, 20, -20] with from_logits=True is 40.0
    logits = np.array([[0.0, 20.0, -20.0]])
    loss = kernels.sparse_softmax_cross_entropy(logits, np.array([2], np.int32))
    assert loss == pytest.approx(40.0 + np.log1p(np.exp(-20.0) + np.exp(-40.0)), rel=1e-15)
    assert loss == pytest.approx(40.0, rel=1e-7)
    loss32 = kernels.sparse_softmax_cross_entropy(logits.astype(np.float32),
                                                  np.array([2], np.int32))
    assert loss32 == pytest.approx(40.0, rel=1e-7)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_matches_keras_from_logits_value(dtype):
    # Keras 4.4: one-hot class 2 of logits [0, 150, 0] from logits is 150.0 (not clipped)
    logits = np.array([[0.0, 150.0, 0.0]], dtype)
    targets = np.array([[0.0, 0.0, 1.0]], dtype)
    assert kernels.softmax_cross_entropy(logits, targets) == pytest.approx(150.0, rel=1e-7)


def test_sparse_softmax_cross_entropy_matches_keras_probability_values():
    # Keras 4.4: labels [1, 2] of probabilities [[.05, .95, 0], [.1, .8, .1]] lose
    # [0.0513, 2.3026], mean 1.1769; logits log(p) give the same softmax (the 0 becomes 1e-300)
    probs = np.array([[0.05, 0.95, 1e-300], [0.1, 0.8, 0.1]])
    labels = np.array([1, 2], np.int32)
    logits = np.log(probs)
    per_sample = [kernels.sparse_softmax_cross_entropy(logits[i:i + 1].copy(), labels[i:i + 1])
                  for i in range(2)]
    np.testing.assert_allclose(per_sample, [-np.log(0.95), -np.log(0.1)], rtol=1e-12)
    np.testing.assert_allclose(per_sample, [0.0513, 2.3026], atol=1e-4)
    mean = kernels.sparse_softmax_cross_entropy(logits, labels)
    assert mean == pytest.approx(1.1769, abs=1e-4)


def test_sigmoid_binary_cross_entropy_matches_keras_probability_values():
    # Keras 4.4: y [[0, 1], [0, 0]], p [[.6, .4], [.4, .6]] give per-sample [0.9163, 0.7136]
    p = np.array([[0.6, 0.4], [0.4, 0.6]])
    y = np.array([[0.0, 1.0], [0.0, 0.0]])
    logits = np.log(p / (1 - p))
    per_sample = [kernels.sigmoid_binary_cross_entropy(logits[i:i + 1].copy(), y[i:i + 1].copy())
                  for i in range(2)]
    exact = [-(np.log(0.4) + np.log(0.4)) / 2, -(np.log(0.6) + np.log(0.4)) / 2]
    np.testing.assert_allclose(per_sample, exact, rtol=1e-12)
    np.testing.assert_allclose(per_sample, [0.9163, 0.7136], atol=1e-4)
    assert kernels.sigmoid_binary_cross_entropy(logits, y) == pytest.approx(np.mean(exact),
                                                                            rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_mean_squared_error_matches_keras_value(engine, dtype):
    # Keras 4.4: y [1, 0, 1], prediction [0.9, 0.1, 0.8] give 0.02
    predictions = np.array([[0.9, 0.1, 0.8]], dtype)
    targets = np.array([[1.0, 0.0, 1.0]], dtype)
    grad = blank(predictions.shape, dtype)
    assert engine.mean_squared_error(predictions, targets) == pytest.approx(0.02, rel=1e-6)
    assert engine.mean_squared_error(predictions, targets, grad) == pytest.approx(0.02, rel=1e-6)
    np.testing.assert_allclose(grad, [[-0.2 / 3, 0.2 / 3, -0.4 / 3]], rtol=1e-6)  # 2(p - y)/(n·c)


def test_mean_squared_error_is_mean_over_columns_then_over_rows(engine):
    predictions = np.array([[1.0, 2.0], [0.0, 0.0]])
    targets = np.array([[0.0, 0.0], [3.0, 0.0]])
    # row means (1 + 4) / 2 = 2.5 and 9 / 2 = 4.5, batch mean 3.5
    assert engine.mean_squared_error(predictions, targets) == 3.5


def test_mean_squared_error_grad_of_one_column_by_hand(engine):
    predictions = np.array([[1.0], [0.0]])
    targets = np.array([[0.0], [3.0]])
    grad = blank(predictions.shape, predictions.dtype)
    assert engine.mean_squared_error(predictions, targets, grad) == 5.0
    np.testing.assert_array_equal(grad, [[1.0], [-3.0]])  # 2(p - y) / n


def test_mean_squared_error_grad_is_gradient_of_the_mean_over_columns(engine):
    predictions = np.array([[1.0, 2.0], [0.0, 0.0]])
    targets = np.array([[0.0, 0.0], [3.0, 0.0]])
    grad = blank(predictions.shape, predictions.dtype)
    engine.mean_squared_error(predictions, targets, grad)
    # L = (1/n) Σ_i (1/c) Σ_k (p - y)²  ⇒  dL/dp = 2(p - y) / (n·c), here n = c = 2
    np.testing.assert_array_equal(grad, [[0.5, 1.0], [-1.5, 0.0]])


def test_sigmoid_binary_cross_entropy_grad_is_gradient_of_the_mean_over_columns(engine):
    logits = np.array([[0.0, 0.0, 0.0, 0.0]])
    targets = np.array([[1.0, 0.0, 1.0, 1.0]])
    grad = blank(logits.shape, logits.dtype)
    assert engine.sigmoid_binary_cross_entropy(logits, targets, grad) == pytest.approx(np.log(2))
    # dL/dz = (σ(z) - y) / (n·c) with n = 1, c = 4
    np.testing.assert_allclose(grad, [[-0.125, 0.125, -0.125, -0.125]], rtol=1e-15)


def test_softmax_cross_entropy_soft_targets_by_hand():
    logits = np.array([[0.0, np.log(3.0)]])  # softmax [0.25, 0.75]
    targets = np.array([[0.5, 0.5]])
    grad = blank(logits.shape, logits.dtype)
    loss = kernels.softmax_cross_entropy(logits, targets, grad)
    assert loss == pytest.approx(-0.5 * np.log(0.25) - 0.5 * np.log(0.75), rel=1e-14)
    np.testing.assert_allclose(grad, [[-0.25, 0.25]], rtol=1e-14)


@pytest.mark.parametrize("big", [1e4, 1e30], ids=["1e4", "1e30"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sparse_softmax_cross_entropy_is_stable_for_huge_logits(engine, dtype, big):
    logits = np.array([[big, -big, 0.0], [-big, big, big]], dtype)
    labels = np.array([1, 0], np.int32)
    grad = blank(logits.shape, dtype)
    loss = engine.sparse_softmax_cross_entropy(logits, labels, grad)
    # row 0: lse = big, loss 2·big; row 1: lse = big + log 2, loss 2·big + log 2
    assert np.isfinite(loss)
    assert loss == pytest.approx(2 * big + np.log(2) / 2, rel=1e-6)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-7)


@pytest.mark.parametrize("big", [1e4, 1e30], ids=["1e4", "1e30"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_softmax_cross_entropy_is_stable_for_huge_logits(engine, dtype, big):
    logits = np.array([[big, -big, 0.0], [-big, big, big]], dtype)
    targets = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype)
    grad = blank(logits.shape, dtype)
    loss = engine.softmax_cross_entropy(logits, targets, grad)
    # row 1: 0.5·(2·big + log 2) + 0.5·log 2
    assert np.isfinite(loss)
    assert loss == pytest.approx((2 * big + big + np.log(2)) / 2, rel=1e-6)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.25, 0.25, 0.0]], atol=1e-7)


@pytest.mark.parametrize("big", [1e4, 1e30], ids=["1e4", "1e30"])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_sigmoid_binary_cross_entropy_is_stable_for_huge_logits(engine, dtype, big):
    # one column per sample, so the mean over the last axis is the element itself
    logits = np.array([[big], [-big], [big], [-big], [0.0]], dtype)
    targets = np.array([[0.0], [1.0], [1.0], [0.0], [1.0]], dtype)
    grad = blank(logits.shape, dtype)
    loss = engine.sigmoid_binary_cross_entropy(logits, targets, grad)
    # per sample: big, big, 0, 0, log 2; grad (σ(z) - y) / 5
    assert np.isfinite(loss)
    assert loss == pytest.approx((2 * big + np.log(2)) / 5, rel=1e-6)
    np.testing.assert_allclose(grad, [[0.2], [-0.2], [0.0], [0.0], [-0.1]], atol=1e-7)
    # the same elements as one sample of 5 columns: the same mean, the same gradient
    wide = np.array([[big, -big, big, -big, 0.0]], dtype)
    wide_grad = blank(wide.shape, dtype)
    loss = engine.sigmoid_binary_cross_entropy(wide, targets.reshape(1, 5).copy(), wide_grad)
    assert loss == pytest.approx((2 * big + np.log(2)) / 5, rel=1e-6)
    np.testing.assert_allclose(wide_grad, grad.reshape(1, 5), atol=1e-7)


# --- large products are split among threads, with results independent of the thread count

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(512, 784, 100), (32, 784, 1024), (37, 301, 203),
                                   (64, 40, 2000)])  # the last one is cut by columns
def test_dense_results_are_bit_identical_for_any_thread_count(shape, dtype, kernel_threads):
    n, n_in, n_out = shape
    rng = np.random.default_rng(11)
    x, w = rng.normal(size=(n, n_in)).astype(dtype), rng.normal(size=(n_in, n_out)).astype(dtype)
    b, upstream = rng.normal(size=n_out).astype(dtype), rng.normal(size=(n, n_out)).astype(dtype)
    results = []
    for threads in (1, 2, 3):
        kernel_threads(threads)
        a, grad = np.empty((n, n_out), dtype), upstream.copy()
        dw, db, dx = np.empty_like(w), np.empty_like(b), np.empty_like(x)
        kernels.dense_forward(x, w, b, a, "relu")
        kernels.dense_backward(x, w, a, grad, dw, db, dx, "relu")
        results.append((a, dw, db, dx))
    for other in results[1:]:
        for got, want in zip(other, results[0]):
            np.testing.assert_array_equal(got, want)


# --- the data check fit runs before training

@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(0, 3), (5,), (7, 13), (300_001,), (4, 256, 300)])
def test_count_nonfinite_counts_nan_and_both_infinities(engine, dtype, shape):
    rng = np.random.default_rng(2)
    a = normal(rng, shape, dtype, scale=1e3)
    flat = a.reshape(-1)
    if flat.size:
        picks = rng.choice(flat.size, size=min(flat.size, 3), replace=False)
        flat[picks] = [np.nan, np.inf, -np.inf][:len(picks)]
        flat[-1] = np.finfo(dtype).max  # large but finite
        flat[0] = np.finfo(dtype).tiny / 4  # a denormal is finite
    want = int(np.count_nonzero(~np.isfinite(a)))
    assert engine.count_nonfinite(a) == want
    assert engine.count_nonfinite(np.zeros(shape, dtype)) == 0


@pytest.mark.parametrize("bad, error", [
    (np.zeros(4, np.int32), TypeError), (np.zeros(4, np.float16), TypeError),
    ([1.0, float("nan")], TypeError), (np.zeros((4, 6))[:, ::2], ValueError)])
def test_count_nonfinite_refuses_what_it_cannot_read(bad, error):
    with pytest.raises(error, match="a must"):
        kernels.count_nonfinite(bad)
