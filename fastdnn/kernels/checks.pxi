# Argument checks at the Python boundary.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- argument checks at the Python boundary

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
cdef Py_ssize_t _INT_MAX = 2**31 - 1


cdef void* _data(object a):
    """Data pointer of a checked ndarray, or NULL for None."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef object _check(str name, object a, int ndim, object dtype=None, tuple shape=None,
                   bint writable=False):
    """Check one array argument; return its dtype. Raise TypeError/ValueError naming ``name``.

    Reads the array's fields through NumPy's C API: the optimizer updates are called once per
    training step, and attribute lookups would cost more than a small update itself.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef object got = <object>cnp.PyArray_DESCR(arr)
    cdef int axis
    if dtype is None:
        if got is not _FLOATS[0] and got is not _FLOATS[1] and got not in _FLOATS:
            raise TypeError(f"{name} must have dtype float32 or float64, got {got}")
    elif got is not dtype and got != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {got}")
    if cnp.PyArray_NDIM(arr) != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {a.shape}")
    if shape is not None:
        for axis in range(min(ndim, len(shape))):
            if shape[axis] is not None and cnp.PyArray_DIM(arr, axis) != shape[axis]:
                raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape} "
                                 f"(mismatch on axis {axis})")
    if not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name} is read-only; an output buffer must be writable")
    if cnp.PyArray_SIZE(arr) > _INT_MAX:
        raise ValueError(f"{name} is too large for the kernels ({a.size} elements)")
    return got


cdef bint _overlap(cnp.ndarray a, cnp.ndarray b):
    """Whether two C-contiguous arrays share memory (each occupies one interval of bytes)."""
    cdef char* pa = <char*>cnp.PyArray_DATA(a)
    cdef char* pb = <char*>cnp.PyArray_DATA(b)
    return pa < pb + cnp.PyArray_NBYTES(b) and pb < pa + cnp.PyArray_NBYTES(a) and \
        cnp.PyArray_NBYTES(a) > 0 and cnp.PyArray_NBYTES(b) > 0


def _check_rows(name, a):
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty: a batch needs at least one row")
    if a.ndim == 2 and a.shape[1] == 0:
        raise ValueError(f"{name} has no columns: it needs at least one")


def _check_labels(labels, n, n_classes):
    _check("labels", labels, 1, np.int32, (n,))
    if n and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}); got values from "
                         f"{labels.min()} to {labels.max()}")


def _activation_code(activation, bint fused=False):
    """The code of an activation name or code; ``fused``: one a dense layer can apply."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        activation = ACTIVATIONS[activation]
    elif activation not in ACTIVATIONS.values():
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if fused and activation in UNFUSED_ACTIVATIONS:
        raise ValueError("gelu, silu and leaky_relu cannot be fused into a dense layer: apply "
                         "them with activation_forward/activation_backward")
    return activation


def _int_in(name, value, low, high):
    """Check an integer argument against [low, high] (C integer types would overflow silently
    or raise OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value}")
    return int(value)


def _no_overlap(outputs, inputs):
    """Refuse an output buffer that shares memory with an input or another output."""
    seen = [(name, a) for name, a in inputs.items() if a is not None]
    for name, out in outputs.items():
        if out is None:
            continue
        for other_name, other in seen:
            if np.may_share_memory(out, other):
                raise ValueError(f"{name} must not overlap {other_name}")
        seen.append((name, out))


cdef double _finite_scalar(str name, double v, double low=-INFINITY,
                           double high=INFINITY) except? -1:
    if not isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if v < low or v > high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {v}")
    return v


cdef double _decay(str name, double v) except? -1:
    """A decay factor (Adam's betas, RMSprop's rho) in [0, 1): at 1 or beyond the running
    averages stop averaging or grow without bound."""
    _finite_scalar(name, v, 0.0)
    if v >= 1:
        raise ValueError(f"{name} must lie in [0, 1), got {v}")
    return v


_SPARSE_METRICS = (METRIC_SPARSE_ACC, METRIC_SPARSE_TOP_K)


def _metric_specs(metric, loss, n_outputs):
    """Check Network's ``metric`` argument; return int64 arrays of codes, ks and weighted
    flags."""
    if isinstance(metric, (int, np.integer)):
        if metric not in (METRIC_NONE, METRIC_SPARSE_ACC, METRIC_CATEGORICAL_ACC,
                          METRIC_BINARY_ACC):
            raise ValueError(f"unknown metric code {metric}")
        specs = [] if metric == METRIC_NONE else [(metric, 0, False)]
    else:
        specs = [tuple(spec) for spec in metric]
        if len(specs) > _MAX_METRICS or any(len(spec) not in (2, 3) for spec in specs):
            raise ValueError(f"metric must be a list of at most {_MAX_METRICS} (code, k) or "
                             "(code, k, weighted) tuples")
        specs = [spec if len(spec) == 3 else spec + (False,) for spec in specs]
    for code, k, _ in specs:
        if code not in range(METRIC_SPARSE_ACC, METRIC_RECALL + 1):
            raise ValueError(f"unknown metric code {code}")
        if (code in _SPARSE_METRICS) != (loss == LOSS_SPARSE_CE) \
                and not (code == METRIC_BINARY_ACC and n_outputs == 1):
            raise ValueError("metric and loss must both read integer labels (sparse) or both "
                             "read target arrays (binary accuracy reads labels for one output)")
        if code == METRIC_SPARSE_TOP_K:
            _int_in("k", k, 1, _INT_MAX)
    return (np.array([spec[0] for spec in specs], np.int64),
            np.array([spec[1] for spec in specs], np.int64),
            np.array([bool(spec[2]) for spec in specs], np.int64))
