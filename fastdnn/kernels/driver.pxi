# The training driver: whole batches in C, on a thread team.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- driver: whole training batches in C

cdef struct Plan:
    int n_ops
    int n_inputs
    const int64_t* kind      # OP_DENSE / OP_ACTIVATION / OP_DROPOUT
    const int64_t* units     # output width of each op
    const int64_t* act       # activation of each op (dense, activation)
    const double* rate       # dropout rate of each op
    const int64_t* w_off     # kernel offset in the parameter buffer (dense)
    const int64_t* b_off     # bias offset, -1 for none
    const int64_t* out_off   # offset of the op's output in the workspace (rows x units)
    const int64_t* mask_off  # offset of the op's dropout mask in the workspace
    int first_dense          # the first trainable dense op: ops before it need no gradient
    const int64_t* trainable # whether each dense op takes the optimizer step
    const double* penalty    # per op: kernel l1, kernel l2, bias l1, bias l2 (regularizers)
    bint penalized           # some trainable dense op has a nonzero penalty
    int loss
    int n_metrics
    const int64_t* metric    # METRIC_* code of each metric
    const int64_t* metric_k  # k of each top-k metric
    const int64_t* metric_weighted  # 1: the metric takes the sample weights
    bint fused               # the last op's softmax/sigmoid is folded into the loss
    int64_t capacity         # rows the workspace holds


cdef inline int _op_act(const Plan* p, int i) noexcept nogil:
    """Activation op i applies in the forward pass (the fused one is left to the loss)."""
    if p.fused and i == p.n_ops - 1:
        return LINEAR
    return <int>p.act[i]


cdef void _plan_metrics(const Plan* p, const floating* s, const int32_t* labels,
                        const floating* y, const floating* w, Py_ssize_t n, int act,
                        double* out) noexcept nogil:
    """OUT out[0:2·n_metrics]: each metric's two sums over a batch (``_metric_sums``), those of
    the weighted metrics weighted by w unless NULL."""
    cdef int m
    for m in range(p.n_metrics):
        _metric_sums(<int>p.metric[m], <int>p.metric_k[m], s, labels, y,
                     w if p.metric_weighted[m] else NULL, n, p.units[p.n_ops - 1], act,
                     out + 2 * m)


cdef floating* _forward(const Plan* p, const floating* params, floating* ws, floating* parts,
                        const floating* x, Py_ssize_t n, bint training, uint64_t seed,
                        uint64_t* counter, Helpers* h, int t, int nt) noexcept nogil:
    """Run every op on x (n rows); return a pointer to the output (logits when fused).

    Team call (thread t of nt, h the meetings' helpers or NULL; see ``_dense_forward``): the
    output is complete for thread 0 on return. parts is the scratch of ``_dense_forward``.
    """
    cdef const floating* cur = x
    cdef floating* out
    cdef Py_ssize_t width = p.n_inputs, units
    cdef int i
    for i in range(p.n_ops):
        units = p.units[i]
        out = ws + p.out_off[i]
        if p.kind[i] == OP_DENSE:
            _dense_forward(cur, params + p.w_off[i], params + p.b_off[i] if p.b_off[i] >= 0 else NULL,
                           out, parts, n, width, units, _op_act(p, i), i == 0, h, t, nt)
        elif p.kind[i] == OP_ACTIVATION:
            if t == 0:
                _activation_forward(cur, out, n, units, _op_act(p, i), p.rate[i])
        elif training:
            if t == 0:
                _dropout_forward(cur, out, ws + p.mask_off[i], n * units, p.rate[i], seed,
                                 counter[0])
                counter[0] += <uint64_t>(n * units)
        else:
            out = <floating*>cur  # dropout is the identity at inference
        cur = out
        width = units
    return <floating*>cur


cdef void _backward(const Plan* p, floating* params, floating* grads, floating* ws,
                    floating* g, floating* g_other, floating* parts, const floating* x,
                    Py_ssize_t n, Update* u, Helpers* h, int t, int nt) noexcept nogil:
    """Backpropagate IN g = dL/d(output) through every op, writing OUT grads (flat, like params),
    and apply the optimizer step ``u`` to each dense layer once its weights have been used.

    Team call (thread t of nt, each with its own ``u`` and ``h``; see ``_dense_backward``). g
    and g_other are two scratch buffers of capacity x max width, used in turn; parts is
    ``_dense_backward``'s scratch. g must be complete for every thread (the loss's meeting),
    so that the output layer can hand its weight gradient and step to the last thread while
    thread 0 carries the gradient down: when that layer is not cut, its activation is linear
    (fused into the loss) and the layer below it is cut (its meeting orders the step after dx).
    """
    cdef const floating* inp
    cdef floating* out
    cdef floating* dx
    cdef floating* mask
    cdef floating* tmp
    cdef Py_ssize_t width_in, units, j
    cdef int i
    for i in range(p.n_ops - 1, p.first_dense - 1, -1):
        units = p.units[i]
        out = ws + p.out_off[i]
        if p.kind[i] == OP_DENSE:
            inp = x if i == 0 else ws + p.out_off[i - 1]
            width_in = p.n_inputs if i == 0 else p.units[i - 1]
            dx = g_other if i > p.first_dense else NULL
            u.w_off, u.b_off, u.frozen = p.w_off[i], p.b_off[i], not p.trainable[i]
            u.hand_off = (not u.frozen and nt > 1 and i == p.n_ops - 1 and i - 1 >= p.first_dense
                          and _op_act(p, i) == LINEAR and _cut(n, width_in, units) == 1
                          and p.kind[i - 1] == OP_DENSE and _cut(
                              n, p.n_inputs if i == 1 else p.units[i - 2], width_in) > 1)
            _dense_backward(inp, params + p.w_off[i], out, g, grads + p.w_off[i],
                            grads + p.b_off[i] if p.b_off[i] >= 0 else NULL, dx, parts, n,
                            width_in, units, _op_act(p, i), u, h, t, nt)
            tmp = g
            g = g_other
            g_other = tmp
        elif t != 0:
            pass
        elif p.kind[i] == OP_ACTIVATION:  # i > first_dense: its input is op i - 1's output
            _activation_backward(out, g, n, units, _op_act(p, i), ws + p.out_off[i - 1],
                                 p.rate[i])
        else:
            mask = ws + p.mask_off[i]
            for j in range(n * units):
                g[j] *= mask[j]


cdef void _slot_pointers(const int* rows, floating* slots, Py_ssize_t n_params,
                         floating** s) noexcept nogil:
    """OUT s[0..2]: the update's slots in ``slots``, NULL where one is not kept (rows: their rows,
    ``OptimizerConfig``'s from ``SLOT_LAYOUT``)."""
    cdef int k
    for k in range(3):
        s[k] = slots + rows[k] * n_params if rows[k] >= 0 else NULL


cdef inline int _first_blocks(const Plan* p, Py_ssize_t n) noexcept nogil:
    """Blocks the first op cuts its input into (1 unless it is a dense layer cut by rows)."""
    if p.kind[0] != OP_DENSE:
        return 1
    return _row_blocks(n, p.n_inputs, p.units[0])


cdef int _team_threads(const Plan* p, Py_ssize_t n) noexcept nogil:
    """Threads worth starting for batches of up to n rows: as many as the most-cut layer has
    blocks, at most the thread count (1: no layer is cut)."""
    cdef Py_ssize_t width = p.n_inputs
    cdef int i, cut, most = 1
    for i in range(p.n_ops):
        if p.kind[i] == OP_DENSE:
            cut = _cut(n, width, p.units[i])
            most = cut if cut > most else most
        width = p.units[i]
    return _block_threads(most)


cdef void _gather_rows(floating* out, const floating* x, const int64_t* rows, Py_ssize_t n,
                       Py_ssize_t width, int blocks, int t, int nt) noexcept nogil:
    """OUT out[r] = x[rows[r]] for r < n, each row ``width`` wide. Team call: with blocks > 1,
    block p's columns are copied by the thread that owns them in the first layer
    (``_dense_forward``); else thread 0 copies everything."""
    cdef Py_ssize_t r, lo = 0, hi = width
    if blocks == 1 and t != 0:
        return
    if blocks > 1:
        lo = _block_edge(width, blocks, <int>_share(blocks, t, nt))
        hi = _block_edge(width, blocks, <int>_share(blocks, t + 1, nt))
    for r in range(n):
        memcpy(out + r * width + lo, x + rows[r] * width + lo, (hi - lo) * sizeof(floating))


# Batches in turn fill three input buffers: helpers (``_meet``) copy batch b + 1 into its buffer
# from step b's first meeting on, while a thread that has passed step b - 1's last meeting may
# still read batch b - 1's buffer, never batch b - 2's.
cdef enum:
    _X_BUFFERS = 3


cdef struct TrainCall:
    # One ``Network.train`` call's arguments, shared by the team's threads (read-only but for
    # the outputs, which thread 0 writes).
    const Plan* plan
    const OptConfig* opt
    const Schedule* schedule  # the learning rate of each step, from opt's when constant
    double clipvalue        # opt's clipvalue, weight_decay, clipnorm, global_clipnorm (0: none),
    double weight_decay     # see Update
    double clipnorm
    double global_clipnorm
    int slot_rows[3]        # the update's slots' rows in ``slots`` (-1: none)
    const int64_t* variables  # (start, size) of each trainable kernel and bias
    int n_variables
    double* scales          # 2 per variable: the clips' scratch (Update)
    void* params
    void* grads
    void* slots
    Py_ssize_t n_params
    void* ws
    void* g0
    void* g1
    void* parts
    void* xbuf              # _X_BUFFERS buffers of capacity x n_inputs, one per batch in turn
    void* ybuf
    int32_t* lbuf
    const void* x
    const void* y
    const int32_t* labels
    const void* weights     # per-sample weights (n_samples), or NULL
    void* wbuf              # capacity: a shuffled batch's weights
    const int64_t* order
    Py_ssize_t n_samples
    Py_ssize_t batch_size
    Py_ssize_t first
    Py_ssize_t count
    int64_t iteration       # the optimizer's step counter before the call
    uint64_t seed
    uint64_t counter        # IN/OUT: the dropout generator's position
    double* loss_out
    double* metric_out      # OUT (count, n_metrics, 2): each batch's metric sums
    Py_ssize_t done         # OUT: batches applied (fewer than count: a non-finite loss, or a
                            # stop request, after which the run's earlier batches are void too)
    bint poll               # thread 0 runs Python's signal handlers (``_stopping``)
    bint stopped            # OUT: a signal stopped the team mid-step (``Network._run``)
    long long claimed[_X_BUFFERS]  # rows of the batch copied ahead (``_meet``), per buffer
    team_t team             # the team's meetings (``_team.h``)
    Stretch stretch         # the run's time: it ends after the batch its time ran out in, if
                            # sooner (``stretch.cut``, then ``done``)


cdef void _train_batches(TrainCall* c, floating* like, int t, int nt) noexcept nogil:
    """Train batches first .. first+count-1 of ``order`` (or of the data as it lies, when order
    is NULL); OUT c.done: how many were applied (a non-finite loss stops before that batch's
    update; so does a stop request, ``_stopping``, after which the work in progress is void). Team call (thread t of nt; ``like`` only selects the precision).

    Per step the threads meet three times for the chapter's model: after the forward pass's cut
    products, after the loss (thread 0's verdict on it), and before the first layer's cut
    backward pass. A thread waiting at a meeting copies rows of the next shuffled batch into its
    buffer (``_meet``); each thread then gathers the rest of its own blocks' columns. The next
    step's first-layer products need no meeting: each thread reads and writes only the blocks it
    owns.
    """
    cdef const Plan* p = c.plan
    cdef Py_ssize_t b, start, n, r, row, ready, n_out = p.units[p.n_ops - 1], n_in = p.n_inputs
    cdef Py_ssize_t buffer_size = p.capacity * n_in
    cdef floating* xbuf
    cdef floating* ybuf = <floating*>c.ybuf
    cdef const floating* x = <const floating*>c.x
    cdef const floating* y = <const floating*>c.y
    cdef const floating* xb
    cdef const floating* yb
    cdef const int32_t* lb
    cdef const floating* wb = NULL
    cdef const floating* w = <const floating*>c.weights
    cdef floating* out
    cdef floating* s[3]
    cdef double total
    cdef int64_t iteration = c.iteration
    cdef Update u
    cdef Helpers h
    cdef int k, cur
    cdef bint helped = False
    cdef OptConfig opt = c.opt[0]  # this thread's copy: its learning rate follows the schedule
    cdef double u_product = (_nadam_product(opt.beta_1, iteration, <floating*>c.params)
                             if opt.kind == _OPT_NADAM else 1)
    _slot_pointers(c.slot_rows, <floating*>c.slots, c.n_params, s)
    u.config, u.params, u.grads, u.pending[0], u.plan = &opt, c.params, c.grads, -1, p
    u.clipvalue, u.weight_decay = c.clipvalue, c.weight_decay
    u.clipnorm, u.global_clipnorm = c.clipnorm, c.global_clipnorm
    u.deferred = c.clipnorm > 0 or c.global_clipnorm > 0
    u.variables, u.n_variables, u.scales = c.variables, c.n_variables, c.scales
    for k in range(3):
        u.slots[k] = s[k]
    h.x, h.width = c.x, n_in
    _stretch_start(&c.stretch, t)
    for b in range(c.count):
        start = (c.first + b) * c.batch_size
        n = c.batch_size if start + c.batch_size <= c.n_samples else c.n_samples - start
        if b > 0 and (n < c.batch_size or _first_blocks(p, n) == 1):
            # Unless the first op is a dense layer cut by rows, which each thread starts on its
            # own blocks (gather, products), thread 0's first writes (a whole gather, a dropout's
            # output) or a short last batch's other blocks could meet threads still on the last
            # step's blocks.
            team_barrier()
        cur = b % _X_BUFFERS
        xbuf = <floating*>c.xbuf + cur * buffer_size
        h.rows = NULL
        if c.order == NULL:
            xb = x + start * n_in
            yb = y + start * n_out if y != NULL else NULL
            lb = c.labels + start if c.labels != NULL else NULL
            wb = w + start if w != NULL else NULL
        else:
            # rows the others copied while this thread waited in the last step
            ready = min(team_load(&c.claimed[cur]), n) if helped else 0
            _gather_rows(xbuf + ready * n_in, x, c.order + start + ready, n - ready, n_in,
                         _first_blocks(p, n), t, nt)
            if t == 0:
                for r in range(n):
                    row = c.order[start + r]
                    if y != NULL:
                        memcpy(ybuf + r * n_out, y + row * n_out, n_out * sizeof(floating))
                    else:
                        c.lbuf[r] = c.labels[row]
                    if w != NULL:
                        (<floating*>c.wbuf)[r] = w[row]
            xb = xbuf
            wb = <floating*>c.wbuf if w != NULL else NULL
            yb = ybuf if y != NULL else NULL
            lb = c.lbuf if y == NULL else NULL
            # the next batch, while this one is full
            if b + 1 < c.count and n == c.batch_size and start + n < c.n_samples:
                h.rows = c.order + start + n
                h.n = min(c.batch_size, c.n_samples - start - n)
                h.out = <floating*>c.xbuf + (b + 1) % _X_BUFFERS * buffer_size
                h.claimed = &c.claimed[(b + 1) % _X_BUFFERS]
        helped = h.rows != NULL
        out = _forward(p, <floating*>c.params, <floating*>c.ws, <floating*>c.parts, xb, n, True,
                       c.seed, &c.counter, &h, t, nt)
        if t == 0:
            total = _weighted_loss(p.loss, out, lb, yb, wb, <floating*>c.g0, n, n_out,
                                   <floating>(1.0 / n))
            total += n * _penalty(p, <floating*>c.params)  # per sample, as Keras' mean loss
            c.loss_out[b] = total
            _plan_metrics(p, out, lb, yb, wb, n, <int>p.act[p.n_ops - 1] if p.fused else LINEAR,
                          c.metric_out + b * 2 * p.n_metrics)
            if not isfinite(total) or _stopping():  # a stopped team skipped this step's work
                c.done = b
            else:
                _stretch_check(&c.stretch, b + 1, t)
                if _stretch_cut_at(&c.stretch, b + 1):
                    c.done = b + 1
        _meet(&h, xbuf)
        if c.done == b:
            return
        if t == 0:  # every thread has read this buffer's count; batch b + 3 starts it anew
            team_store(&c.claimed[cur], 0)
        opt.learning_rate = _learning_rate_at(c.schedule, c.opt.learning_rate, iteration)
        _step_terms(&opt, iteration, &u_product, <floating*>c.params, u.terms)
        _backward(p, <floating*>c.params, <floating*>c.grads, <floating*>c.ws, <floating*>c.g0,
                  <floating*>c.g1, <floating*>c.parts, xb, n, &u, &h, t, nt)
        if u.deferred:  # every gradient first, then their norms, then the clipped steps
            team_barrier()
            if t == 0:
                _clip_scales(&u, like)
            team_barrier()
            _deferred_step(&u, like, t, nt)
            team_barrier()
        iteration += 1
        if _stretch_cut_at(&c.stretch, b + 1):
            break


cdef void _infer(const Plan* p, const floating* params, floating* ws, floating* parts,
                 const floating* x, const floating* y, const int32_t* labels, const floating* w,
                 floating* pred, Py_ssize_t n_samples, double* loss_sum, double* sums,
                 Stretch* stretch, int t, int nt) noexcept nogil:
    """Forward pass over all samples in workspace-sized batches, in inference mode.

    OUT pred (n_samples x n_out) gets the model's outputs (the fused activation applied), unless
    NULL; with targets (y or labels), OUT loss_sum and sums[0:2·n_metrics] accumulate the loss
    and the metrics' sums, weighted by the per-sample weights w unless NULL; stops early, after
    ``stretch.cut`` samples, if the stretch's time runs out. Team call (thread t of nt); thread
    0 writes the outputs.
    """
    cdef Py_ssize_t start, n, n_out = p.units[p.n_ops - 1], n_in = p.n_inputs
    cdef double batch[2 * _MAX_METRICS]
    cdef int m
    cdef floating* out
    cdef uint64_t unused = 0
    cdef int last_act = <int>p.act[p.n_ops - 1] if p.fused else LINEAR
    start = 0
    _stretch_start(stretch, t)
    while start < n_samples:
        n = p.capacity if start + p.capacity <= n_samples else n_samples - start
        out = _forward(p, params, ws, parts, x + start * n_in, n, False, 0, &unused, NULL, t,
                       nt)
        if t == 0:
            if labels != NULL or y != NULL:
                loss_sum[0] += _weighted_loss(p.loss, out,
                                              labels + start if labels != NULL else NULL,
                                              y + start * n_out if y != NULL else NULL,
                                              w + start if w != NULL else NULL, NULL, n, n_out, 1)
                _plan_metrics(p, out, labels + start if labels != NULL else NULL,
                              y + start * n_out if y != NULL else NULL,
                              w + start if w != NULL else NULL, n, last_act, batch)
                for m in range(2 * p.n_metrics):
                    sums[m] += batch[m]
            if pred != NULL:
                _activation_forward(out, pred + start * n_out, n, n_out, last_act)
            _stretch_check(stretch, start + n, t)
        team_barrier()  # the next batch overwrites the workspace
        start += n
        if _stretch_cut_at(stretch, start):
            break
