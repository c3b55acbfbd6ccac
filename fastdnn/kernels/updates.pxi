# Optimizer updates: one pass over params, grads and slots.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- optimizers: one pass over params, grads and slots, in place, no temporaries

cdef enum:
    _CONSTANT_RATE = 0
    _EXPONENTIAL_DECAY = 1
    _INVERSE_TIME_DECAY = 2
    _POLYNOMIAL_DECAY = 3
    _COSINE_DECAY = 4
    _PIECEWISE_CONSTANT = 5
    _MAX_PIECES = 32        # fastdnn.schedules.MAX_PIECES


cdef struct Schedule:
    # A learning-rate schedule the training loop evaluates at every step
    int kind                # _CONSTANT_RATE, or the schedule ``_learning_rate_at`` evaluates
    double decay[6]         # the schedule's parameters, in fastdnn.schedules' kernel_spec order
    int n_pieces            # _PIECEWISE_CONSTANT: boundaries [0, n_pieces), values [0, n_pieces]
    double bounds[_MAX_PIECES]
    double values[_MAX_PIECES + 1]


cdef double _learning_rate_at(const Schedule* c, double constant,
                              int64_t iteration) noexcept nogil:
    """The learning rate of the step after ``iteration`` steps, as Keras' schedules compute it
    from ``optimizer.iterations`` (twin: ``fastdnn.reference.learning_rate_at``); ``constant``
    without a schedule."""
    cdef const double* s = c.decay
    cdef double step = <double>iteration, p, span
    cdef int k
    if c.kind == _EXPONENTIAL_DECAY or c.kind == _INVERSE_TIME_DECAY:
        p = floor(step / s[1]) if s[3] != 0 else step / s[1]
        return s[0] * pow(s[2], p) if c.kind == _EXPONENTIAL_DECAY else s[0] / (1 + s[2] * p)
    if c.kind == _POLYNOMIAL_DECAY:
        span = s[1]
        if s[4] != 0:
            span *= 1 if step == 0 else ceil(step / s[1])
        elif step > span:
            step = span
        return (s[0] - s[2]) * pow(1 - step / span, s[3]) + s[2]
    if c.kind == _COSINE_DECAY:
        # initial, decay_steps, alpha, warmup_target, warmup_steps, has warmup
        if s[5] != 0:
            step = min(step, s[1] + s[4])
            if step < s[4]:
                return (s[3] - s[0]) * (step / s[4]) + s[0]
            return s[3] * ((1 - s[2]) * 0.5 * (1 + cos(M_PI * (step - s[4]) / s[1])) + s[2])
        step = min(step, s[1])
        return s[0] * ((1 - s[2]) * 0.5 * (1 + cos(M_PI * step / s[1])) + s[2])
    if c.kind == _PIECEWISE_CONSTANT:
        for k in range(c.n_pieces):
            if step <= c.bounds[k]:
                return c.values[k]
        return c.values[c.n_pieces]
    return constant


cdef inline floating _nadam_factor(double beta_1, int64_t step,
                                   const floating* like) noexcept nogil:
    """Nadam's momentum cache ``u_step = beta_1·(1 - 0.5·0.96^step)``, in the precision of
    ``like``, as Keras' ``update_step`` forms it."""
    cdef floating one = 1  # a literal 1 would make the expression double
    return <floating>beta_1 * (one - <floating>0.5 * _pow(<floating>0.96, <floating>step))


cdef inline floating _nadam_advance(double beta_1, int64_t iteration,
                                    floating u_product) noexcept nogil:
    """Nadam's product of momentum caches after the step following ``iteration`` steps, from
    the product before it, as Keras' ``_backend_update_step`` forms it."""
    cdef floating one = 1
    return u_product * <floating>beta_1 * (
        one - <floating>0.5 * _pow(<floating>0.96, <floating>(iteration + 1)))


cdef floating _nadam_product(double beta_1, int64_t iteration,
                             const floating* like) noexcept nogil:
    """Nadam's product of momentum caches after ``iteration`` steps (Keras' ``_u_product``), in
    the precision of ``like``, step by step; once below 2^-60 it changes no step (1 - it is 1),
    so the loop stops there."""
    cdef floating u = 1
    cdef int64_t k
    for k in range(iteration):
        if u < <floating>8.673617379884035e-19:
            break
        u = _nadam_advance(beta_1, k, u)
    return u


cdef void _step_terms(const OptConfig* c, int64_t iteration, double* u_product,
                      const floating* like, double* out) noexcept nogil:
    """OUT out[0:STEP_TERMS]: the scalars of the step after ``iteration`` steps that depend on
    its number (see ``simd/dispatch.h``), in the precision of ``like`` (the parameters), as
    Keras computes them; IN/OUT u_product: Nadam's product of momentum caches before and after
    the step."""
    cdef floating t = <floating>(iteration + 1)
    cdef floating lr = <floating>c.learning_rate, u, one = 1
    if c.kind == _OPT_ADAM:
        out[0] = lr * _sqrt(1 - _pow(<floating>c.beta_2, t)) / (1 - _pow(<floating>c.beta_1, t))
    elif c.kind == _OPT_ADAMAX:
        out[0] = one - _pow(<floating>c.beta_1, t)
    elif c.kind == _OPT_NADAM:
        u = _nadam_advance(c.beta_1, iteration, <floating>u_product[0])
        u_product[0] = u
        out[0] = _nadam_factor(c.beta_1, iteration + 2, like)
        out[1] = one - _nadam_factor(c.beta_1, iteration + 1, like)
        out[2] = one - u
        out[3] = one - u * <floating>out[0]
        out[4] = one - _pow(<floating>c.beta_2, t)


cdef void _update_range(const OptConfig* c, const double* terms, floating* w, const floating* g,
                        floating* s0, floating* s1, floating* s2, Py_ssize_t lo,
                        Py_ssize_t hi) noexcept nogil:
    """IN/OUT w[lo:hi] and the slots s0..s2 (NULL when unused): one step of Keras 3's rule.

    The elements before w's first cache-line boundary in the range take a step of their own, so
    that the vector loop writes w in whole lines: a store across two lines costs two.
    """
    cdef Py_ssize_t edge = lo + <Py_ssize_t>((-<uintptr_t>(w + lo) % _LINE) // sizeof(floating))
    if lo < edge < hi:
        _update_span(c, terms, w, g, s0, s1, s2, lo, edge)
        lo = edge
    _update_span(c, terms, w, g, s0, s1, s2, lo, hi)


cdef inline void _update_span(const OptConfig* c, const double* terms, floating* w,
                              const floating* g, floating* s0, floating* s1, floating* s2,
                              Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """IN/OUT w[lo:hi] and the slots s0..s2 (NULL when unused): one step of Keras 3's rule, by the
    variant's loops (``simd/update.h``); ``terms``: the step's scalars (``_step_terms``)."""
    if floating is float:
        simd.update_f32(c, terms, w, g, s0, s1, s2, lo, hi)
    else:
        simd.update_f64(c, terms, w, g, s0, s1, s2, lo, hi)


# A standalone update's share per thread is cut into up to this many pieces, each of at least
# _MIN_CHUNK elements (a piece costs about 60 ns to take, 12% of a 79,510-weight SGD step in
# pieces of 5,000): a thread that finishes its own share takes pieces from the back of the
# others' (a core in one of a shared host's slow spells would otherwise hold the whole step
# back), while with cores alike each share stays on the core whose cache holds it.
cdef int _PIECES = 8
cdef enum:
    _MAX_UPDATE_THREADS = 64


cdef void _update(const OptConfig* c, floating* w, const floating* g, floating* s0, floating* s1,
                  floating* s2, Py_ssize_t size, int64_t iteration) noexcept nogil:
    """One optimizer step over w[0:size], split across threads when it is large enough to pay."""
    cdef Py_ssize_t k, n_pieces
    cdef long long piece
    cdef long long runs[_MAX_UPDATE_THREADS]  # thread k's pieces still to take, packed
    cdef unsigned int state
    cdef int chunks = min(_n_threads, _MAX_UPDATE_THREADS), j, other, pieces
    cdef double terms[STEP_TERMS]
    cdef double u_product = _nadam_product(c.beta_1, iteration, w) if c.kind == _OPT_NADAM else 1
    _step_terms(c, iteration, &u_product, w, terms)
    if size // _MIN_CHUNK < chunks:
        chunks = <int>(size // _MIN_CHUNK) if size >= 2 * _MIN_CHUNK else 1
    if chunks <= 1:
        _update_range(c, terms, w, g, s0, s1, s2, 0, size)
        return
    pieces = <int>min(_PIECES, size // (chunks * _MIN_CHUNK))  # >= 1: chunks <= size // _MIN_CHUNK
    n_pieces = <Py_ssize_t>chunks * pieces
    for k in range(chunks):
        runs[k] = ((k * pieces) << 32) | ((k + 1) * pieces)
    with parallel(num_threads=chunks):  # no worksharing loop: one meeting, at the end
        state = fpenv_flush_denormals()  # the FP state is per thread
        k = team_index()
        for j in range(chunks):  # its own share first, then the others' from their backs
            other = (<int>k + j) % chunks
            while True:
                piece = team_take_end(&runs[other], other != k)
                if piece < 0:
                    break
                _update_range(c, terms, w, g, s0, s1, s2, _share(size, <int>piece, <int>n_pieces),
                              _share(size, <int>piece + 1, <int>n_pieces))
        fpenv_restore(state)
