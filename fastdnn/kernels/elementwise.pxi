# Activations and dropout: element-wise forward and backward.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- activations

# SELU's constants (Klambauer et al.), as Keras writes them
cdef double _SELU_ALPHA = 1.6732632423543772848170429916717
cdef double _SELU_SCALE = 1.0507009873554804934193349852946


cdef inline floating _softmax_terms(const floating* z, floating* p, Py_ssize_t c,
                                    floating* m) noexcept nogil:
    """OUT m: the maximum of z[0:c]; OUT p = exp(z - m) unless p is NULL (p may be z); return
    Σ exp(z - m), so that softmax(z) = p / that sum. The one softmax of the kernels."""
    cdef Py_ssize_t j
    cdef floating top = z[0], s = 0
    for j in range(1, c):
        if z[j] > top:
            top = z[j]
    if p == NULL:
        for j in range(c):
            s += _exp(z[j] - top)
    else:
        for j in range(c):
            p[j] = _exp(z[j] - top)
            s += p[j]
    m[0] = top
    return s


cdef void _activation_forward(const floating* z, floating* a, Py_ssize_t n, Py_ssize_t c,
                              int act, double param=0) noexcept nogil:
    """OUT a = act(z), row by row; z and a may be the same buffer. ``param`` is leaky_relu's
    negative slope."""
    cdef Py_ssize_t i, j, size = n * c
    cdef floating m, s, v
    cdef floating slope = <floating>param, sa = <floating>(_SELU_SCALE * _SELU_ALPHA)
    cdef floating scale = <floating>_SELU_SCALE, root_half = <floating>M_SQRT1_2
    if act == LINEAR:
        if a != z:
            memcpy(a, z, size * sizeof(floating))
    elif act == RELU:
        for i in range(size):
            a[i] = 0 if z[i] <= 0 else z[i]  # NaN stays NaN, as np.maximum
    elif act == SIGMOID:
        for i in range(size):
            a[i] = _sigmoid(z[i])
    elif act == TANH:
        for i in range(size):
            a[i] = _tanh(z[i])
    elif act == ELU:
        for i in range(size):
            a[i] = z[i] if z[i] > 0 else _expm1(z[i])
    elif act == SELU:
        for i in range(size):
            a[i] = scale * z[i] if z[i] > 0 else sa * _expm1(z[i])
    elif act == GELU:
        for i in range(size):
            a[i] = <floating>0.5 * z[i] * (1 + _erf(z[i] * root_half))
    elif act == SILU:
        for i in range(size):
            a[i] = z[i] * _sigmoid(z[i])
    elif act == SOFTPLUS:
        for i in range(size):
            v = z[i] if z[i] > 0 else 0
            a[i] = v + _log1p(_exp(-(z[i] if z[i] > 0 else -z[i])))
    elif act == SOFTSIGN:
        for i in range(size):
            a[i] = z[i] / (1 + (z[i] if z[i] > 0 else -z[i]))
    elif act == LEAKY_RELU:
        for i in range(size):
            a[i] = slope * z[i] if z[i] < 0 else z[i]
    elif act == RELU6 or act == HARD_SIGMOID:
        # hard_sigmoid = relu6(z + 3) / 6, as Keras 3
        for i in range(size):
            v = z[i] + 3 if act == HARD_SIGMOID else z[i]
            v = 0 if v <= 0 else (6 if v > 6 else v)  # NaN stays NaN
            a[i] = v / 6 if act == HARD_SIGMOID else v
    elif act == EXPONENTIAL:
        for i in range(size):
            a[i] = _exp(z[i])
    elif act == SOFTMAX:
        for i in range(n):
            s = 1 / _softmax_terms(z + i * c, a + i * c, c, &m)
            for j in range(c):
                a[i * c + j] *= s


cdef void _activation_backward(const floating* a, floating* g, Py_ssize_t n, Py_ssize_t c,
                               int act, const floating* z=NULL, double param=0) noexcept nogil:
    """IN/OUT g: dL/dA on entry, dL/dZ on exit, from the activation's output a = act(z); gelu
    and silu read the input z instead, leaky_relu its negative slope ``param``."""
    cdef Py_ssize_t i, j, size = n * c
    cdef floating dot, s, cdf
    cdef floating slope = <floating>param, sa = <floating>(_SELU_SCALE * _SELU_ALPHA)
    cdef floating scale = <floating>_SELU_SCALE, root_half = <floating>M_SQRT1_2
    cdef floating density = <floating>(0.5 * M_2_SQRTPI * M_SQRT1_2)  # 1 / sqrt(2 pi)
    if act == RELU:
        for i in range(size):
            g[i] = g[i] if a[i] > 0 else 0
    elif act == SIGMOID:
        for i in range(size):
            g[i] = g[i] * a[i] * (1 - a[i])
    elif act == TANH:
        for i in range(size):
            g[i] = g[i] * (1 - a[i] * a[i])
    elif act == ELU:
        for i in range(size):  # exp(z) = a + 1 where z <= 0
            g[i] = g[i] if a[i] > 0 else g[i] * (a[i] + 1)
    elif act == SELU:
        for i in range(size):
            g[i] = g[i] * scale if a[i] > 0 else g[i] * (a[i] + sa)
    elif act == GELU:
        for i in range(size):
            cdf = <floating>0.5 * (1 + _erf(z[i] * root_half))
            g[i] = g[i] * (cdf + z[i] * density * _exp(<floating>-0.5 * z[i] * z[i]))
    elif act == SILU:
        for i in range(size):
            s = _sigmoid(z[i])
            g[i] = g[i] * s * (1 + z[i] * (1 - s))
    elif act == SOFTPLUS:
        for i in range(size):  # sigmoid(z) = 1 - exp(-a)
            g[i] = -g[i] * _expm1(-a[i])
    elif act == SOFTSIGN:
        for i in range(size):  # 1 / (1 + |z|)^2 = (1 - |a|)^2
            s = 1 - (a[i] if a[i] > 0 else -a[i])
            g[i] = g[i] * s * s
    elif act == LEAKY_RELU:
        for i in range(size):  # slope >= 0: a > 0 exactly where z > 0
            g[i] = g[i] if a[i] > 0 else g[i] * slope
    elif act == RELU6:
        for i in range(size):
            g[i] = g[i] if 0 < a[i] < 6 else 0
    elif act == HARD_SIGMOID:
        for i in range(size):
            g[i] = g[i] / 6 if 0 < a[i] < 1 else 0
    elif act == EXPONENTIAL:
        for i in range(size):
            g[i] = g[i] * a[i]
    elif act == SOFTMAX:
        for i in range(n):
            dot = 0
            for j in range(c):
                dot += g[i * c + j] * a[i * c + j]
            for j in range(c):
                g[i * c + j] = a[i * c + j] * (g[i * c + j] - dot)


# --- dropout: a counter-based generator, so the NumPy reference draws the same masks

cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    """The splitmix64 finaliser: a well-mixed 64-bit hash of z."""
    z = (z ^ (z >> 30)) * <uint64_t>0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef void _dropout_forward(const floating* x, floating* out, floating* mask, Py_ssize_t size,
                           double rate, uint64_t seed, uint64_t counter) noexcept nogil:
    """OUT mask[i] = 1/keep where uniform(seed, counter + i) >= rate, else 0; OUT out = x·mask."""
    cdef Py_ssize_t i
    cdef double u
    cdef floating scale = <floating>(1 / (1 - rate)) if rate < 1 else 0
    for i in range(size):
        u = <double>(_mix64(seed + (counter + <uint64_t>i) * <uint64_t>0x9e3779b97f4a7c15ULL) >> 11) * (1.0 / 9007199254740992.0)
        mask[i] = scale if u >= rate else 0
        out[i] = x[i] * mask[i]
