# Per-feature normalization: batch normalization and Keras' Normalization layer.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- batch normalization (Keras 3's BatchNormalization over the last axis)
#
# Training normalizes with the batch's mean and biased variance; inference with the moving
# ones. Either way the output is Keras' ``x·scale + shift``, scale = gamma / sqrt(var + epsilon),
# shift = beta - mean·scale. The per-feature vectors live in a small stats area of the
# workspace (``_BN_STATS`` vectors of the layer's width): the batch's mean and variance, the
# inverse standard deviation, the scale, the shift, and the backward pass's two sums.

cdef enum:
    _BN_SCALE = 1   # the op's flags (its ``act`` field): gamma is a weight
    _BN_CENTER = 2  # beta is a weight
    _BN_STATS = 7   # vectors in a batch-normalization op's stats area
BN_SCALE, BN_CENTER = _BN_SCALE, _BN_CENTER


cdef void _column_moments(const floating* x, Py_ssize_t n, Py_ssize_t c, floating* mean,
                          floating* var) noexcept nogil:
    """OUT the mean and the biased variance (Keras' ``ops.moments``) of each column of x
    (n x c): two passes, the rows summed in order."""
    cdef Py_ssize_t i, j
    cdef floating d
    for j in range(c):
        mean[j] = 0
        var[j] = 0
    for i in range(n):
        for j in range(c):
            mean[j] += x[i * c + j]
    for j in range(c):
        mean[j] /= n
    for i in range(n):
        for j in range(c):
            d = x[i * c + j] - mean[j]
            var[j] += d * d
    for j in range(c):
        var[j] /= n


cdef void _bn_coefficients(const floating* mean, const floating* var, const floating* gamma,
                           const floating* beta, Py_ssize_t c, double epsilon, floating* istd,
                           floating* scale, floating* shift) noexcept nogil:
    """OUT istd = 1 / sqrt(var + epsilon), scale = istd·gamma, shift = -mean·scale + beta, as
    Keras' ``ops.batch_normalization`` (gamma, beta NULL: 1 and 0)."""
    cdef Py_ssize_t j
    for j in range(c):
        istd[j] = 1 / _sqrt(var[j] + <floating>epsilon)
        scale[j] = istd[j] * gamma[j] if gamma != NULL else istd[j]
        shift[j] = -mean[j] * scale[j]
        if beta != NULL:
            shift[j] += beta[j]


cdef void _scale_shift(const floating* x, floating* out, Py_ssize_t n, Py_ssize_t c,
                       const floating* scale, const floating* shift) noexcept nogil:
    """OUT out = x·scale + shift, scale and shift per column of x (n x c)."""
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(c):
            out[i * c + j] = x[i * c + j] * scale[j] + shift[j]


cdef void _moving_average(floating* moving, const floating* batch, Py_ssize_t c,
                          double momentum) noexcept nogil:
    """IN/OUT moving = moving·momentum + batch·(1 - momentum), as Keras updates moving_mean and
    moving_variance."""
    cdef Py_ssize_t j
    cdef floating keep = <floating>momentum, take = <floating>(1.0 - momentum)
    for j in range(c):
        moving[j] = moving[j] * keep + batch[j] * take


cdef void _bn_forward(const floating* x, floating* out, Py_ssize_t n, Py_ssize_t c,
                      const floating* gamma, const floating* beta, const floating* moving_mean,
                      const floating* moving_var, double epsilon, bint training,
                      floating* stats) noexcept nogil:
    """OUT out (n x c): x batch-normalized, with the batch's statistics when ``training`` (left
    in ``stats`` for the backward pass and the moving averages), else the moving ones. stats:
    scratch of ``_BN_STATS`` x c."""
    cdef floating* mean = stats
    cdef floating* var = stats + c
    if training:
        _column_moments(x, n, c, mean, var)
    else:
        memcpy(mean, moving_mean, c * sizeof(floating))
        memcpy(var, moving_var, c * sizeof(floating))
    _bn_coefficients(mean, var, gamma, beta, c, epsilon, stats + 2 * c, stats + 3 * c,
                     stats + 4 * c)
    _scale_shift(x, out, n, c, stats + 3 * c, stats + 4 * c)


cdef void _bn_backward(const floating* x, floating* g, Py_ssize_t n, Py_ssize_t c,
                       const floating* stats, floating* dgamma, floating* dbeta,
                       bint want_dx) noexcept nogil:
    """From IN g = dL/dout of a training-mode ``_bn_forward`` (its stats, x its input): OUT
    dgamma = Σ g·x̂ and dbeta = Σ g over the rows (either NULL: not wanted), x̂ = (x - mean)·istd;
    with want_dx, g is overwritten with dL/dx = scale / n · (n·g - Σ g - x̂·Σ g·x̂), the gradient
    through the batch's mean and variance."""
    cdef Py_ssize_t i, j
    cdef const floating* mean = stats
    cdef const floating* istd = stats + 2 * c
    cdef const floating* scale = stats + 3 * c
    cdef floating* sum_g = <floating*>stats + 5 * c
    cdef floating* sum_gx = <floating*>stats + 6 * c
    cdef floating xhat, rows = <floating>n
    for j in range(c):
        sum_g[j] = 0
        sum_gx[j] = 0
    for i in range(n):
        for j in range(c):
            sum_g[j] += g[i * c + j]
            sum_gx[j] += g[i * c + j] * ((x[i * c + j] - mean[j]) * istd[j])
    if dgamma != NULL:
        memcpy(dgamma, sum_gx, c * sizeof(floating))
    if dbeta != NULL:
        memcpy(dbeta, sum_g, c * sizeof(floating))
    if not want_dx:
        return
    for i in range(n):
        for j in range(c):
            xhat = (x[i * c + j] - mean[j]) * istd[j]
            g[i * c + j] = scale[j] / rows * (rows * g[i * c + j] - sum_g[j] - xhat * sum_gx[j])


# --- Keras' Normalization layer: (x - mean) / max(sqrt(variance), epsilon), or its inverse

cdef void _normalization_forward(const floating* x, floating* out, Py_ssize_t n, Py_ssize_t c,
                                 const floating* mean, const floating* var, double epsilon,
                                 bint invert, floating* divisor) noexcept nogil:
    """OUT out = (x - mean) / divisor, or with ``invert`` mean + x·divisor, divisor (OUT, c) =
    max(sqrt(variance), epsilon) per column, as Keras' Normalization."""
    cdef Py_ssize_t i, j
    cdef floating floor = <floating>epsilon
    for j in range(c):
        divisor[j] = _sqrt(var[j])
        if not divisor[j] >= floor:  # NaN stays NaN, as Keras' maximum
            divisor[j] = floor if divisor[j] < floor else divisor[j]
    for i in range(n):
        for j in range(c):
            if invert:
                out[i * c + j] = mean[j] + x[i * c + j] * divisor[j]
            else:
                out[i * c + j] = (x[i * c + j] - mean[j]) / divisor[j]


cdef void _scale_columns(floating* g, Py_ssize_t n, Py_ssize_t c, const floating* v,
                         bint divide) noexcept nogil:
    """IN/OUT g (n x c) multiplied, or with ``divide`` divided, by v per column: the backward
    pass of a per-feature scale (a normalization, a batch normalization at inference)."""
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(c):
            if divide:
                g[i * c + j] /= v[j]
            else:
                g[i * c + j] *= v[j]
