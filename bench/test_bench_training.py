"""Training benchmarks: one step, one epoch and ``predict``, next to the reference and the floor.

Rows of a group (same work, same data):

- ``...-fastdnn``: the compiled kernels (``engine='fastdnn'``, or ``_kernels.Network``);
- ``...-reference``: the NumPy twin (``engine='numpy'``, or ``reference.Network``);
- ``...-floor``: the same steps' matrix products alone, through NumPy's BLAS into preallocated
  arrays (``np.matmul(..., out=...)``): per step and layer the forward product, the weight
  gradient and (past the first layer) the input gradient -- the five GEMMs of 784-100-10 -- on
  the same batches of the data, with NumPy's BLAS at its default thread count. fastdnn rows run
  as ``fit`` does: BLAS at one thread, the kernels' own threads splitting the large products.

Groups:

- ``step 784-100-10 <optimizer> bs<batch>``: one ``Network.train`` batch (gather, forward, loss,
  backward, fused update) on shuffled data;
- ``epoch 784-100-10 <optimizer> bs<batch>``: ``Model.fit(x, y, epochs=1, batch_size, verbose=0,
  shuffle=True)`` on 48,000 samples (warm: one untimed fit first); the floor is 1500 steps at
  batch 32, 188 at batch 256;
- ``epoch 784-1024-1024-10 adam bs<batch> (9600 samples)``: the large model on a shortened epoch;
- ``threads 784-1024-1024-10 adam bs32 (9600 samples)``: that epoch with
  ``fastdnn.set_num_threads(1)`` and ``(2)``;
- ``epoch 784-100-10 adam l2 bs32`` / ``adamw bs32``: the epoch with an L2 kernel regularizer
  (1e-4) on both layers under Adam, and under AdamW (weight decay 0.004); ``nadam bs32`` and
  ``adam global_clipnorm bs32`` (1.0: every gradient first, then the clipped steps);
- ``contended <widths> adam bs<batch>``: an epoch at the default thread count and at one
  thread, interleaved, while a busy process (``busy_neighbour``) loops on one core;
  ``... first epoch``: each round a new model's first epoch (a new user's ``python -m
  fastdnn``), so the team's size is found from scratch every round;
- ``predict 784-100-10 10000 images bs32``: ``Model.predict`` on the test images.
"""

import contextlib
import math

import numpy as np
import pytest

import fastdnn
from fastdnn import _kernels, _threads, layers, reference
from fastdnn.__main__ import OPTIMIZERS

CHAPTER = (784, 100, 10)
LARGE = (784, 1024, 1024, 10)
LARGE_SAMPLES = 9_600
ROLES = ("fastdnn", "reference", "floor")
ENGINE = {"fastdnn": "fastdnn", "reference": "numpy"}


def _blas_for(role):
    """fastdnn runs with BLAS at one thread (its kernels bring their own); NumPy as it is."""
    return _threads.single_threaded_blas() if role == "fastdnn" else contextlib.nullcontext()


def _label(widths):
    return "-".join(map(str, widths))


def _tag(benchmark, group, role, **targets):
    benchmark.group = group
    benchmark.extra_info["role"] = role
    if role == "fastdnn":
        benchmark.extra_info.update(targets)


# Keras features on the chapter's epoch: the optimizer, and every layer's kernel regularizer
FEATURES = {"adam l2": (fastdnn.optimizers.Adam, fastdnn.regularizers.L2(1e-4)),
            "adamw": (fastdnn.optimizers.AdamW, None),
            "nadam": (fastdnn.optimizers.Nadam, None),
            "adam global_clipnorm": (lambda: fastdnn.optimizers.Adam(global_clipnorm=1.0), None)}


def build_model(widths, optimizer, engine):
    """The chapter's model shape: relu hidden layers, softmax output, sparse cross-entropy;
    ``optimizer`` a name of OPTIMIZERS or FEATURES."""
    make, regularizer = FEATURES.get(optimizer, (OPTIMIZERS.get(optimizer), None))
    np.random.seed(0)
    model = fastdnn.Sequential(
        [fastdnn.Input((widths[0],))]
        + [layers.Dense(n, activation="relu", kernel_regularizer=regularizer)
           for n in widths[1:-1]]
        + [layers.Dense(widths[-1], activation="softmax", kernel_regularizer=regularizer)])
    model.compile(optimizer=make(), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], engine=engine)
    return model


class Floor:
    """The matrix products of a dense network's training steps, alone, into preallocated arrays.

    Per step of a batch X: forward ``Z_i = A_{i-1} @ W_i`` (A_0 = X, A_i = Z_i), then backward
    ``dW_i = A_{i-1}^T @ dZ_i`` and, for i > 1, ``dZ_{i-1} = dZ_i @ W_i^T``. For 784-100-10 these
    are the five GEMMs X@W1, H@W2, H^T@dZ2, dZ2@W2^T, X^T@dZ1.
    """

    def __init__(self, widths, batch):
        rng = np.random.default_rng(0)
        pairs = list(zip(widths, widths[1:]))
        self.w = [(rng.standard_normal((a, b)) * np.sqrt(2 / (a + b))).astype(np.float32)
                  for a, b in pairs]
        self.z = [np.empty((batch, b), np.float32) for _, b in pairs]
        self.dz = [(rng.standard_normal((batch, b)) * 0.01).astype(np.float32) for _, b in pairs]
        self.dw = [np.empty_like(w) for w in self.w]

    def forward(self, x):
        n, a = x.shape[0], x
        for w, z in zip(self.w, self.z):
            np.matmul(a, w, out=z[:n])
            a = z[:n]

    def step(self, x):
        n = x.shape[0]
        self.forward(x)
        for i in range(len(self.w) - 1, -1, -1):
            np.matmul((x if i == 0 else self.z[i - 1][:n]).T, self.dz[i][:n], out=self.dw[i])
            if i:
                np.matmul(self.dz[i][:n], self.w[i].T, out=self.dz[i - 1][:n])

    def epoch(self, x, batch):
        for start in range(0, x.shape[0], batch):
            self.step(x[start:start + batch])

    def predict(self, x, batch):
        for start in range(0, x.shape[0], batch):
            self.forward(x[start:start + batch])


# --- one training step

STEP = [(opt, bs, role) for bs in (32, 256) for opt in OPTIMIZERS for role in ROLES]


@pytest.mark.parametrize("opt,bs,role", STEP, ids=[f"{o}-bs{b}-{r}" for o, b, r in STEP])
def test_step(benchmark, data, opt, bs, role):
    x, y, _ = data
    n = x.shape[0]
    n_batches = math.ceil(n / bs)
    state = {"batch": 0, "iteration": 0}
    if role == "floor":
        floor = Floor(CHAPTER, bs)

        def fn():
            b = state["batch"]
            floor.step(x[b * bs:(b + 1) * bs])
            state["batch"] = (b + 1) % n_batches
    else:
        rng = np.random.default_rng(0)
        ops, offset = [], 0
        for i, (a, b) in enumerate(zip(CHAPTER, CHAPTER[1:])):
            act = _kernels.SOFTMAX if i == len(CHAPTER) - 2 else _kernels.RELU
            ops.append((_kernels.OP_DENSE, b, act, 0.0, offset, offset + a * b))
            offset += a * b + b
        params = (rng.standard_normal(offset) * 0.05).astype(np.float32)
        module = _kernels if role == "fastdnn" else reference
        net = module.Network(CHAPTER[0], ops, params, _kernels.LOSS_SPARSE_CE,
                             _kernels.METRIC_SPARSE_ACC, True, bs, 0)
        optimizer = OPTIMIZERS[opt]()
        optimizer.build(params.size, np.float32)
        settings, slots = optimizer.settings(), optimizer.slots
        order = rng.permutation(n).astype(np.int64)
        loss_out, correct_out = np.zeros(1), np.zeros(1)

        def fn():
            b = state["batch"]
            _, state["iteration"] = net.train(x, y, order, bs, b, 1, settings, slots,
                                              state["iteration"], loss_out, correct_out)
            state["batch"] = (b + 1) % n_batches
    _tag(benchmark, f"step 784-100-10 {opt} bs{bs}", role)
    with _blas_for(role):
        benchmark(fn)


# --- one epoch

# Untimed pause before each timed epoch of the rows without targets. A shared host's slow spells
# last a second or more; spreading a row's rounds over several seconds lets its fastest round
# come from an ordinary moment. The targeted rows have no pause: a user's epoch starts while the
# last one's idle BLAS and OpenMP threads may still spin, and so do theirs.
ROUND_PAUSE = 0.4


def _epoch_fn(widths, opt, bs, role, x, y):
    """One warm-able epoch of ``role`` as a callable (a floor epoch, or ``Model.fit``)."""
    if role == "floor":
        floor = Floor(widths, bs)
        return lambda: floor.epoch(x, bs)
    model = build_model(widths, opt, ENGINE[role])
    return lambda: model.fit(x, y, epochs=1, batch_size=bs, verbose=0, shuffle=True)


def _epoch(interleaved, widths, opt, bs, role, x, y, rounds, compare_with=()):
    """Time one epoch of ``role``: ``rounds`` rounds after one warm-up, interleaved with one
    epoch of each role in ``compare_with``. Without companions, each round comes after an
    untimed pause of ROUND_PAUSE seconds; with them, each round starts right after the last
    companion's (the floor's NumPy products), with no pause."""
    companions = {other: _epoch_fn(widths, opt, bs, other, x, y) for other in compare_with}
    interleaved(_epoch_fn(widths, opt, bs, role, x, y), companions, rounds,
                pause=0.0 if companions else ROUND_PAUSE)


def _compared_roles(role, targets):
    """The roles a fastdnn row with these targets is interleaved with, the floor last."""
    if role != "fastdnn":
        return ()
    return tuple(other for other, key in (("reference", "min_speedup"), ("floor", "max_vs_floor"))
                 if targets.get(key))


EPOCH = [(opt, bs, role) for bs in (32, 256) for opt in OPTIMIZERS for role in ROLES]


@pytest.mark.parametrize("opt,bs,role", EPOCH, ids=[f"{o}-bs{b}-{r}" for o, b, r in EPOCH])
def test_epoch(benchmark, interleaved, data, opt, bs, role):
    x, y, _ = data
    targets = {}
    if opt == "adam":
        targets = {"max_vs_floor": 1.0 if bs == 32 else 1.25,
                   "min_speedup": 6.0 if bs == 32 else None}
    _tag(benchmark, f"epoch 784-100-10 {opt} bs{bs}", role, **targets)
    rounds = {"fastdnn": 7, "reference": 3, "floor": 7}[role]
    _epoch(interleaved, CHAPTER, opt, bs, role, x, y, rounds, _compared_roles(role, targets))


FEATURE_EPOCH = [(feature, role) for feature in FEATURES for role in ROLES]


@pytest.mark.parametrize("feature,role", FEATURE_EPOCH,
                         ids=[f"{f.replace(' ', '-')}-bs32-{r}" for f, r in FEATURE_EPOCH])
def test_epoch_features(benchmark, interleaved, data, feature, role):
    x, y, _ = data
    targets = {"min_speedup": 6.0}
    _tag(benchmark, f"epoch 784-100-10 {feature} bs32", role, **targets)
    rounds = {"fastdnn": 5, "reference": 3, "floor": 5}[role]
    _epoch(interleaved, CHAPTER, feature, 32, role, x, y, rounds, _compared_roles(role, targets))


LARGE_EPOCH = [(bs, role) for bs in (32, 256) for role in ROLES]


@pytest.mark.parametrize("bs,role", LARGE_EPOCH,
                         ids=[f"adam-bs{b}-{LARGE_SAMPLES}-{r}" for b, r in LARGE_EPOCH])
def test_epoch_large(benchmark, interleaved, data, bs, role):
    x, y, _ = data
    x, y = x[:LARGE_SAMPLES], y[:LARGE_SAMPLES]
    targets = {"max_vs_floor": 1.3 if bs == 32 else None}
    _tag(benchmark, f"epoch {_label(LARGE)} adam bs{bs} ({LARGE_SAMPLES} samples)", role,
         **targets)
    _epoch(interleaved, LARGE, "adam", bs, role, x, y, rounds=2 if role == "reference" else 3,
           compare_with=_compared_roles(role, targets))


@contextlib.contextmanager
def _num_threads(n):
    saved = fastdnn.get_num_threads()
    fastdnn.set_num_threads(n)
    try:
        yield
    finally:
        fastdnn.set_num_threads(saved)


@pytest.mark.parametrize("n_threads", [1, 2], ids=["1-thread", "2-threads"])
def test_threads(benchmark, interleaved, data, n_threads):
    """The large model's epoch at 1 and 2 threads; the 2-threads row interleaved with 1 thread."""
    x, y, _ = data
    x, y = x[:LARGE_SAMPLES], y[:LARGE_SAMPLES]
    benchmark.group = f"threads {_label(LARGE)} adam bs32 ({LARGE_SAMPLES} samples)"
    benchmark.extra_info["role"] = "1-thread" if n_threads == 1 else "2-threads"
    companions = {}
    if n_threads == 2:
        benchmark.extra_info["min_thread_speedup"] = 1.6
        one_thread_epoch = _epoch_fn(LARGE, "adam", 32, "fastdnn", x, y)

        def one_thread():
            with _num_threads(1):
                one_thread_epoch()
        companions["1-thread"] = one_thread
    epoch = _epoch_fn(LARGE, "adam", 32, "fastdnn", x, y)
    with _num_threads(n_threads):
        interleaved(epoch, companions, rounds=3, pause=ROUND_PAUSE)


CONTENDED = [(CHAPTER, 32, None, False), (CHAPTER, 256, None, False),
             (LARGE, 32, LARGE_SAMPLES, False), (CHAPTER, 32, None, True)]


def _contended_epoch_fn(widths, bs, x, y, first):
    """An epoch of one model as a callable; with ``first``, a new model's first epoch each call."""
    if not first:
        return _epoch_fn(widths, "adam", bs, "fastdnn", x, y)

    def first_epoch():
        model = build_model(widths, "adam", "fastdnn")
        model.fit(x, y, epochs=1, batch_size=bs, verbose=0, shuffle=True)
    return first_epoch


@pytest.mark.parametrize("widths,bs,samples,first", CONTENDED,
                         ids=[f"{_label(w)}-bs{b}{'-first' if f else ''}"
                              for w, b, _, f in CONTENDED])
def test_contended(benchmark, interleaved, busy_neighbour, data, widths, bs, samples, first):
    """An epoch at the default thread count, interleaved with one at one thread, while another
    process keeps one core busy: the default must not lose to one thread there."""
    x, y, _ = data
    x, y = x[:samples], y[:samples]
    benchmark.group = (f"contended {_label(widths)} adam bs{bs}"
                       + (f" ({samples} samples)" if samples else "")
                       + (" first epoch" if first else ""))
    benchmark.extra_info["role"] = "default-threads"
    benchmark.extra_info["max_vs_one_thread"] = 1.1
    one_thread_epoch = _contended_epoch_fn(widths, bs, x, y, first)

    def one_thread():
        with _num_threads(1):
            one_thread_epoch()
    interleaved(_contended_epoch_fn(widths, bs, x, y, first), {"1-thread": one_thread},
                rounds=3 if samples else 5)


# --- predict

@pytest.mark.parametrize("role", ROLES)
def test_predict(benchmark, data, role):
    _, _, x_test = data
    bs = 32
    _tag(benchmark, f"predict 784-100-10 {x_test.shape[0]} images bs{bs}", role)
    if role == "floor":
        floor = Floor(CHAPTER, bs)
        benchmark(floor.predict, x_test, bs)
    else:
        model = build_model(CHAPTER, "adam", ENGINE[role])
        model.predict(x_test, batch_size=bs, verbose=0)  # warm: build the network once
        benchmark(model.predict, x_test, batch_size=bs, verbose=0)
