# The dense layer: forward and backward, cut into thread-owned blocks.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- dense layer
#
# A layer cut into blocks (``_row_blocks``) gives block p the kernel rows lo:hi, i.e. the inputs
# lo:hi: the forward pass's share x[:, lo:hi] @ w[lo:hi], the backward pass's dw[lo:hi] and
# dx[:, lo:hi], and the optimizer step on w[lo:hi]. A team's thread t owns the same blocks
# (``_share``) in all three, and the rows are contiguous in the flat buffers, so a layer's
# weights, gradients and slots stay in the cache of the core that uses them and no cache line is
# written by two cores (but at block edges). A layer with too few inputs for that is cut into
# blocks of columns instead (``_column_blocks``): block p owns the units lo:hi, a[:, lo:hi],
# dw[:, lo:hi], its share of dx, and the step on w[:, lo:hi] (the few rows' edges are shared
# lines). The layer functions are called by every thread of a team (``_team.h``); a layer that
# is not cut runs on thread 0 alone, and its results are complete for thread 0 on return: the
# threads meet at a barrier before a cut layer reads what others wrote.

cdef struct Update:
    # The optimizer step a layer's backward pass applies to its own weights once it has used them.
    const OptConfig* config
    double terms[STEP_TERMS]  # the step's scalars (``_step_terms``), in the parameters' precision
    int64_t w_off           # the layer's kernel and bias in the flat buffers (b_off -1: none)
    int64_t b_off
    void* params
    void* grads
    void* slots[3]          # the update's slots (NULL where unused), flat like params
    bint hand_off           # this layer (not cut) leaves dw, db and its step to the last thread
    bint frozen             # this layer takes no step (trainable=False)
    const Plan* plan        # its weights' penalties (regularizers), added to the gradients
    double clipvalue        # > 0: each gradient element is clipped to [-clipvalue, clipvalue]
    double weight_decay     # > 0: w -= w·weight_decay·lr before the step (decoupled)
    double clipnorm         # > 0: each variable's gradient scaled to a norm of at most this
    double global_clipnorm  # > 0: all gradients scaled to a global norm of at most this
    bint deferred           # clipnorm or global_clipnorm: the layers only add their penalties'
                            # gradients, the steps wait for every gradient (``_deferred_step``)
    const int64_t* variables  # (start, size) of each trainable kernel and bias, in order
    int n_variables
    double* scales          # per variable, the clip's numerator and denominator (shared)
    int64_t pending[4]      # a handed-off layer's w_off, b_off, kernel and bias sizes, whose step
                            # waits for the next meeting (pending[0] -1: none)


cdef void _apply_update(const Update* u, floating* like, Py_ssize_t lo,
                        Py_ssize_t hi) noexcept nogil:
    """Apply ``u`` to the flat parameters lo:hi (``like`` only selects the precision), in
    Keras' order: the gradient of the weights' penalties added, then (unless ``u.deferred``)
    ``_step``; a stopped team's step is void, skipped."""
    if team_stopped():
        return
    if u.plan != NULL and u.plan.penalized:
        _penalty_gradient(u.plan, <floating*>u.params, <floating*>u.grads, lo, hi)
    if not u.deferred:
        _step(u, like, lo, hi)


cdef void _step(const Update* u, floating* like, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """The parameters lo:hi's step from their final gradients: clipped by value, the weights
    decayed, then the optimizer's rule."""
    cdef Py_ssize_t i
    cdef floating* w = <floating*>u.params
    cdef floating* g = <floating*>u.grads
    cdef floating clip = <floating>u.clipvalue, decay = <floating>u.weight_decay
    cdef floating lr = <floating>u.config.learning_rate
    if clip > 0:
        for i in range(lo, hi):
            g[i] = clip if g[i] > clip else (-clip if g[i] < -clip else g[i])
    if decay > 0:
        for i in range(lo, hi):
            w[i] -= w[i] * decay * lr
    _update_range(u.config, u.terms, w, g, <floating*>u.slots[0], <floating*>u.slots[1],
                  <floating*>u.slots[2], lo, hi)


cdef inline double _sum_squares(const floating* g, Py_ssize_t size) noexcept nogil:
    """Σ g[0:size]² in double, in a fixed order (``simd/scan.h``)."""
    if floating is float:
        return simd.sum_squares_f32(g, size)
    else:
        return simd.sum_squares_f64(g, size)


cdef void _clip_scales(Update* u, floating* like) noexcept nogil:
    """OUT u.scales: each trainable variable's gradient clipped by norm as Keras 3 does, as
    ``g·scales[2v] / scales[2v + 1]``: ``g·c / max(‖g‖, c)`` with clipnorm c, or with
    global_clipnorm c ``g·c·min(1/‖all‖, 1/c)``; norms in the parameters' precision from
    double sums."""
    cdef const floating* g = <floating*>u.grads
    cdef floating clip, norm, square, scale
    cdef double total = 0
    cdef int v
    if u.global_clipnorm > 0:
        clip = <floating>u.global_clipnorm
        for v in range(u.n_variables):
            total += _sum_squares(g + u.variables[2 * v], u.variables[2 * v + 1])
        norm = _sqrt(<floating>total)
        # NaN for a norm that is not finite, as Keras' ``clip_by_global_norm``
        scale = clip * min(1 / norm, 1 / clip) + (norm - norm)
        for v in range(u.n_variables):
            u.scales[2 * v], u.scales[2 * v + 1] = scale, 1
        return
    clip = <floating>u.clipnorm
    for v in range(u.n_variables):
        square = <floating>_sum_squares(g + u.variables[2 * v], u.variables[2 * v + 1])
        norm = _sqrt(square) if square > 0 else square  # 0 and NaN as they are
        u.scales[2 * v] = clip
        u.scales[2 * v + 1] = norm if norm > clip or norm != norm else clip


cdef inline bint _exact_round_trip(double c) noexcept nogil:
    """Whether g·c/c is g exactly for every |g| <= c: c a power of 2 in [1, 2^16] (no rounding,
    no underflow, no overflow)."""
    cdef int exponent
    return 1 <= c <= 65536 and frexp(c, &exponent) == 0.5


# The clipped steps go in pieces of this many elements, each clipped and then stepped while its
# gradients are in the L1 cache.
cdef enum:
    _CLIP_PIECE = 2048


cdef void _deferred_step(Update* u, floating* like, int t, int nt) noexcept nogil:
    """Once every gradient exists and ``_clip_scales`` has run (``u.deferred``): thread t's
    share of each trainable variable, its gradient clipped, takes the step. Team call."""
    cdef floating* g = <floating*>u.grads
    cdef floating numerator, denominator
    cdef Py_ssize_t lo, hi, end, i, start, size
    cdef int v
    if team_stopped():
        return
    for v in range(u.n_variables):
        start, size = u.variables[2 * v], u.variables[2 * v + 1]
        lo, end = start + _share(size, t, nt), start + _share(size, t + 1, nt)
        numerator, denominator = <floating>u.scales[2 * v], <floating>u.scales[2 * v + 1]
        while lo < end:
            hi = min(lo + _CLIP_PIECE, end)
            if denominator == 1:
                if numerator != 1:
                    for i in range(lo, hi):
                        g[i] = g[i] * numerator
            elif not (numerator == denominator and _exact_round_trip(numerator)):
                for i in range(lo, hi):
                    g[i] = g[i] * numerator / denominator
            _step(u, like, lo, hi)
            lo = hi


cdef inline void _penalize_span(const floating* w, floating* g, Py_ssize_t start, Py_ssize_t end,
                                Py_ssize_t lo, Py_ssize_t hi, double l1,
                                double l2) noexcept nogil:
    """IN/OUT g[i] += l1·sign(w[i]) + 2·l2·w[i] for i in [start, end) ∩ [lo, hi)."""
    cdef Py_ssize_t i
    cdef floating a = <floating>l1, b = <floating>(2 * l2)
    if l1 == 0 and l2 == 0:
        return
    for i in range(max(start, lo), min(end, hi)):  # branch-free: the loop vectorizes
        g[i] += b * w[i] + a * ((w[i] > 0) - (w[i] < 0))


cdef void _penalty_gradient(const Plan* p, const floating* w, floating* g, Py_ssize_t lo,
                            Py_ssize_t hi) noexcept nogil:
    """IN/OUT g[lo:hi] += the gradient of the dense ops' penalties (Keras' L1/L2 regularizers:
    ``l1·Σ|w| + l2·Σw²``) over the parameters lo:hi."""
    cdef int i
    cdef Py_ssize_t width = p.n_inputs
    for i in range(p.n_ops):
        if p.kind[i] == OP_DENSE:
            _penalize_span(w, g, p.w_off[i], p.w_off[i] + width * p.units[i], lo, hi,
                           p.penalty[4 * i], p.penalty[4 * i + 1])
            if p.b_off[i] >= 0:
                _penalize_span(w, g, p.b_off[i], p.b_off[i] + p.units[i], lo, hi,
                               p.penalty[4 * i + 2], p.penalty[4 * i + 3])
        width = p.units[i]


cdef void _sums(const floating* w, Py_ssize_t size, double* absolute,
                double* square) noexcept nogil:
    """OUT Σ|w| and Σw² over w[0:size], in double, four partial sums each (a fixed order)."""
    cdef Py_ssize_t j, end = size - size % 4
    cdef double a0 = 0, a1 = 0, a2 = 0, a3 = 0, q0 = 0, q1 = 0, q2 = 0, q3 = 0, v
    for j in range(0, end, 4):
        v = w[j]
        a0 += fabs(v)
        q0 += v * v
        v = w[j + 1]
        a1 += fabs(v)
        q1 += v * v
        v = w[j + 2]
        a2 += fabs(v)
        q2 += v * v
        v = w[j + 3]
        a3 += fabs(v)
        q3 += v * v
    for j in range(end, size):
        v = w[j]
        a0 += fabs(v)
        q0 += v * v
    absolute[0] = (a0 + a1) + (a2 + a3)
    square[0] = (q0 + q1) + (q2 + q3)


cdef double _penalty(const Plan* p, const floating* w) noexcept nogil:
    """The trainable dense ops' penalties ``l1·Σ|w| + l2·Σw²``, kernels and biases, in double."""
    cdef int i, k
    cdef Py_ssize_t start, size, width = p.n_inputs
    cdef double total = 0, l1, l2, absolute, square
    if not p.penalized:
        return 0
    for i in range(p.n_ops):
        if p.kind[i] == OP_DENSE and p.trainable[i]:
            for k in range(2):
                if k == 1 and p.b_off[i] < 0:
                    continue
                start = p.w_off[i] if k == 0 else p.b_off[i]
                size = width * p.units[i] if k == 0 else p.units[i]
                l1, l2 = p.penalty[4 * i + 2 * k], p.penalty[4 * i + 2 * k + 1]
                if l1 != 0 or l2 != 0:
                    _sums(w + start, size, &absolute, &square)
                    total += l1 * absolute + l2 * square
        width = p.units[i]
    return total


cdef void _apply_pending(Update* u, floating* like) noexcept nogil:
    """Apply the step a handed-off layer left for after the meeting, if any."""
    if u.pending[0] < 0:
        return
    _apply_update(u, like, u.pending[0], u.pending[0] + u.pending[2])
    if u.pending[1] >= 0:
        _apply_update(u, like, u.pending[1], u.pending[1] + u.pending[3])
    u.pending[0] = -1


cdef void _bias_gradient(const floating* g, floating* db, Py_ssize_t n,
                         Py_ssize_t c) noexcept nogil:
    """OUT db = the column sums of g (n x c)."""
    cdef Py_ssize_t i, j
    for j in range(c):
        db[j] = 0
    for i in range(n):
        for j in range(c):
            db[j] += g[i * c + j]


cdef inline int _cut(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """How many blocks a dense layer is cut into, by rows or by columns (1: not cut)."""
    cdef int blocks = _row_blocks(n, n_in, n_out)
    return blocks if blocks > 1 else _column_blocks(n, n_in, n_out)


cdef inline floating* _partial(floating* first, floating* parts, int p,
                               Py_ssize_t size) noexcept nogil:
    """Where block p of a product cut into blocks leaves its partial result (each ``size``
    long): in the output itself for block 0, else in ``parts``."""
    return first if p == 0 else parts + (p - 1) * size


cdef inline int _owner(int p, int blocks, int nt) noexcept nogil:
    """The thread of a team of nt that owns block p (see ``_share``)."""
    cdef int t = 0
    while _share(blocks, t + 1, nt) <= p:
        t += 1
    return t


cdef void _sum_partials(floating* first, floating* parts, int blocks, Py_ssize_t size,
                        Py_ssize_t lo, Py_ssize_t hi, bint own, int t, int nt) noexcept nogil:
    """Add up the partial results of a product cut into blocks, elements lo:hi, into ``first``.

    The sum is one fixed tree, ((p0 + p1) + (p2 + p3)) and so on, whoever adds: with ``own``,
    thread t adds the pairs (p, p + 1) whose both blocks it owns, right after computing them, in
    its own cache; then, after a barrier, the rest (``own`` false) by the threads that finish.
    """
    cdef int k, owner, step = 1
    cdef bint one_owner
    cdef Py_ssize_t i
    cdef floating* into
    cdef const floating* add
    while step < blocks:
        k = 0
        while k + step < blocks:
            if step == 1:
                owner = _owner(k, blocks, nt)
                one_owner = owner == _owner(k + 1, blocks, nt)
                if (own and not (one_owner and owner == t)) or (not own and one_owner):
                    k += 2
                    continue
            into = _partial(first, parts, k, size)
            add = _partial(first, parts, k + step, size)
            for i in range(lo, hi):
                into[i] += add[i]
            k += 2 * step
        if own:
            return
        step *= 2


cdef void _finish_rows(floating* a, floating* parts, int blocks, const floating* b,
                       Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t n, Py_ssize_t c, int act, int t,
                       int nt) noexcept nogil:
    """IN/OUT rows r0:r1 of a (n x c): finish the sum of a product cut into ``blocks`` blocks
    (``_sum_partials``), then add the bias b (NULL: none) and apply the activation."""
    cdef Py_ssize_t i, j
    _sum_partials(a, parts, blocks, n * c, r0 * c, r1 * c, False, t, nt)
    if b != NULL:
        for i in range(r0, r1):
            for j in range(c):
                a[i * c + j] += b[j]
    if act != LINEAR:
        _activation_forward(a + r0 * c, a + r0 * c, r1 - r0, c, act)


cdef void _dense_forward(const floating* x, const floating* w, const floating* b, floating* a,
                         floating* parts, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                         int act, bint first, Helpers* h, int t, int nt) noexcept nogil:
    """OUT a (n, n_out) := act(x (n, n_in) @ w (n_in, n_out) + b (n_out,)); b may be NULL.

    Team call (thread t of nt; h: the meetings' helpers, or NULL). ``first``: no thread has
    written x since the team's last barrier but the owners of its row blocks, their own columns
    (``_gather_rows``). Cut by rows, block 0 writes its share x[:, lo:hi] @ w[lo:hi] to a, the
    others to ``parts`` ((blocks - 1) x n x n_out scratch), summed as ``_sum_partials`` says.
    """
    cdef int p, blocks = _row_blocks(n, n_in, n_out), cut = _cut(n, n_in, n_out)
    cdef Py_ssize_t lo, hi, size = n * n_out
    if cut == 1:
        if t == 0:
            _input_product(x, w, a, n, n_in, n_out, 0, n_in)
            _finish_rows(a, parts, 1, b, 0, n, n, n_out, act, t, nt)
        return
    if blocks == 1 or not first:
        _meet(h, a)
    for p in range(_share(cut, t, nt), _share(cut, t + 1, nt)):
        if blocks == 1:  # cut by columns
            lo = _block_edge(n_out, cut, p)
            hi = _block_edge(n_out, cut, p + 1)
            _gemm(c'N', c'N', <int>(hi - lo), <int>n, <int>n_in, 1, w + lo, <int>n_out, x,
                  <int>n_in, 0, a + lo, <int>n_out)
        else:
            _input_product(x, w, _partial(a, parts, p, size), n, n_in, n_out,
                           _block_edge(n_in, blocks, p), _block_edge(n_in, blocks, p + 1))
    _sum_partials(a, parts, blocks, size, 0, size, True, t, nt)
    _meet(h, a)
    if size * blocks < _MIN_CHUNK:
        if t == 0:
            _finish_rows(a, parts, blocks, b, 0, n, n, n_out, act, t, nt)
    else:  # large enough to share the rows out, and meet again
        _finish_rows(a, parts, blocks, b, _share(n, t, nt), _share(n, t + 1, nt), n, n_out, act,
                     t, nt)
        _meet(h, a)


cdef void _dense_backward_rows(const floating* x, const floating* w, const floating* g,
                               floating* dw, floating* dx, Py_ssize_t n, Py_ssize_t n_in,
                               Py_ssize_t n_out, Py_ssize_t lo, Py_ssize_t hi,
                               const Update* u) noexcept nogil:
    """Kernel rows lo:hi of the backward pass from IN g = dL/dZ: OUT dx[:, lo:hi] = g w[lo:hi]^T,
    OUT dw[lo:hi] = x[:, lo:hi]^T g (either NULL: skip it); then, with u, the optimizer step on
    w[lo:hi] (u needs dw). dx comes first: it reads the weights before their step. With sparse
    inputs (``_sparse_pays``), each SPARSE_DEPTH rows of dw take their step as soon as they are
    computed, while they are in the L1 cache."""
    cdef Py_ssize_t k0, k1
    if dx != NULL:
        _gemm(c'T', c'N', <int>(hi - lo), <int>n, <int>n_out, 1, w + lo * n_out, <int>n_out, g,
              <int>n_out, 0, dx + lo, <int>n_in)
    if dw == NULL:
        return
    if not _sparse_pays(x, n, n_in, n_out, lo, hi):
        _gemm(c'N', c'T', <int>n_out, <int>(hi - lo), <int>n, 1, g, <int>n_out, x + lo,
              <int>n_in, 0, dw + lo * n_out, <int>n_out)
        if u != NULL:
            _apply_update(u, dw, u.w_off + lo * n_out, u.w_off + hi * n_out)
        return
    k0 = lo
    while k0 < hi:
        if n * SPARSE_DEPTH * n_out > _STOP_CHECK and _stopping():
            return
        k1 = min(k0 + SPARSE_DEPTH, hi)
        simd.sparse_weight_gradient_f32(<const float*>x, n_in, n, k0, k1, <const float*>g, n_out,
                                        <float*>dw)
        if u != NULL:
            _apply_update(u, dw, u.w_off + k0 * n_out, u.w_off + k1 * n_out)
        k0 = k1


cdef void _dense_backward_columns(const floating* x, const floating* w, const floating* g,
                                  floating* dw, floating* dx, Py_ssize_t n, Py_ssize_t n_in,
                                  Py_ssize_t n_out, Py_ssize_t lo, Py_ssize_t hi,
                                  const Update* u) noexcept nogil:
    """Kernel columns (units) lo:hi of the backward pass from IN g = dL/dZ: OUT dw[:, lo:hi] =
    x^T g[:, lo:hi], OUT dx := g[:, lo:hi] w[:, lo:hi]^T, this block's share of dL/dx (NULL:
    skip); then, with u, the optimizer step on w[:, lo:hi], row by row."""
    cdef Py_ssize_t r
    _gemm(c'N', c'T', <int>(hi - lo), <int>n_in, <int>n, 1, g + lo, <int>n_out, x, <int>n_in, 0,
          dw + lo, <int>n_out)
    if dx != NULL:
        _gemm(c'T', c'N', <int>n_in, <int>n, <int>(hi - lo), 1, w + lo, <int>n_out, g + lo,
              <int>n_out, 0, dx, <int>n_in)
    if u != NULL:
        for r in range(n_in):
            _apply_update(u, dw, u.w_off + r * n_out + lo, u.w_off + r * n_out + hi)


cdef void _dense_backward(const floating* x, const floating* w, const floating* a, floating* g,
                          floating* dw, floating* db, floating* dx, floating* parts, Py_ssize_t n,
                          Py_ssize_t n_in, Py_ssize_t n_out, int act, Update* u,
                          Helpers* h, int t, int nt) noexcept nogil:
    """From IN g = dL/dA (n, n_out), overwritten with dL/dZ: OUT dw = x^T g, db = column sums
    of g, dx = g w^T; then, with u, the optimizer step on this layer's kernel and bias.

    Team call (thread t of nt): x, a and g must be complete for thread 0; dx is complete for
    thread 0 on return. With h, threads waiting at the meetings help (``_meet``). db and
    dx may be NULL (no bias; first layer, whose input needs no gradient). Cut into blocks of
    columns, block 0 writes its share of dx to dx, the others to ``parts``
    ((blocks - 1) x n x n_in scratch), summed as ``_sum_partials`` says. A cut layer's db and
    bias step are the last thread's, after the meeting.

    A layer that is not cut runs on thread 0, which carries the gradient down (dx), unless
    ``u.hand_off``: then thread nt - 1 computes dw and db meanwhile (act must be linear and g
    complete for every thread), and applies the step after the next meeting (``u.pending``),
    once dx no longer needs w: the next layer down must be cut.
    """
    cdef int p, blocks = _row_blocks(n, n_in, n_out), cut = _cut(n, n_in, n_out)
    cdef Update* step = NULL if u == NULL or u.frozen else u  # this layer's own step
    cdef bint hand_off = step != NULL and step.hand_off
    cdef Py_ssize_t lo, hi
    if t == 0:
        _activation_backward(a, g, n, n_out, act)
    if cut == 1:
        if t == 0 and dx != NULL:
            _dense_backward_rows(x, w, g, NULL, dx, n, n_in, n_out, 0, n_in, NULL)
        if t == (nt - 1 if hand_off else 0):
            _dense_backward_rows(x, w, g, dw, NULL, n, n_in, n_out, 0, n_in, NULL)
            if db != NULL:
                _bias_gradient(g, db, n, n_out)
            if hand_off:
                u.pending[0], u.pending[1] = u.w_off, u.b_off if db != NULL else -1
                u.pending[2], u.pending[3] = n_in * n_out, n_out
            elif step != NULL:
                _apply_update(step, dw, step.w_off, step.w_off + n_in * n_out)
                if db != NULL:
                    _apply_update(step, dw, step.b_off, step.b_off + n_out)
        return
    _meet(h, g)
    if t == nt - 1:
        if u != NULL:
            _apply_pending(u, g)
        if db != NULL:
            _bias_gradient(g, db, n, n_out)
            if step != NULL:
                _apply_update(step, db, step.b_off, step.b_off + n_out)
    for p in range(_share(cut, t, nt), _share(cut, t + 1, nt)):
        if blocks == 1:  # cut by columns
            lo = _block_edge(n_out, cut, p)
            hi = _block_edge(n_out, cut, p + 1)
            _dense_backward_columns(x, w, g, dw, NULL if dx == NULL else
                                    _partial(dx, parts, p, n * n_in), n, n_in, n_out, lo, hi,
                                    step)
        else:
            _dense_backward_rows(x, w, g, dw, dx, n, n_in, n_out, _block_edge(n_in, blocks, p),
                                 _block_edge(n_in, blocks, p + 1), step)
    if dx != NULL:
        if blocks == 1:
            _sum_partials(dx, parts, cut, n * n_in, 0, n * n_in, True, t, nt)
        _meet(h, g)
        if blocks == 1 and t == 0:
            _finish_rows(dx, parts, cut, NULL, 0, n, n, n_in, LINEAR, t, nt)
