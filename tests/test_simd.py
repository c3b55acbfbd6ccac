"""The kernels' SIMD variants (``fastdnn/simd/``): chosen at import, forced by ``FASTDNN_SIMD``,
and agreeing with each other.

Each variant this CPU runs computes the same work in a process of its own (``FASTDNN_SIMD``):
every optimizer update in both precisions, the dense layer's products with a mostly-zero input,
and a short fit. The AVX2 and AVX-512 variants must agree bit for bit (their sparse products sum
each output's terms in the same order with the same multiply-adds; their updates run the same
instructions, 8 lanes wide). The baseline variant has no FMA and takes float32 Adam's exact
quotient and BLAS's products: its updates must agree with the fastest variant's to 4 units of
rounding of the values' magnitude, its products to float32 rounding of their terms' magnitudes.
The kernel tests' reference checks run under every variant in CI (``.ci/run``).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdnn
from _helpers import assert_close
from fastdnn import _kernels as kernels

VARIANTS = kernels.simd_variants()
HERE = os.path.dirname(os.path.abspath(__file__))

# name: (slots, one step of it on params w, gradients g, slots s, at iteration t)
UPDATES = {
    "sgd": (0, lambda w, g, s, t: kernels.sgd_update(w, g, 0.1)),
    "sgd_nesterov": (1, lambda w, g, s, t: kernels.sgd_update(w, g, 0.1, 0.9, True, s[0])),
    "adagrad": (1, lambda w, g, s, t: kernels.adagrad_update(w, g, s[0], 0.1)),
    "rmsprop_centered": (3, lambda w, g, s, t: kernels.rmsprop_update(
        w, g, s[0], momentum=0.5, centered=True, momentum_buffer=s[1], average_gradient=s[2])),
    "adam": (2, lambda w, g, s, t: kernels.adam_update(w, g, s[0], s[1], t)),
    "adam_amsgrad": (3, lambda w, g, s, t: kernels.adam_update(w, g, s[0], s[1], t, amsgrad=True,
                                                               v_hat=s[2])),
}


def compute(path):
    """Run the variant's kernels on seeded data; save every result to ``path`` (.npz)."""
    rng = np.random.default_rng(7)
    out = {}
    for name, (n_slots, step) in UPDATES.items():
        for dtype in (np.float32, np.float64):
            # one element past a cache line, so that both the edge and the vector loop run
            w = rng.normal(size=3001).astype(dtype)[1:]
            slots = [np.zeros_like(w) for _ in range(n_slots)]
            for t in range(3):
                g = rng.normal(size=w.size) * 10.0 ** rng.integers(-4, 2, w.size)
                step(w, g.astype(dtype), slots, t)
            out[f"{name}_{np.dtype(dtype).name}"] = w
    x = rng.random((32, 784)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0
    w = rng.normal(size=(784, 100)).astype(np.float32)
    g = rng.normal(size=(32, 100)).astype(np.float32)
    product, dw = np.empty((32, 100), np.float32), np.empty_like(w)
    kernels.dense_forward(x, w, None, product)
    kernels.dense_backward(x, w, product, g, dw, None)
    out["product"], out["dw"] = product, dw
    fastdnn.utils.set_random_seed(7)
    model = fastdnn.Sequential([fastdnn.Input(shape=(784,)),
                                fastdnn.layers.Dense(32, activation="relu"),
                                fastdnn.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, rng.integers(0, 10, 32).astype(np.int32), epochs=2, batch_size=8, verbose=0,
              shuffle=False)
    for i, weight in enumerate(model.get_weights()):
        out[f"fit_{i}"] = weight
    np.savez(path, variant=fastdnn.config.simd(), x=x, w=w, g=g, **out)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each variant's results, computed in a process of its own."""
    found = {}
    for variant in VARIANTS:
        path = tmp_path_factory.mktemp(variant) / "results.npz"
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import test_simd; "
                f"test_simd.compute({str(path)!r})")
        subprocess.run([sys.executable, "-c", code], check=True,
                       env=dict(os.environ, FASTDNN_SIMD=variant))
        found[variant] = dict(np.load(path))
    return found


def test_each_process_used_the_variant_it_asked_for(results):
    assert [str(r["variant"]) for r in results.values()] == VARIANTS


@pytest.mark.skipif(not {"avx2", "avx512"} <= set(VARIANTS), reason="needs an AVX-512 CPU")
def test_avx2_and_avx512_agree_bit_for_bit(results):
    for key, value in results["avx2"].items():
        if key != "variant":
                np.testing.assert_array_equal(results["avx512"][key], value, err_msg=key)


@pytest.mark.skipif(len(VARIANTS) < 2, reason="this CPU runs the baseline variant only")
@pytest.mark.parametrize("name", UPDATES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_baseline_updates_agree_with_the_fastest_to_rounding(results, name, dtype):
    base, fast = results["baseline"][f"{name}_{dtype}"], results[VARIANTS[-1]][f"{name}_{dtype}"]
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(base, fast, rtol=4 * eps, atol=4 * eps * np.abs(fast).max())


@pytest.mark.skipif(len(VARIANTS) < 2, reason="this CPU runs the baseline variant only")
def test_baseline_products_agree_with_the_sparse_ones_to_rounding(results):
    base, fast = results["baseline"], results[VARIANTS[-1]]
    x, w, g = fast["x"], fast["w"], fast["g"]
    assert_close(base["product"], fast["product"], np.float32, scale=(np.abs(x) @ np.abs(w)).max())
    assert_close(base["dw"], fast["dw"], np.float32, scale=(np.abs(x).T @ np.abs(g)).max())


@pytest.mark.skipif(len(VARIANTS) < 2, reason="this CPU runs the baseline variant only")
def test_baseline_fit_stays_close_to_the_fastest(results):
    for key in (k for k in results["baseline"] if k.startswith("fit_")):
        np.testing.assert_allclose(results["baseline"][key], results[VARIANTS[-1]][key],
                                   rtol=1e-4, atol=1e-5, err_msg=key)


def test_the_fastest_variant_the_cpu_runs_is_the_default():
    if "FASTDNN_SIMD" in os.environ:
        assert fastdnn.config.simd() == os.environ["FASTDNN_SIMD"]
    else:
        assert fastdnn.config.simd() == VARIANTS[-1]
    assert VARIANTS[0] == "baseline"
    assert kernels.sparse_products() == (fastdnn.config.simd() != "baseline")


def run_with_simd(value, code="import fastdnn"):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, FASTDNN_SIMD=value))


def test_an_unknown_variant_is_refused_at_import():
    result = run_with_simd("sse9")
    assert result.returncode != 0
    assert "FASTDNN_SIMD must be one of baseline" in result.stderr


@pytest.mark.skipif(len(VARIANTS) == 3, reason="this CPU runs every variant")
def test_a_variant_the_cpu_lacks_is_refused_at_import():
    result = run_with_simd("avx512")
    assert result.returncode != 0
    assert "this CPU lacks the instructions of the 'avx512' variant" in result.stderr


def test_version_names_the_release_and_the_variant():
    result = subprocess.run([sys.executable, "-m", "fastdnn", "--version"], capture_output=True,
                            text=True, env=dict(os.environ, FASTDNN_SIMD="baseline"))
    assert result.stdout.strip() == f"fastdnn {fastdnn.__version__} (SIMD: baseline)"
