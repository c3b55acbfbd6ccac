"""Kernel benchmarks: each fastdnn kernel next to its NumPy reference twin on the same arrays.

Groups (one per piece of work; rows ``...-fastdnn``, ``...-reference`` and, for the dense
layers, ``...-floor``: the layer's matrix products alone through NumPy's BLAS into preallocated
arrays):

- ``dense_forward <n_in>x<n_out> <activation> bs<batch>``: ``out = act(x @ w + b)``;
- ``dense_backward <n_in>x<n_out> <activation> bs<batch>``: the activation derivative, dw, db
  and dx (the floor: ``x.T @ g`` and ``g @ w.T``). The kernel overwrites its incoming gradient,
  so every row (floor included) first restores it with one ``np.copyto``;
- ``sparse_softmax_xent bs<batch>``: the fused softmax + cross-entropy with its gradient;
- ``update <optimizer> <n> params``: one fused optimizer step over a flat parameter buffer.

Layer sizes are those of the chapter's model (784-100-10) and of the large model
(784-1024-1024-10), at batch 32 and 256. fastdnn rows run as ``fit`` does: BLAS at one thread,
the kernels' own threads splitting the large products; reference and floor rows use NumPy's BLAS
at its default thread count.
"""

import numpy as np
import pytest

from fastdnn import _kernels, _threads, reference

# Short rounds: there are many small rows (CLI --benchmark-max-time is overridden here).
pytestmark = pytest.mark.benchmark(max_time=0.25, min_rounds=5)

ENGINES = {"fastdnn": _kernels, "reference": reference}
MODELS = {"784-100-10": (784, 100, 10), "784-1024-1024-10": (784, 1024, 1024, 10)}
BATCHES = (32, 256)
HIDDEN_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh")


def _run(benchmark, group, role, fn, **targets):
    """Time ``fn`` as the ``role`` row of ``group``; targets go on the fastdnn row."""
    benchmark.group = group
    benchmark.extra_info["role"] = role
    if role == "fastdnn":
        benchmark.extra_info.update(targets)
        with _threads.single_threaded_blas():
            benchmark(fn)
    else:
        benchmark(fn)


def _layers():
    """``(widths, batch, n_in, n_out, activation)`` for every dense case."""
    for widths in MODELS.values():
        layers = [(widths[0], widths[1], HIDDEN_ACTIVATIONS)]
        layers += [(a, b, ("relu",)) for a, b in zip(widths[1:-2], widths[2:-1])]
        layers.append((widths[-2], widths[-1], ("softmax",)))
        for batch in BATCHES:
            for n_in, n_out, activations in layers:
                for act in activations:
                    yield widths, batch, n_in, n_out, act


DENSE = [(case, role) for case in _layers() for role in ("fastdnn", "reference", "floor")]
DENSE_IDS = [f"{n_in}x{n_out}-{act}-bs{bs}-{role}" for (_, bs, n_in, n_out, act), role in DENSE]


def _dense_arrays(batch, n_in, n_out, act):
    rng = np.random.default_rng(0)
    x = rng.random((batch, n_in), dtype=np.float32)
    w = (rng.standard_normal((n_in, n_out)) * np.sqrt(2 / (n_in + n_out))).astype(np.float32)
    b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
    a = np.empty((batch, n_out), np.float32)
    reference.dense_forward(x, w, b, a, act)
    return x, w, b, a


@pytest.mark.parametrize("case,role", DENSE, ids=DENSE_IDS)
def test_dense_forward(benchmark, case, role):
    _, batch, n_in, n_out, act = case
    x, w, b, _ = _dense_arrays(batch, n_in, n_out, act)
    out = np.empty((batch, n_out), np.float32)
    if role == "floor":
        def fn():
            np.matmul(x, w, out=out)
    else:
        kernel = ENGINES[role].dense_forward

        def fn():
            kernel(x, w, b, out, act)
    _run(benchmark, f"dense_forward {n_in}x{n_out} {act} bs{batch}", role, fn)


@pytest.mark.parametrize("case,role", DENSE, ids=DENSE_IDS)
def test_dense_backward(benchmark, case, role):
    _, batch, n_in, n_out, act = case
    x, w, _, a = _dense_arrays(batch, n_in, n_out, act)
    g0 = (np.random.default_rng(1).standard_normal((batch, n_out)) * 0.01).astype(np.float32)
    grad = np.empty_like(g0)
    dw, db, dx = np.empty_like(w), np.empty(n_out, np.float32), np.empty_like(x)
    if role == "floor":
        def fn():
            np.copyto(grad, g0)
            np.matmul(x.T, grad, out=dw)
            np.matmul(grad, w.T, out=dx)
    else:
        kernel = ENGINES[role].dense_backward

        def fn():
            np.copyto(grad, g0)
            kernel(x, w, a, grad, dw, db, dx, act)
    _run(benchmark, f"dense_backward {n_in}x{n_out} {act} bs{batch}", role, fn)


LOSS = [(batch, role) for batch in BATCHES for role in ("fastdnn", "reference")]


@pytest.mark.parametrize("batch,role", LOSS, ids=[f"bs{b}-{r}" for b, r in LOSS])
def test_sparse_softmax_xent(benchmark, batch, role):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((batch, 10)) * 3).astype(np.float32)
    labels = rng.integers(0, 10, batch).astype(np.int32)
    grad = np.empty_like(logits)
    kernel = ENGINES[role].sparse_softmax_cross_entropy
    _run(benchmark, f"sparse_softmax_xent bs{batch}", role, lambda: kernel(logits, labels, grad))


# --- optimizer updates: (slots, call) per optimizer, same arguments for both engines

UPDATES = {
    "sgd": (0, lambda k, p, g, s: k.sgd_update(p, g, 0.01)),
    "momentum": (1, lambda k, p, g, s: k.sgd_update(p, g, 0.01, momentum=0.9, velocity=s[0])),
    "nesterov": (1, lambda k, p, g, s: k.sgd_update(p, g, 0.01, momentum=0.9, nesterov=True,
                                                    velocity=s[0])),
    "adagrad": (1, lambda k, p, g, s: k.adagrad_update(p, g, s[0])),
    "rmsprop": (1, lambda k, p, g, s: k.rmsprop_update(p, g, s[0])),
    "adam": (2, lambda k, p, g, s: k.adam_update(p, g, s[0], s[1], 100)),
}
# The chapter's model, the large model, and 10M; targets (>= 3x the reference) at 80K and 10M.
PARAM_COUNTS = {79_510: 3.0, 1_864_690: None, 10_000_000: 3.0}
OPT = [(name, n, role) for n in PARAM_COUNTS for name in UPDATES
       for role in ("fastdnn", "reference")]
# A targeted fastdnn row alternates with the reference in blocks of calls (see ``interleaved``):
# (rounds, calls per block), about half a second of each.
INTERLEAVED_UPDATES = {79_510: (8_000, 50), 10_000_000: (40, 1)}


def _update_arrays(name, n):
    rng = np.random.default_rng(0)
    params = (rng.standard_normal(n, dtype=np.float32) * 0.05)
    grads = (rng.standard_normal(n, dtype=np.float32) * 1e-3)
    slots = [np.full(n, 0.1 if name == "adagrad" else 0.0, np.float32)
             for _ in range(UPDATES[name][0])]
    return params, grads, slots


@pytest.mark.parametrize("name,n,role", OPT, ids=[f"{o}-{n}-{r}" for o, n, r in OPT])
def test_update(benchmark, interleaved, name, n, role):
    call = UPDATES[name][1]
    params, grads, slots = _update_arrays(name, n)
    engine = ENGINES[role]
    target = lambda: call(engine, params, grads, slots)  # noqa: E731
    if role == "fastdnn" and PARAM_COUNTS[n]:
        benchmark.group = f"update {name} {n:,} params"
        benchmark.extra_info.update(role=role, min_speedup=PARAM_COUNTS[n])
        twin = _update_arrays(name, n)  # the reference's own arrays, as in its own row
        rounds, block = INTERLEAVED_UPDATES[n]
        interleaved(target, {"reference": lambda: call(reference, *twin)}, rounds, block=block)
    else:
        _run(benchmark, f"update {name} {n:,} params", role, target)
