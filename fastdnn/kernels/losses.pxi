# Fused losses and the metrics' per-batch sums.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- losses (mean over the batch; gradients already divided by the batch size)

cdef floating _log_sum_exp_row(const floating* z, floating* p, Py_ssize_t c,
                               floating scale) noexcept nogil:
    """Return log Σ exp(z) computed stably; OUT p = scale·softmax(z) unless p is NULL."""
    cdef Py_ssize_t j
    cdef floating m, s = _softmax_terms(z, p, c, &m)
    if p != NULL:
        scale /= s
        for j in range(c):
            p[j] *= scale
    return _log(s) + m


cdef double _sparse_softmax_xent(const floating* z, const int32_t* labels, floating* grad,
                                 Py_ssize_t n, Py_ssize_t c, floating scale) noexcept nogil:
    """Return Σ_i -log softmax(z_i)[y_i]; OUT grad = scale·(softmax(z) - onehot(y)) unless NULL."""
    cdef Py_ssize_t i
    cdef double total = 0
    cdef floating* g = NULL
    for i in range(n):
        if grad != NULL:
            g = grad + i * c
        total += _log_sum_exp_row(z + i * c, g, c, scale) - z[i * c + labels[i]]
        if g != NULL:
            g[labels[i]] -= scale
    return total


cdef double _softmax_xent(const floating* z, const floating* y, floating* grad, Py_ssize_t n,
                          Py_ssize_t c, floating scale) noexcept nogil:
    """Return Σ_i Σ_k -y_ik log softmax(z_i)_k; OUT grad = scale·(softmax(z)·Σ_k y_ik - y)."""
    cdef Py_ssize_t i, j
    cdef double total = 0
    cdef floating lse, ysum
    cdef floating* g = NULL
    for i in range(n):
        if grad != NULL:
            g = grad + i * c
        lse = _log_sum_exp_row(z + i * c, g, c, scale)
        ysum = 0
        for j in range(c):
            ysum += y[i * c + j]
            if y[i * c + j] != 0:  # 0·(lse - z) is 0 even where z is huge
                total += y[i * c + j] * (lse - z[i * c + j])
        if g != NULL:
            for j in range(c):
                g[j] = g[j] * ysum - scale * y[i * c + j]
    return total


cdef double _sigmoid_bce(const floating* z, const floating* y, floating* grad, Py_ssize_t n,
                         Py_ssize_t c, floating scale) noexcept nogil:
    """Return Σ_i mean_k BCE(y, sigmoid(z)) from logits; OUT grad = scale/c·(sigmoid(z) - y)."""
    cdef Py_ssize_t i, size = n * c
    cdef double total = 0
    cdef floating zi
    scale /= c
    for i in range(size):
        zi = z[i]
        total += (zi if zi > 0 else 0) - zi * y[i] + _log1p(_exp(-fabs(zi)))
        if grad != NULL:
            grad[i] = scale * (_sigmoid(zi) - y[i])
    return total / c


cdef double _mse(const floating* p, const floating* y, floating* grad, Py_ssize_t n, Py_ssize_t c,
                 floating scale) noexcept nogil:
    """Return Σ_i mean_k (p - y)²; OUT grad = scale/c·2(p - y)."""
    cdef Py_ssize_t i, size = n * c
    cdef double total = 0
    cdef floating d
    scale /= c
    for i in range(size):
        d = p[i] - y[i]
        total += d * d
        if grad != NULL:
            grad[i] = scale * 2 * d
    return total / c


cdef double _loss(int kind, const floating* out, const int32_t* labels, const floating* y,
                  floating* grad, Py_ssize_t n, Py_ssize_t c, floating scale) noexcept nogil:
    """Dispatch to the loss ``kind``: return the sum of per-sample losses, OUT grad (or NULL)."""
    if kind == LOSS_SPARSE_CE:
        return _sparse_softmax_xent(out, labels, grad, n, c, scale)
    if kind == LOSS_CE:
        return _softmax_xent(out, y, grad, n, c, scale)
    if kind == LOSS_BCE:
        return _sigmoid_bce(out, y, grad, n, c, scale)
    return _mse(out, y, grad, n, c, scale)


cdef double _weighted_loss(int kind, const floating* out, const int32_t* labels,
                           const floating* y, const floating* w, floating* grad, Py_ssize_t n,
                           Py_ssize_t c, floating scale) noexcept nogil:
    """``_loss`` with per-sample weights w (NULL: all 1): return Σ_i w_i·loss_i, OUT grad with
    row i scaled by w_i (Keras' sample_weight under 'sum_over_batch_size')."""
    cdef Py_ssize_t i
    cdef double total = 0
    if w == NULL:
        return _loss(kind, out, labels, y, grad, n, c, scale)
    for i in range(n):
        total += w[i] * _loss(kind, out + i * c, labels + i if labels != NULL else NULL,
                              y + i * c if y != NULL else NULL,
                              grad + i * c if grad != NULL else NULL, 1, c, scale * w[i])
    return total


# --- accuracy counts

cdef inline Py_ssize_t _argmax_row(const floating* s, Py_ssize_t c) noexcept nogil:
    """Index of the first maximum of s[0:c]."""
    cdef Py_ssize_t j, best = 0
    for j in range(1, c):
        if s[j] > s[best]:
            best = j
    return best


cdef inline floating _softmax_scale(const floating* s, Py_ssize_t c, floating* m) noexcept nogil:
    """OUT m: the maximum of s[0:c]; return 1 / sum(exp(s - m)), as ``_activation_forward``
    computes softmax(s)[j] = exp(s[j] - m)·scale."""
    return 1 / _softmax_terms(s, <floating*>NULL, c, m)


cdef inline floating _probability(floating v, int act, floating m, floating scale) noexcept nogil:
    """The model's output for score v: the fused activation ``act`` applied (softmax through the
    row's m and scale from ``_softmax_scale``)."""
    if act == SIGMOID:
        return _sigmoid(v)
    if act == SOFTMAX:
        return _exp(v - m) * scale
    return v


cdef double _count_correct(int metric, const floating* s, const int32_t* labels,
                           const floating* y, Py_ssize_t n, Py_ssize_t c, int act) noexcept nogil:
    """Return the number of correct samples (binary: mean over the row of element hits; with
    labels instead of y, as Keras for a one-unit output, the label is the row's target).

    ``act`` is applied to the scores first where it matters (a fused sigmoid or softmax for
    binary accuracy, which thresholds the probabilities).
    """
    cdef Py_ssize_t i, j
    cdef double hits = 0, row
    cdef floating p, m = 0, scale = 1
    if metric == METRIC_SPARSE_ACC:
        for i in range(n):
            hits += _argmax_row(s + i * c, c) == labels[i]
    elif metric == METRIC_CATEGORICAL_ACC:
        for i in range(n):
            hits += _argmax_row(s + i * c, c) == _argmax_row(y + i * c, c)
    elif metric == METRIC_BINARY_ACC:
        for i in range(n):
            row = 0
            if act == SOFTMAX:
                scale = _softmax_scale(s + i * c, c, &m)
            for j in range(c):
                p = _probability(s[i * c + j], act, m, scale)
                row += (1 if p > 0.5 else 0) == (y[i * c + j] if y != NULL else labels[i])
            hits += row / c
    return hits


cdef void _metric_sums(int metric, int k, const floating* s, const int32_t* labels,
                       const floating* y, const floating* w, Py_ssize_t n, Py_ssize_t c, int act,
                       double* out) noexcept nogil:
    """OUT out[0:2]: one metric's sums over a batch, each sample counting w[i] times (w NULL:
    once), from which Python finishes the value, out[0] / out[1], as Keras' weighted metrics.

    Accuracies and top-k: (Σ w·hit, Σ w). MAE, MSE: (Σ w·(the row's mean |y - p| or (y - p)²),
    Σ w). Precision, recall, over every element at threshold 0.5: (Σ w·true positives,
    Σ w·predicted positives) or (Σ w·true positives, Σ w·actual positives). p is the model's
    output (``act`` applied); top-k compares scores, which the activation does not reorder.
    """
    cdef Py_ssize_t i, j, above
    cdef double a = 0, b = 0, row, positives, weight = 1
    cdef floating p, d, m = 0, scale = 1
    cdef bint predicted, actual
    if metric <= METRIC_BINARY_ACC and w == NULL:
        out[0], out[1] = _count_correct(metric, s, labels, y, n, c, act), n
        return
    for i in range(n):
        if w != NULL:
            weight = w[i]
        if metric <= METRIC_BINARY_ACC:
            a += weight * _count_correct(metric, s + i * c, labels + i if labels != NULL else NULL,
                                         y + i * c if y != NULL else NULL, 1, c, act)
            b += weight
            continue
        if metric == METRIC_SPARSE_TOP_K:
            above = 0
            for j in range(c):
                above += s[i * c + j] > s[i * c + labels[i]]
            a += weight * (above < k)
            b += weight
            continue
        if act == SOFTMAX:
            scale = _softmax_scale(s + i * c, c, &m)
        row = positives = 0
        for j in range(c):
            p = _probability(s[i * c + j], act, m, scale)
            d = y[i * c + j] - p
            if metric == METRIC_MAE:
                row += fabs(d)
            elif metric == METRIC_MSE:
                row += d * d
            else:
                predicted, actual = p > 0.5, y[i * c + j] > 0.5
                row += predicted and actual
                positives += predicted if metric == METRIC_PRECISION else actual
        if metric == METRIC_MAE or metric == METRIC_MSE:
            a += weight * row / c
            b += weight
        else:
            a += weight * row
            b += weight * positives
    out[0], out[1] = a, b
