# The public kernels: each checks its arguments, then runs without the GIL.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- public kernels: each checks its arguments, then runs without the GIL

def activation_forward(z, out, activation, negative_slope=0.2):
    """Apply an activation row by row: ``out = activation(z)``.

    Args:
        z: float32 or float64 array of shape (n, c), C-contiguous.
        out: OUT array like z (may be z itself, for in place).
        activation: a name of ``ACTIVATIONS`` ('softmax' over the last axis).
        negative_slope: leaky_relu's slope for z < 0, >= 0. Defaults to 0.2.
    """
    dtype = _check("z", z, 2)
    _check("out", out, 2, dtype, z.shape, writable=True)
    if z.shape[1] == 0:
        raise ValueError("z has no columns: it needs at least one")
    cdef int act = _activation_code(activation)
    cdef double slope = _finite_scalar("negative_slope", negative_slope, 0.0)
    cdef Py_ssize_t n = z.shape[0], c = z.shape[1]
    cdef void* pz = _data(z)
    cdef void* pout = _data(out)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _activation_forward(<float*>pz, <float*>pout, n, c, act, slope)
        else:
            _activation_forward(<double*>pz, <double*>pout, n, c, act, slope)
        fpenv_restore(state)


def activation_backward(a, grad, activation, z=None, negative_slope=0.2):
    """Turn dL/dA into dL/dZ in place, from the activation's output ``a`` (and, for gelu and
    silu, its input ``z``).

    Args:
        a: the activation's output, float32 or float64, shape (n, c), C-contiguous.
        grad: IN/OUT array like a: dL/dA on entry, dL/dZ on return.
        activation: a name of ``ACTIVATIONS``.
        z: the activation's input, like a: required for 'gelu' and 'silu', else unused.
        negative_slope: leaky_relu's slope, >= 0. Defaults to 0.2.
    """
    dtype = _check("a", a, 2)
    _check("grad", grad, 2, dtype, a.shape, writable=True)
    if a.shape[1] == 0:
        raise ValueError("a has no columns: it needs at least one")
    cdef int act = _activation_code(activation)
    cdef double slope = _finite_scalar("negative_slope", negative_slope, 0.0)
    if act in (GELU, SILU):
        if z is None:
            raise ValueError(f"activation {activation!r} needs its input z")
        _check("z", z, 2, dtype, a.shape)
    else:
        z = None
    _no_overlap({"grad": grad}, {"z": z})
    cdef Py_ssize_t n = a.shape[0], c = a.shape[1]
    cdef void* pa = _data(a)
    cdef void* pz = _data(z)
    cdef void* pg = _data(grad)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _activation_backward(<float*>pa, <float*>pg, n, c, act, <float*>pz, slope)
        else:
            _activation_backward(<double*>pa, <double*>pg, n, c, act, <double*>pz, slope)
        fpenv_restore(state)


def dense_forward(x, w, b, out, activation="linear"):
    """Dense layer forward pass: ``out = activation(x @ w + b)``, the activation fused in.

    Args:
        x: inputs, float32 or float64, shape (n, n_in), C-contiguous, n >= 1.
        w: kernel, shape (n_in, n_out), same dtype.
        b: bias, shape (n_out,), or None for no bias.
        out: OUT buffer, shape (n, n_out).
        activation: 'linear', 'relu', 'sigmoid', 'tanh' or 'softmax'. Defaults to 'linear'.
    """
    dtype = _check("x", x, 2)
    _check_rows("x", x)
    _check("w", w, 2, dtype, (x.shape[1], None))
    _check_rows("w", w)
    if b is not None:
        _check("b", b, 1, dtype, (w.shape[1],))
    _check("out", out, 2, dtype, (x.shape[0], w.shape[1]), writable=True)
    _no_overlap({"out": out}, {"x": x, "w": w, "b": b})
    cdef int act = _activation_code(activation, True)
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef int blocks = _row_blocks(n, n_in, n_out)
    parts = np.empty((blocks - 1) * n * n_out, dtype) if blocks > 1 else None
    cdef void* px = _data(x)
    cdef void* pw = _data(w)
    cdef void* pb = _data(b)
    cdef void* pout = _data(out)
    cdef void* pparts = _data(parts)
    cdef unsigned int state
    cdef team_t team = team_t(0, 0, 0)
    cdef bint f32 = dtype == np.float32
    with nogil, parallel(num_threads=_block_threads(_cut(n, n_in, n_out))):
        state = _team_start(&team)
        if f32:
            _dense_forward(<float*>px, <float*>pw, <float*>pb, <float*>pout, <float*>pparts, n,
                           n_in, n_out, act, True, NULL, team_index(), team_size())
        else:
            _dense_forward(<double*>px, <double*>pw, <double*>pb, <double*>pout, <double*>pparts,
                           n, n_in, n_out, act, True, NULL, team_index(), team_size())
        _team_end(state)


def dense_backward(x, w, a, grad, dw, db, dx=None, activation="linear"):
    """Dense layer backward pass, the activation derivative fused in.

    Args:
        x: the layer's input, shape (n, n_in).
        w: kernel, shape (n_in, n_out).
        a: the layer's output (after the activation), shape (n, n_out).
        grad: IN/OUT dL/dA, shape (n, n_out); overwritten with dL/dZ (no temporary is made).
        dw: OUT dL/dw, shape (n_in, n_out).
        db: OUT dL/db, shape (n_out,), or None (no bias).
        dx: OUT dL/dx, shape (n, n_in), or None to skip it (the first layer never needs it).
        activation: the activation used in the forward pass. Defaults to 'linear'.
    """
    dtype = _check("x", x, 2)
    _check_rows("x", x)
    _check("w", w, 2, dtype, (x.shape[1], None))
    _check_rows("w", w)
    shape_out = (x.shape[0], w.shape[1])
    _check("a", a, 2, dtype, shape_out)
    _check("grad", grad, 2, dtype, shape_out, writable=True)
    _check("dw", dw, 2, dtype, w.shape, writable=True)
    if db is not None:
        _check("db", db, 1, dtype, (w.shape[1],), writable=True)
    if dx is not None:
        _check("dx", dx, 2, dtype, x.shape, writable=True)
    _no_overlap({"grad": grad, "dw": dw, "db": db, "dx": dx}, {"x": x, "w": w, "a": a})
    cdef int act = _activation_code(activation, True)
    cdef Py_ssize_t n = x.shape[0], n_in = x.shape[1], n_out = w.shape[1]
    cdef int columns = _column_blocks(n, n_in, n_out)
    parts = np.empty((columns - 1) * n * n_in, dtype) if columns > 1 and dx is not None else None
    cdef void* px = _data(x)
    cdef void* pw = _data(w)
    cdef void* pa = _data(a)
    cdef void* pg = _data(grad)
    cdef void* pdw = _data(dw)
    cdef void* pdb = _data(db)
    cdef void* pdx = _data(dx)
    cdef void* pparts = _data(parts)
    cdef unsigned int state
    cdef team_t team = team_t(0, 0, 0)
    cdef bint f32 = dtype == np.float32
    with nogil, parallel(num_threads=_block_threads(_cut(n, n_in, n_out))):
        state = _team_start(&team)
        if f32:
            _dense_backward(<float*>px, <float*>pw, <float*>pa, <float*>pg, <float*>pdw,
                            <float*>pdb, <float*>pdx, <float*>pparts, n, n_in, n_out, act, NULL,
                            NULL, team_index(), team_size())
        else:
            _dense_backward(<double*>px, <double*>pw, <double*>pa, <double*>pg, <double*>pdw,
                            <double*>pdb, <double*>pdx, <double*>pparts, n, n_in, n_out, act,
                            NULL, NULL, team_index(), team_size())
        _team_end(state)


def _loss_entry(int kind, name_out, out, labels, targets, grad):
    """Shared body of the public loss kernels: check, run, return the mean loss."""
    dtype = _check(name_out, out, 2)
    _check_rows(name_out, out)
    cdef Py_ssize_t n = out.shape[0], c = out.shape[1]
    if kind == LOSS_SPARSE_CE:
        _check_labels(labels, n, c)
    else:
        _check("targets", targets, 2, dtype, out.shape)
    if grad is not None:
        _check("grad", grad, 2, dtype, out.shape, writable=True)
        _no_overlap({"grad": grad}, {name_out: out, "labels": labels, "targets": targets})
    cdef void* po = _data(out)
    cdef int32_t* pl = <int32_t*>_data(labels)
    cdef void* pt = _data(targets)
    cdef void* pg = _data(grad)
    cdef double total
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            total = _loss(kind, <float*>po, pl, <float*>pt, <float*>pg, n, c, <float>(1.0 / n))
        else:
            total = _loss(kind, <double*>po, pl, <double*>pt, <double*>pg, n, c, 1.0 / n)
        fpenv_restore(state)
    return total / n


def sparse_softmax_cross_entropy(logits, labels, grad=None):
    """Fused softmax + sparse categorical cross-entropy, from logits, in one pass.

    Stable for logits of any magnitude (log-sum-exp with the row maximum subtracted).

    Args:
        logits: float32 or float64, shape (n, classes), C-contiguous.
        labels: int32 class ids, shape (n,), each in [0, classes).
        grad: OUT dL/dlogits of the mean loss, shape like logits, or None to skip it.

    Returns:
        The mean loss over the batch (a Python float).
    """
    return _loss_entry(LOSS_SPARSE_CE, "logits", logits, labels, None, grad)


def softmax_cross_entropy(logits, targets, grad=None):
    """Fused softmax + categorical cross-entropy, from logits, for one-hot (or soft) targets.

    Args:
        logits: float32 or float64, shape (n, classes), C-contiguous.
        targets: target distribution, same shape and dtype.
        grad: OUT dL/dlogits of the mean loss, or None.

    Returns:
        The mean loss over the batch.
    """
    return _loss_entry(LOSS_CE, "logits", logits, None, targets, grad)


def sigmoid_binary_cross_entropy(logits, targets, grad=None):
    """Fused sigmoid + binary cross-entropy, from logits (stable: no exp overflow).

    Args:
        logits: float32 or float64, shape (n, c), C-contiguous.
        targets: 0/1 (or soft) targets, same shape and dtype.
        grad: OUT dL/dlogits of the mean loss, or None.

    Returns:
        The mean over samples of the per-sample mean over the last axis.
    """
    return _loss_entry(LOSS_BCE, "logits", logits, None, targets, grad)


def mean_squared_error(predictions, targets, grad=None):
    """Mean squared error, with its gradient.

    Args:
        predictions: float32 or float64, shape (n, c), C-contiguous.
        targets: same shape and dtype.
        grad: OUT dL/dpredictions of the mean loss, or None.

    Returns:
        The mean over samples of the per-sample mean over the last axis.
    """
    return _loss_entry(LOSS_MSE, "predictions", predictions, None, targets, grad)


def count_correct(scores, labels=None, targets=None, binary=False):
    """Count correct predictions, without temporaries.

    Exactly one of ``labels`` (sparse: argmax of scores equals the label) or ``targets``
    (categorical: argmax equals the target's argmax; with ``binary=True``: ``scores > 0.5``
    equals the target, averaged over the last axis) is given.

    Args:
        scores: float32 or float64, shape (n, c), C-contiguous.
        labels: int32 class ids, shape (n,), in [0, c).
        targets: array like scores.
        binary: use binary accuracy with threshold 0.5. Defaults to False.

    Returns:
        The number of correct samples (a float: binary rows count fractionally).
    """
    dtype = _check("scores", scores, 2)
    if scores.shape[1] == 0:
        raise ValueError("scores has no columns: it needs at least one")
    cdef Py_ssize_t n = scores.shape[0], c = scores.shape[1]
    cdef int metric
    if (labels is None) == (targets is None):
        raise ValueError("pass exactly one of labels and targets")
    if labels is not None:
        _check_labels(labels, n, c)
        metric = METRIC_SPARSE_ACC
    else:
        _check("targets", targets, 2, dtype, scores.shape)
        metric = METRIC_BINARY_ACC if binary else METRIC_CATEGORICAL_ACC
    cdef void* ps = _data(scores)
    cdef int32_t* pl = <int32_t*>_data(labels)
    cdef void* pt = _data(targets)
    cdef double hits
    cdef bint f32 = dtype == np.float32
    with nogil:
        if f32:
            hits = _count_correct(metric, <float*>ps, pl, <float*>pt, n, c, LINEAR)
        else:
            hits = _count_correct(metric, <double*>ps, pl, <double*>pt, n, c, LINEAR)
    return hits


def count_nonfinite(a):
    """Return how many elements of ``a`` are NaN or infinite, in one pass, without temporaries.

    Args:
        a: float32 or float64 array of any shape, C-contiguous.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"a must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        raise TypeError(f"a must have dtype float32 or float64, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError("a must be C-contiguous (use numpy.ascontiguousarray)")
    cdef Py_ssize_t size = a.size, bad = 0, k, lo, hi
    # pieces taken by whichever thread is free, so a thread that lost its core holds back one
    # piece at most, not half the scan
    cdef Py_ssize_t pieces = max(1, min(size // _MIN_CHUNK, _SCAN_PIECES))
    cdef int threads = _n_threads if pieces >= 2 * _n_threads else 1
    if threads > 1 and _busy_cpus(threads):
        # the region's end waits for every thread: one without a core would cost more than
        # its share of the pieces saves
        threads = 1
    cdef void* pa = _data(a)
    cdef bint f32 = a.dtype == np.float32
    with nogil:
        for k in prange(pieces, num_threads=threads, schedule="dynamic"):
            lo = size * k // pieces
            hi = size * (k + 1) // pieces
            if f32:
                bad += simd.count_nonfinite_f32(<float*>pa + lo, hi - lo)
            else:
                bad += simd.count_nonfinite_f64(<double*>pa + lo, hi - lo)
    return bad


def dropout_forward(x, out, mask, double rate, seed, counter):
    """Inverted dropout: ``out = x * mask`` with mask 1/(1-rate) (kept) or 0 (dropped).

    Element i is kept when the counter-based uniform draw ``u(seed, counter + i)`` is >= rate,
    so the same (seed, counter) always gives the same mask.

    Args:
        x: float32 or float64 array, C-contiguous.
        out: OUT array like x.
        mask: OUT array like x.
        rate: fraction dropped, in [0, 1].
        seed: generator seed.
        counter: position in the generator's stream.
    """
    dtype = _check("x", x, x.ndim if isinstance(x, np.ndarray) else 1)
    _check("out", out, x.ndim, dtype, x.shape, writable=True)
    _check("mask", mask, x.ndim, dtype, x.shape, writable=True)
    _finite_scalar("rate", rate, 0.0, 1.0)
    if out.ctypes.data != x.ctypes.data:  # exactly in place is fine: element by element
        _no_overlap({"out": out}, {"x": x})
    _no_overlap({"mask": mask}, {"x": x, "out": out})
    cdef uint64_t c_seed = _int_in("seed", seed, 0, 2**64 - 1)
    cdef uint64_t c_counter = _int_in("counter", counter, 0, 2**64 - 1)
    cdef Py_ssize_t size = x.size
    cdef void* px = _data(x)
    cdef void* po = _data(out)
    cdef void* pm = _data(mask)
    cdef bint f32 = dtype == np.float32
    with nogil:
        if f32:
            _dropout_forward(<float*>px, <float*>po, <float*>pm, size, rate, c_seed, c_counter)
        else:
            _dropout_forward(<double*>px, <double*>po, <double*>pm, size, rate, c_seed, c_counter)



def _check_features(name, v, dtype, c, writable=False):
    """Check a per-feature vector (c,) of ``dtype``; None passes."""
    if v is not None:
        _check(name, v, 1, dtype, (c,), writable=writable)


def batch_normalization_forward(x, gamma, beta, moving_mean, moving_variance, out,
                                double momentum=0.99, double epsilon=1e-3, bint training=False):
    """Batch normalization over the last axis, as Keras 3's ``BatchNormalization``:
    ``out = (x - mean) / sqrt(variance + epsilon) * gamma + beta``.

    Args:
        x: float32 or float64 array of shape (n, c), C-contiguous, n >= 1.
        gamma: scale, shape (c,), or None (1).
        beta: offset, shape (c,), or None (0).
        moving_mean: IN/OUT shape (c,): the mean used at inference; updated when training.
        moving_variance: IN/OUT shape (c,), likewise.
        out: OUT array like x.
        momentum: in [0, 1]; training updates ``moving = moving·momentum + batch·(1 -
            momentum)``. Defaults to 0.99.
        epsilon: > 0, added to the variance. Defaults to 1e-3.
        training: normalize with the batch's mean and biased variance (and update the moving
            ones) instead of the moving ones. Defaults to False.
    """
    dtype = _check("x", x, 2)
    _check_rows("x", x)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    _check_features("gamma", gamma, dtype, c)
    _check_features("beta", beta, dtype, c)
    _check("moving_mean", moving_mean, 1, dtype, (c,), writable=training)
    _check("moving_variance", moving_variance, 1, dtype, (c,), writable=training)
    _check("out", out, 2, dtype, x.shape, writable=True)
    _no_overlap({"out": out, "moving_mean": moving_mean if training else None,
                 "moving_variance": moving_variance if training else None},
                {"x": x, "gamma": gamma, "beta": beta})
    if not training:
        _no_overlap({"out": out}, {"moving_mean": moving_mean,
                                   "moving_variance": moving_variance})
    _finite_scalar("momentum", momentum, 0.0, 1.0)
    _finite_scalar("epsilon", epsilon, 0.0)
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    stats = np.empty(_BN_STATS * c, dtype)
    cdef void* px = _data(x)
    cdef void* pg = _data(gamma)
    cdef void* pb = _data(beta)
    cdef void* pm = _data(moving_mean)
    cdef void* pv = _data(moving_variance)
    cdef void* po = _data(out)
    cdef void* ps = _data(stats)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _bn_forward(<float*>px, <float*>po, n, c, <float*>pg, <float*>pb, <float*>pm,
                        <float*>pv, epsilon, training, <float*>ps)
            if training:
                _moving_average(<float*>pm, <float*>ps, c, momentum)
                _moving_average(<float*>pv, <float*>ps + c, c, momentum)
        else:
            _bn_forward(<double*>px, <double*>po, n, c, <double*>pg, <double*>pb, <double*>pm,
                        <double*>pv, epsilon, training, <double*>ps)
            if training:
                _moving_average(<double*>pm, <double*>ps, c, momentum)
                _moving_average(<double*>pv, <double*>ps + c, c, momentum)
        fpenv_restore(state)


def batch_normalization_backward(x, gamma, grad, dgamma, dbeta, double epsilon=1e-3):
    """Backward pass of training-mode ``batch_normalization_forward`` (through the batch's mean
    and variance), from its input x.

    Args:
        x: the forward pass's input, float32 or float64, shape (n, c), C-contiguous, n >= 1.
        gamma: its scale, shape (c,), or None (1).
        grad: IN/OUT like x: dL/dout on entry, dL/dx on return.
        dgamma: OUT dL/dgamma, shape (c,), or None.
        dbeta: OUT dL/dbeta, shape (c,), or None.
        epsilon: the forward pass's epsilon, > 0. Defaults to 1e-3.
    """
    dtype = _check("x", x, 2)
    _check_rows("x", x)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    _check_features("gamma", gamma, dtype, c)
    _check("grad", grad, 2, dtype, x.shape, writable=True)
    _check_features("dgamma", dgamma, dtype, c, True)
    _check_features("dbeta", dbeta, dtype, c, True)
    _no_overlap({"grad": grad, "dgamma": dgamma, "dbeta": dbeta}, {"x": x, "gamma": gamma})
    _finite_scalar("epsilon", epsilon, 0.0)
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    stats = np.empty(_BN_STATS * c, dtype)
    out = np.empty_like(x)
    cdef void* px = _data(x)
    cdef void* pgamma = _data(gamma)
    cdef void* pg = _data(grad)
    cdef void* pdg = _data(dgamma)
    cdef void* pdb = _data(dbeta)
    cdef void* po = _data(out)
    cdef void* ps = _data(stats)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _bn_forward(<float*>px, <float*>po, n, c, <float*>pgamma, NULL, NULL, NULL, epsilon,
                        True, <float*>ps)
            _bn_backward(<float*>px, <float*>pg, n, c, <float*>ps, <float*>pdg, <float*>pdb,
                         True)
        else:
            _bn_forward(<double*>px, <double*>po, n, c, <double*>pgamma, NULL, NULL, NULL,
                        epsilon, True, <double*>ps)
            _bn_backward(<double*>px, <double*>pg, n, c, <double*>ps, <double*>pdg,
                         <double*>pdb, True)
        fpenv_restore(state)


def normalization_forward(x, mean, variance, out, bint invert=False, double epsilon=1e-7):
    """Keras 3's ``Normalization``: ``out = (x - mean) / max(sqrt(variance), epsilon)``, or with
    ``invert`` ``mean + x·max(sqrt(variance), epsilon)``.

    Args:
        x: float32 or float64 array of shape (n, c), C-contiguous.
        mean: shape (c,).
        variance: shape (c,), >= 0.
        out: OUT array like x.
        invert: Defaults to False.
        epsilon: > 0, Keras' ``backend.epsilon()``. Defaults to 1e-7.
    """
    dtype = _check("x", x, 2)
    cdef Py_ssize_t n = x.shape[0], c = x.shape[1]
    _check("mean", mean, 1, dtype, (c,))
    _check("variance", variance, 1, dtype, (c,))
    _check("out", out, 2, dtype, x.shape, writable=True)
    _no_overlap({"out": out}, {"x": x, "mean": mean, "variance": variance})
    _finite_scalar("epsilon", epsilon, 0.0)
    if epsilon <= 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    divisor = np.empty(c, dtype)
    cdef void* px = _data(x)
    cdef void* pm = _data(mean)
    cdef void* pv = _data(variance)
    cdef void* po = _data(out)
    cdef void* pd = _data(divisor)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _normalization_forward(<float*>px, <float*>po, n, c, <float*>pm, <float*>pv, epsilon,
                                   invert, <float*>pd)
        else:
            _normalization_forward(<double*>px, <double*>po, n, c, <double*>pm, <double*>pv,
                                   epsilon, invert, <double*>pd)
        fpenv_restore(state)

cdef object _run_update(OptConfig* c, params, grads, tuple slots, tuple names,
                        int64_t iteration):
    """Shared body of the public optimizer updates: check buffers, update without the GIL."""
    dtype = _check("params", params, 1, None, None, True)
    cdef tuple shape = params.shape
    _check("grads", grads, 1, dtype, shape)
    cdef void* ptr[3]
    cdef Py_ssize_t k, j
    for k in range(3):
        ptr[k] = NULL
    for k in range(len(slots)):
        slot = slots[k]
        if slot is None:
            continue
        _check(names[k], slot, 1, dtype, shape, writable=True)
        if _overlap(slot, params) or _overlap(slot, grads) or any(
                slots[j] is not None and _overlap(slot, slots[j]) for j in range(k)):
            raise ValueError(f"{names[k]} must not overlap params, grads or another slot")
        ptr[k] = _data(slot)
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    cdef Py_ssize_t size = params.shape[0]
    cdef void* pw = _data(params)
    cdef void* pg = _data(grads)
    cdef unsigned int state
    cdef bint f32 = dtype == np.float32
    with nogil:
        state = fpenv_flush_denormals()
        if f32:
            _update(c, <float*>pw, <float*>pg, <float*>ptr[0], <float*>ptr[1], <float*>ptr[2],
                    size, iteration)
        else:
            _update(c, <double*>pw, <double*>pg, <double*>ptr[0], <double*>ptr[1],
                    <double*>ptr[2], size, iteration)
        fpenv_restore(state)


def _require_slot(name, slot, needed):
    if needed and slot is None:
        raise ValueError(f"{name} is required for these hyper-parameters")
    if not needed and slot is not None:
        raise ValueError(f"{name} must be None for these hyper-parameters")


def sgd_update(params, grads, double learning_rate=0.01, double momentum=0.0,
               bint nesterov=False, velocity=None):
    """SGD step in place (Keras 3): ``w -= lr·g``, or with momentum
    ``v = momentum·v - lr·g; w += v`` (nesterov: ``w += momentum·v - lr·g``).

    Args:
        params: IN/OUT 1-D float32/float64 parameters (all of a model's, in one buffer).
        grads: gradients, like params.
        learning_rate: step size. Defaults to 0.01.
        momentum: in [0, 1]. Defaults to 0.0.
        nesterov: Nesterov momentum. Defaults to False.
        velocity: IN/OUT velocity slot like params; required when momentum > 0, else None.
    """
    cdef OptConfig c = _checked(_OPT_SGD, learning_rate, momentum, 0.9, 0.9, 0.999, 1e-7,
                                nesterov, False, False)
    _require_slot("velocity", velocity, momentum > 0)
    _run_update(&c, params, grads, (velocity,), ("velocity",), 0)


def adagrad_update(params, grads, accumulator, double learning_rate=0.001,
                   double epsilon=1e-7):
    """Adagrad step in place (Keras 3): ``s += g²; w -= lr·g / sqrt(s + ε)``.

    Args:
        params: IN/OUT 1-D float32/float64 parameters.
        grads: gradients, like params.
        accumulator: IN/OUT slot like params (starts at initial_accumulator_value).
        learning_rate: Defaults to 0.001.
        epsilon: added inside the square root, >= 0. Defaults to 1e-7.
    """
    cdef OptConfig c = _checked(_OPT_ADAGRAD, learning_rate, 0.0, 0.9, 0.9, 0.999, epsilon,
                                False, False, False)
    _require_slot("accumulator", accumulator, True)
    _run_update(&c, params, grads, (accumulator,), ("accumulator",), 0)


def rmsprop_update(params, grads, velocity, double learning_rate=0.001, double rho=0.9,
                   double momentum=0.0, double epsilon=1e-7, bint centered=False,
                   momentum_buffer=None, average_gradient=None):
    """RMSprop step in place (Keras 3).

    ``r = rho·r + (1-rho)·g²``; centered: ``c = rho·c + (1-rho)·g``, ``d = r - c² + ε``, else
    ``d = r + ε``; ``u = lr·g / sqrt(d)``; with momentum ``b = momentum·b + u; w -= b``, else
    ``w -= u``.

    Args:
        params: IN/OUT 1-D float32/float64 parameters.
        grads: gradients, like params.
        velocity: IN/OUT slot r, like params.
        learning_rate: Defaults to 0.001.
        rho: in [0, 1). Defaults to 0.9.
        momentum: Defaults to 0.0.
        epsilon: added inside the square root, >= 0. Defaults to 1e-7.
        centered: Defaults to False.
        momentum_buffer: IN/OUT slot b; required when momentum > 0, else None.
        average_gradient: IN/OUT slot c; required when centered, else None.
    """
    cdef OptConfig c = _checked(_OPT_RMSPROP, learning_rate, momentum, rho, 0.9, 0.999, epsilon,
                                False, centered, False)
    _require_slot("velocity", velocity, True)
    _require_slot("momentum_buffer", momentum_buffer, momentum > 0)
    _require_slot("average_gradient", average_gradient, centered)
    _run_update(&c, params, grads, (velocity, momentum_buffer, average_gradient),
                ("velocity", "momentum_buffer", "average_gradient"), 0)


def adam_update(params, grads, m, v, iteration, double learning_rate=0.001,
                double beta_1=0.9, double beta_2=0.999, double epsilon=1e-7,
                bint amsgrad=False, v_hat=None):
    """Adam step in place (Keras 3), for step ``t = iteration + 1``.

    ``a = lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)``; ``m += (1-beta_1)(g - m)``;
    ``v += (1-beta_2)(g² - v)``; amsgrad: ``v̂ = max(v̂, v)`` used instead of v;
    ``w -= a·m / (sqrt(v) + ε)`` (ε outside the root, on the uncorrected v). In float32 without
    amsgrad and with ε > 0, in the AVX2 and AVX-512 variants, the division is a reciprocal
    estimate refined by a Newton step, within a few ulp of the exact quotient (``simd/adam.h``).

    Args:
        params: IN/OUT 1-D float32/float64 parameters.
        grads: gradients, like params.
        m: IN/OUT first-moment slot.
        v: IN/OUT second-moment slot.
        iteration: steps already taken (Keras' ``optimizer.iterations``), >= 0.
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
        amsgrad: Defaults to False.
        v_hat: IN/OUT slot, required when amsgrad, else None.
    """
    cdef OptConfig c = _checked(_OPT_ADAM, learning_rate, 0.0, 0.9, beta_1, beta_2, epsilon,
                                False, False, amsgrad)
    _require_slot("m", m, True)
    _require_slot("v", v, True)
    _require_slot("v_hat", v_hat, amsgrad)
    _run_update(&c, params, grads, (m, v, v_hat), ("m", "v", "v_hat"),
                _int_in("iteration", iteration, 0, 2**62))


def nadam_update(params, grads, m, v, iteration, double learning_rate=0.001,
                 double beta_1=0.9, double beta_2=0.999, double epsilon=1e-7):
    """Nadam step in place (Keras 3), for step ``t = iteration + 1``.

    With the momentum cache ``u_k = beta_1·(1 - 0.5·0.96^k)`` and ``P_k = u_1···u_k``:
    ``m += (1-beta_1)(g - m)``; ``v += (1-beta_2)(g² - v)``;
    ``m̂ = u_{t+1}·m / (1 - P_{t+1}) + (1 - u_t)·g / (1 - P_t)``; ``v̂ = v / (1 - beta_2^t)``;
    ``w -= m̂·lr / (sqrt(v̂) + ε)``. P_t is formed step by step from P_0 = 1, as Keras keeps it.

    Args:
        params: IN/OUT 1-D float32/float64 parameters.
        grads: gradients, like params.
        m: IN/OUT first-moment slot.
        v: IN/OUT second-moment slot.
        iteration: steps already taken (Keras' ``optimizer.iterations``), >= 0.
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
    """
    cdef OptConfig c = _checked(_OPT_NADAM, learning_rate, 0.0, 0.9, beta_1, beta_2, epsilon,
                                False, False, False)
    _require_slot("m", m, True)
    _require_slot("v", v, True)
    _run_update(&c, params, grads, (m, v), ("m", "v"), _int_in("iteration", iteration, 0, 2**62))


def adamax_update(params, grads, m, u, iteration, double learning_rate=0.001,
                  double beta_1=0.9, double beta_2=0.999, double epsilon=1e-7):
    """Adamax step in place (Keras 3), for step ``t = iteration + 1``: ``m += (1-beta_1)(g - m)``;
    ``u = max(beta_2·u, |g|)``; ``w -= lr·m / ((1 - beta_1^t)(u + ε))``.

    Args:
        params: IN/OUT 1-D float32/float64 parameters.
        grads: gradients, like params.
        m: IN/OUT first-moment slot.
        u: IN/OUT slot, the exponentially weighted infinity norm.
        iteration: steps already taken (Keras' ``optimizer.iterations``), >= 0.
        learning_rate: Defaults to 0.001.
        beta_1: in [0, 1). Defaults to 0.9.
        beta_2: in [0, 1). Defaults to 0.999.
        epsilon: >= 0. Defaults to 1e-7.
    """
    cdef OptConfig c = _checked(_OPT_ADAMAX, learning_rate, 0.0, 0.9, beta_1, beta_2, epsilon,
                                False, False, False)
    _require_slot("m", m, True)
    _require_slot("u", u, True)
    _run_update(&c, params, grads, (m, u), ("m", "u"), _int_in("iteration", iteration, 0, 2**62))


def nadam_u_product(iteration, double beta_1=0.9, dtype=np.float32):
    """Nadam's product of momentum caches after ``iteration`` steps (Keras' ``_u_product``
    variable), in ``dtype`` (float32 or float64) as Keras forms it step by step.

    Returns:
        a float (0 < value <= 1; once below 2^-60 it no longer changes a step, and is returned
        as it stood then).
    """
    cdef int64_t steps = _int_in("iteration", iteration, 0, 2**62)
    _decay("beta_1", beta_1)
    if np.dtype(dtype) == np.float32:
        return float(_nadam_product(beta_1, steps, <float*>NULL))
    if np.dtype(dtype) == np.float64:
        return float(_nadam_product(beta_1, steps, <double*>NULL))
    raise TypeError(f"dtype must be float32 or float64, got {dtype}")


def learning_rate_at(opt, iteration):
    """The learning rate the training loop uses for the step after ``iteration`` steps with
    the optimizer settings ``opt`` (an ``OptimizerConfig`` or a dict of its arguments): its
    schedule's value, or its constant learning rate."""
    cdef OptimizerConfig c = _as_config(opt)
    return _learning_rate_at(&c.rate_schedule, c.c.learning_rate,
                             _int_in("iteration", iteration, 0, 2**62))
