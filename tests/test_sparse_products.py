"""The dense layer's products with mostly-zero float32 inputs, which skip the zeros
(``simd/sparse.h``).

Such inputs (under 75% nonzeros) of layers of 32 units or more take the sparse products in the
AVX2 and AVX-512 variants, BLAS in the baseline one; either way the results must be the float64
products' to float32 rounding. The shapes walk the edges of the sparse kernels' tiling: output
widths around their vectors (8 wide with AVX2, 16 with AVX-512) and their column tiles (96 or 192
columns), inputs around their 64-input depth, batches around their 32-row groups, and layers cut
into blocks of inputs.
"""

import numpy as np
import pytest

from _helpers import assert_close
from fastdnn import _kernels as kernels

WIDTHS = [10, 31, 32, 33, 39, 47, 48, 49, 100, 103, 104, 105, 191, 192, 193, 200, 207, 208,
          209, 257, 400]
INPUTS = [1, 9, 64, 65, 200]
BATCHES = [1, 31, 32, 33, 70]
# cut into four blocks of inputs by the kernels (n * n_in * n_out >= 2^20), as the chapter's
# first layer is; 784 x 100 at a batch of 32 is that layer
CUT = [(32, 784, 100), (40, 500, 60), (64, 130, 128)]


def sparse_input(rng, shape, density=0.3):
    """float32 values in [0, 1) with about ``density`` of them nonzero."""
    x = rng.random(shape).astype(np.float32)
    x[rng.random(shape) >= density] = 0
    return x


def product_check(x, w, g):
    """Run dense_forward and dense_backward on (x, w), backward from g; compare with float64."""
    n, n_out = x.shape[0], w.shape[1]
    out = np.full((n, n_out), np.nan, np.float32)
    kernels.dense_forward(x, w, None, out)
    expected = x.astype(np.float64) @ w
    assert_close(out, expected, np.float32, scale=(np.abs(x) @ np.abs(w)).max())
    dw = np.full(w.shape, np.nan, np.float32)
    kernels.dense_backward(x, w, out, g.copy(), dw, None)
    assert_close(dw, x.T.astype(np.float64) @ g, np.float32, scale=(np.abs(x).T @ np.abs(g)).max())


@pytest.mark.parametrize("n_out", WIDTHS)
def test_every_output_width_matches_float64(n_out, rng):
    x = sparse_input(rng, (33, 65))
    product_check(x, rng.normal(size=(65, n_out)).astype(np.float32),
                  rng.normal(size=(33, n_out)).astype(np.float32))


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize("n_in", INPUTS)
def test_every_batch_and_input_width_matches_float64(n, n_in, rng):
    x = sparse_input(rng, (n, n_in))
    product_check(x, rng.normal(size=(n_in, 37)).astype(np.float32),
                  rng.normal(size=(n, 37)).astype(np.float32))


@pytest.mark.parametrize("shape", CUT, ids=["784x100_bs32", "500x60_bs40", "130x128_bs64"])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 0.74, 0.76, 1.0])
def test_layers_cut_into_blocks_match_float64_at_any_density(shape, density, rng):
    n, n_in, n_out = shape
    x = sparse_input(rng, (n, n_in), density)
    product_check(x, rng.normal(size=(n_in, n_out)).astype(np.float32),
                  rng.normal(size=(n, n_out)).astype(np.float32))


def test_blocks_of_different_density_each_match(rng):
    """One block of inputs all zeros, one dense, two sparse: each block chooses for itself."""
    x = sparse_input(rng, (32, 784), 0.4)
    x[:, :192] = 0
    x[:, 392:584] = rng.random((32, 192))
    product_check(x, rng.normal(size=(784, 100)).astype(np.float32),
                  rng.normal(size=(32, 100)).astype(np.float32))


def test_nan_in_a_sparse_input_reaches_its_outputs(rng):
    x = sparse_input(rng, (32, 130))
    x[3, 7] = np.nan
    w = rng.normal(size=(130, 40)).astype(np.float32)
    out = np.empty((32, 40), np.float32)
    kernels.dense_forward(x, w, None, out)
    assert np.isnan(out[3]).all()
    assert np.isfinite(np.delete(out, 3, axis=0)).all()


@pytest.mark.skipif(not kernels.sparse_products(), reason="the baseline variant uses BLAS only")
def test_a_zero_input_skips_its_infinite_weight(rng):
    """With the zeros skipped, an inf weight whose input is 0 adds 0, not BLAS's NaN of 0 * inf
    (documented in simd/sparse.h); that the result is finite also shows that the sparse path ran."""
    x = sparse_input(rng, (32, 130))
    x[:, 5] = 0
    w = rng.normal(size=(130, 40)).astype(np.float32)
    w[5, 2] = np.inf
    out = np.empty((32, 40), np.float32)
    kernels.dense_forward(x, w, None, out)
    np.testing.assert_allclose(out, x.astype(np.float64) @ np.where(np.isinf(w), 0, w),
                               rtol=1e-5, atol=1e-5)


def test_float64_dense_and_narrow_keep_ieee_products(rng):
    """Dense inputs, layers of fewer than 32 units and every float64 input go to BLAS, where
    0 * inf is NaN."""
    for dtype, density, units in ((np.float64, 0.3, 40), (np.float32, 1.0, 40),
                                  (np.float32, 0.3, 31)):
        x = sparse_input(rng, (32, 130), density).astype(dtype)
        x[:, 5] = 0
        w = rng.normal(size=(130, units)).astype(dtype)
        w[5, 2] = np.inf
        out = np.empty((32, units), dtype)
        kernels.dense_forward(x, w, None, out)
        assert np.isnan(out[:, 2]).all()
