# Network: a model laid out for the kernels (plan, flat buffers, workspace) and its calls.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

cdef class Network:
    """A sequential network laid out for the kernels: plan, flat buffers, workspace.

    The model API builds one from its layers. The parameters live in one flat buffer owned by the
    caller (layers hold views into it); the network owns the flat gradient buffer and one
    workspace sized for ``capacity`` rows, so training allocates nothing per batch.

    Args:
        n_inputs: features per sample.
        ops: list of ``fastdnn._plan.Op`` (or tuples in its field order: kind, units,
            activation, param, kernel_offset, bias_offset), checked by ``_checked_ops``. A batch
            normalization's activation field holds its flags (BN_SCALE, BN_CENTER), its
            kernel_offset its weights: gamma (with BN_SCALE), beta (with BN_CENTER), moving
            mean, moving variance, each ``units`` long, in that order; a normalization's
            activation field is 1 to invert, its kernel_offset its mean, variance and count
            (2·units + 1). These weights and the dense ops' kernels and biases cover params
            exactly, each parameter once: every layer applies the optimizer step to its own
            weights.
        params: the flat parameter buffer (1-D float32 or float64, C-contiguous).
        loss: LOSS_SPARSE_CE, LOSS_CE, LOSS_BCE or LOSS_MSE (the cross-entropies from logits).
        metric: one code, METRIC_NONE, METRIC_SPARSE_ACC, METRIC_CATEGORICAL_ACC or
            METRIC_BINARY_ACC (``train``'s correct_out is then (count,): hits per batch), or a
            list of up to MAX_METRICS ``(code, k)`` or ``(code, k, weighted)`` tuples, any
            METRIC_* but NONE, k used by METRIC_SPARSE_TOP_K, weighted (default False) whether
            the sample weights weigh it, as Keras' ``weighted_metrics`` (correct_out is then
            (count, n_metrics, 2): each metric's sums per batch, see ``_metric_sums``). Binary
            accuracy reads the sparse loss's labels for a one-unit output, whose label is its
            target.
        fused: the last op's activation (softmax or sigmoid) is folded into the loss.
        capacity: rows per batch the workspace holds.
        seed: seed of the dropout generator.
        trainable: one flag per op, or None (all True): a dense op whose flag is false keeps its
            weights (no optimizer step), a batch normalization runs as at inference;
            backpropagation stops at the lowest trainable dense or batch normalization op.
        penalties: one entry per op, or None: a dense op's ``(kernel l1, kernel l2, bias l1,
            bias l2)`` (>= 0) or None; a trainable op's ``l1·Σ|w| + l2·Σw²`` joins the loss
            (per sample) and its gradient the update, as Keras' regularizers.
        normalizations: one entry per op, or None: each (batch) normalization op's
            ``(momentum, epsilon)`` (momentum in [0, 1], epsilon > 0; a normalization uses only
            epsilon), None for the others. A trainable batch normalization trains as Keras':
            batch statistics, moving averages updated after each applied step, gamma and beta
            stepped; a frozen one normalizes with its moving statistics.
        activities: one entry per op, or None: an activity regularizer's ``(l1, l2)`` (>= 0)
            on the op's output, or None: ``(l1·Σ|a| + l2·Σa²) / batch size`` joins each
            batch's loss and its gradient the backward pass, as Keras'. Not on a dropout op,
            nor on the last op when its activation is folded into the loss.
    """
    cdef Plan plan
    cdef readonly object dtype
    cdef readonly object params
    cdef readonly object grads
    cdef object _arrays       # int/float plan arrays the Plan points into
    cdef object _ws
    cdef object _scratch      # g0, g1, parts, xbuf, ybuf, lbuf, wbuf
    cdef object _trainable    # int64 per op, the Plan points into it
    cdef object _variables    # the trainable kernels' and biases' spans (_trainable_variables)
    cdef object _scales       # 2 float64 per trainable variable: the clips' scratch
    cdef object _penalties    # float64 (n_ops, 4), the Plan points into it
    cdef object _norms        # float64 (n_ops, 2): momentum, epsilon; the Plan points into it
    cdef object _activities   # float64 (n_ops, 2): activity l1, l2; the Plan points into it
    cdef dict _sizers         # work ('train', 'infer'): (its key, its TeamSizer)
    cdef object _kept         # spare copies of params and slots (train's non-finite guard)
    cdef readonly int n_outputs
    cdef readonly int n_metrics
    cdef bint _one_metric      # metric given as one code: correct_out holds hits per batch
    cdef object _metric_arrays
    cdef public uint64_t seed
    cdef public uint64_t counter
    cdef bint _ready          # __init__ completed: the plan, params and workspace match
    cdef int _busy            # calls running without the GIL on the workspace

    @cython.wraparound(True)
    def __init__(self, n_inputs, ops, params, loss, metric, bint fused, capacity, seed=0,
                 trainable=None, penalties=None, normalizations=None, activities=None):
        if self._ready:
            raise RuntimeError("this Network is already initialised: create a new one (its "
                               "buffers belong to its plan)")
        self.dtype = _check("params", params, 1, None, None, True)
        n_inputs = _int_in("n_inputs", n_inputs, 1, _INT_MAX)
        capacity = _int_in("capacity", capacity, 1, _INT_MAX)
        if loss not in (LOSS_SPARSE_CE, LOSS_CE, LOSS_BCE, LOSS_MSE):
            raise ValueError(f"unknown loss code {loss}")
        kind, units, act, rate, w_off, b_off = _checked_ops(ops, n_inputs, params.shape[0],
                                                            loss, fused)
        codes, ks, weighted = _metric_specs(metric, loss, int(units[-1]))
        dense = kind == OP_DENSE
        batch_norm, norm = kind == OP_BATCH_NORMALIZATION, kind == OP_NORMALIZATION
        norms = np.zeros((len(ops), 2))
        if normalizations is not None and len(normalizations) != len(ops):
            raise ValueError(f"normalizations must have one entry per op ({len(ops)}), got "
                             f"{len(normalizations)}")
        for i in np.flatnonzero(batch_norm | norm):
            entry = normalizations[i] if normalizations is not None else None
            if entry is None or len(entry) != 2:
                raise ValueError(f"op {i} normalizes: its normalizations entry must be "
                                 "(momentum, epsilon)")
            norms[i] = [_finite_scalar("momentum", entry[0], 0.0, 1.0),
                        _finite_scalar("epsilon", entry[1], 0.0)]
            if norms[i, 1] <= 0:
                raise ValueError(f"epsilon must be > 0, got {norms[i, 1]}")
        self.params = params
        self.grads = np.zeros_like(params)
        self.n_outputs = int(units[-1])
        self.seed = _int_in("seed", seed, 0, 2**64 - 1)
        self.counter = 0
        out_off = np.zeros(len(ops), np.int64)
        mask_off = np.full(len(ops), -1, np.int64)
        self._arrays = (kind, units, act, rate, w_off, b_off, out_off, mask_off)
        p = &self.plan
        p.n_ops = len(ops)
        p.n_inputs = n_inputs
        self._trainable = np.ones(len(ops), np.int64)
        if trainable is not None:
            if len(trainable) != len(ops):
                raise ValueError(f"trainable must have one flag per op ({len(ops)}), got "
                                 f"{len(trainable)}")
            self._trainable[:] = [bool(flag) for flag in trainable]
        stepped = (dense | batch_norm) & (self._trainable != 0)
        p.first_dense = int(np.argmax(stepped)) if stepped.any() else len(ops)
        p.trainable = <int64_t*>_data(self._trainable)
        self._penalties = np.zeros((len(ops), 4))
        if penalties is not None:
            if len(penalties) != len(ops):
                raise ValueError(f"penalties must have one entry per op ({len(ops)}), got "
                                 f"{len(penalties)}")
            for i, entry in enumerate(penalties):
                if entry is not None:
                    self._penalties[i] = [_finite_scalar("penalty", v, 0.0) for v in entry]
        p.penalty = <double*>_data(self._penalties)
        p.penalized = bool(np.any(self._penalties[dense & (self._trainable != 0)] != 0))
        self._norms = norms
        p.norm = <double*>_data(norms)
        self._activities = np.zeros((len(ops), 2))
        if activities is not None:
            if len(activities) != len(ops):
                raise ValueError(f"activities must have one entry per op ({len(ops)}), got "
                                 f"{len(activities)}")
            for i, entry in enumerate(activities):
                if entry is not None:
                    self._activities[i] = [_finite_scalar("activity", v, 0.0) for v in entry]
        active = np.any(self._activities != 0, axis=1)
        if np.any(active & (kind == OP_DROPOUT)) or (fused and active[-1]):
            raise ValueError("an activity regularizer cannot apply to a dropout op, nor to the "
                             "last op when its activation is folded into the loss")
        p.activity = <double*>_data(self._activities)
        p.active = bool(active.any())
        p.loss = loss
        self._one_metric = isinstance(metric, (int, np.integer))
        self._metric_arrays = (codes, ks, weighted)
        self.n_metrics = p.n_metrics = codes.shape[0]
        p.metric = <int64_t*>_data(codes)
        p.metric_k = <int64_t*>_data(ks)
        p.metric_weighted = <int64_t*>_data(weighted)
        p.fused = fused
        p.kind = <int64_t*>_data(kind)
        p.units = <int64_t*>_data(units)
        p.act = <int64_t*>_data(act)
        p.rate = <double*>_data(rate)
        p.w_off = <int64_t*>_data(w_off)
        p.b_off = <int64_t*>_data(b_off)
        p.out_off = <int64_t*>_data(out_off)
        p.mask_off = <int64_t*>_data(mask_off)
        self._ws = None
        self._reserve(capacity)
        self._ready = True

    def reserve(self, capacity):
        """Size the workspace for batches of up to ``capacity`` rows (it only ever grows).

        The new buffers are allocated before anything changes: if that fails (MemoryError), the
        network keeps its previous, consistent workspace.
        """
        self._check_ready()
        self._reserve(capacity)

    def _check_ready(self):
        """Refuse a call on a network whose __init__ did not complete, whose buffers do not
        match its plan, or which is running a call (its workspace is in use)."""
        if not self._ready:
            raise RuntimeError("this Network is not initialised (its __init__ failed or was "
                               "never called)")
        if self.params.shape[0] != self.grads.shape[0] or self._ws is None:
            raise RuntimeError("this Network's buffers do not match its plan")
        if self._busy:  # e.g. from a signal handler run inside its training step
            raise RuntimeError("this Network is running a call; call it again after that one")

    def _reserve(self, capacity):
        capacity = _int_in("capacity", capacity, 1, _INT_MAX)
        if self._ws is not None and capacity <= self.plan.capacity:
            return
        kind, units, _, _, _, _, out_off, mask_off = self._arrays
        new_out, new_mask = out_off.copy(), mask_off.copy()
        offset = 0
        for i in range(self.plan.n_ops):
            new_out[i] = offset
            offset += capacity * units[i]
            if kind[i] == OP_DROPOUT:
                new_mask[i] = offset
                offset += capacity * units[i]
            elif kind[i] in (OP_BATCH_NORMALIZATION, OP_NORMALIZATION):  # per-feature vectors
                new_mask[i] = offset
                offset += (_BN_STATS if kind[i] == OP_BATCH_NORMALIZATION else 1) * units[i]
        widest = int(max(units.max(), self.plan.n_inputs))
        ws = np.zeros(offset, self.dtype)
        scratch = (np.zeros(capacity * widest, self.dtype), np.zeros(capacity * widest, self.dtype),
                   np.zeros((_MAX_BLOCKS - 1) * capacity * widest, self.dtype),
                   np.zeros(_X_BUFFERS * capacity * self.plan.n_inputs, self.dtype),
                   np.zeros(capacity * self.n_outputs, self.dtype), np.zeros(capacity, np.int32),
                   np.zeros(capacity, self.dtype))
        out_off[:] = new_out
        mask_off[:] = new_mask
        self._ws, self._scratch = ws, scratch
        self.plan.capacity = capacity

    @property
    def capacity(self):
        """Rows per batch the workspace holds (0 before __init__ completes)."""
        return self.plan.capacity if self._ready else 0

    def _check_data(self, x, y):
        """Check x and y against the plan; return the labels and float targets (one is None)."""
        _check("x", x, 2, self.dtype, (None, self.plan.n_inputs))
        n = x.shape[0]
        if self.plan.loss == LOSS_SPARSE_CE:
            _check_labels(y, n, self.n_outputs)
            return y, None
        _check("y", y, 2, self.dtype, (n, self.n_outputs))
        return None, y

    def train(self, x, y, order, Py_ssize_t batch_size, Py_ssize_t first, Py_ssize_t count,
              opt, slots, iteration, loss_out, correct_out, sample_weight=None):
        """Train ``count`` batches, starting at batch ``first``, without the GIL.

        A step that would leave a weight or a slot NaN or infinite is never applied: the call
        keeps a copy of the parameters, slots and dropout position, checks them once at its end,
        and when one is not finite restores the copy and runs the batches again one at a time,
        stopping before the step that broke them (deterministic, so the same steps). A signal's
        exception (Ctrl-C) landing between the stretches the batches run in (``_run``) stops
        the call there; one landing during a stretch (on Python's main thread) stops it within
        a product's chunk and voids the call's batches (the copy is restored). Either is
        raised once the parameters, slots, dropout position and an array ``iteration`` agree
        on the batches applied.

        Args:
            x: inputs, (n, n_inputs), the network's dtype, C-contiguous.
            y: int32 labels (n,) for the sparse loss, else targets (n, n_outputs).
            order: int64 permutation of range(n) (shuffled epoch), or None for the data's order.
            batch_size: rows per batch, at most ``capacity``.
            first: index of the first batch to run.
            count: number of batches to run.
            opt: the optimizer's settings, an ``OptimizerConfig`` (or a dict of its arguments,
                checked here).
            slots: IN/OUT optimizer slots, (n_slots, n_params) of the network's dtype: the slots
                Keras creates for these settings, in Keras' order (``opt.slot_names``).
            iteration: the optimizer's step counter before this call, in [0, 2**62 - count]:
                an int, or an int64 array of shape (1,), IN/OUT, advanced by this call in the
                same C code that applies the steps (no signal can land between the two).
            loss_out: OUT float64 (count,): each batch's summed per-sample loss.
            correct_out: OUT float64: each batch's number of correct samples, (count,), for a
                metric given as one code; else each batch's metric sums, (count, n_metrics, 2).
            sample_weight: None, or (n,) finite weights of the network's dtype: each sample's
                loss, gradient and weighted metrics' sums count that many times (the gradient
                is still divided by the batch size, as Keras' 'sum_over_batch_size').

        Returns:
            ``(batches_applied, iteration)``: fewer batches than asked when a batch's loss was not
            finite or its step would have made a weight or slot non-finite (that batch's loss is
            in loss_out; its update was not applied).
        """
        self._check_ready()
        labels, targets = self._check_data(x, y)
        cdef Py_ssize_t n = x.shape[0], n_params = self.params.shape[0]
        if batch_size < 1 or batch_size > self.plan.capacity:
            raise ValueError(f"batch_size must lie in [1, {self.plan.capacity}], got {batch_size}")
        n_batches = (n + batch_size - 1) // batch_size
        if first < 0 or count < 0 or first + count > n_batches:
            raise ValueError(f"batches [{first}, {first + count}) are outside [0, {n_batches})")
        if order is not None:
            _check("order", order, 1, np.int64, (n,))
            part = order[first * batch_size:min(n, (first + count) * batch_size)]
            if part.size and (part.min() < 0 or part.max() >= n):
                raise ValueError(f"order must hold indices in [0, {n})")
        _check("slots", slots, 2, self.dtype, (None, n_params), writable=True)
        if any(_overlap(slots, other) for other in (self.params, self.grads, x)):
            raise ValueError("slots must not overlap the parameters, the gradients or x")
        _check("loss_out", loss_out, 1, np.float64, (count,), writable=True)
        if self._one_metric:
            _check("correct_out", correct_out, 1, np.float64, (count,), writable=True)
            metric_out = np.zeros((count, self.n_metrics, 2))
        else:
            _check("correct_out", correct_out, 3, np.float64, (count, self.n_metrics, 2),
                   writable=True)
            metric_out = correct_out
        cdef OptimizerConfig config = _as_config(opt)
        needed = len(config.slot_names)
        if slots.shape[0] != needed:
            raise ValueError(f"slots must have {needed} rows for this optimizer "
                             f"({', '.join(config.slot_names) or 'none'}), got {slots.shape[0]}")
        cdef int64_t* step_counter = NULL
        if isinstance(iteration, np.ndarray):
            _check("iteration", iteration, 1, np.int64, (1,), writable=True)
            step_counter = <int64_t*>_data(iteration)
            start_iteration = int(step_counter[0])
        else:
            start_iteration = iteration
        _int_in("iteration", start_iteration, 0, 2**62 - count)
        self._check_weights(sample_weight, n)
        g0, g1, parts, xbuf, ybuf, lbuf, wbuf = self._scratch
        cdef TrainCall call
        variables = self._trainable_variables()
        call.plan, call.opt, call.schedule = &self.plan, &config.c, &config.rate_schedule
        call.clipvalue, call.weight_decay = config.clipvalue, config.weight_decay
        call.clipnorm, call.global_clipnorm = config.clipnorm, config.global_clipnorm
        call.slot_rows = config.rows
        call.variables, call.n_variables = <int64_t*>_data(variables), variables.shape[0]
        call.scales = <double*>_data(self._scales)
        call.params, call.grads = _data(self.params), _data(self.grads)
        call.slots, call.n_params = (_data(slots) if needed else NULL), n_params
        call.ws, call.g0, call.g1, call.parts = _data(self._ws), _data(g0), _data(g1), _data(parts)
        call.xbuf, call.ybuf, call.lbuf = _data(xbuf), _data(ybuf), <int32_t*>_data(lbuf)
        call.x, call.y, call.labels = _data(x), _data(targets), <int32_t*>_data(labels)
        call.weights, call.wbuf = _data(sample_weight), _data(wbuf)
        call.order = <int64_t*>_data(order)
        call.n_samples, call.batch_size, call.first, call.count = n, batch_size, first, count
        call.iteration, call.seed, call.counter = start_iteration, self.seed, self.counter
        call.loss_out = <double*>_data(loss_out)
        call.metric_out = <double*>_data(metric_out)
        call.done = count
        kept = self._keep(slots, call.counter)
        held = self._run(&call)
        cdef Py_ssize_t applied = 0, limit = call.done if held is not None else count
        if call.stopped:  # none of the call's batches is applied
            self._restore(kept, slots)
            call.counter, call.done = kept[2], 0
        elif not self._finite(slots):
            self._restore(kept, slots)
            call.counter = kept[2]
            while applied < limit:  # again, one step at a time, each checked before the next
                kept = self._keep(slots, call.counter)
                call.first, call.count, call.done = first + applied, 1, 1
                call.iteration = start_iteration + applied
                call.loss_out = <double*>_data(loss_out) + applied
                call.metric_out = <double*>_data(metric_out) + applied * 2 * self.n_metrics
                held = self._run(&call) or held
                if call.done == 0 or call.stopped or not self._finite(slots):
                    self._restore(kept, slots)
                    call.counter = kept[2]
                    break
                applied += 1
            call.done = applied
        self.counter = call.counter
        if self._one_metric:
            ran = min(count, call.done + 1)
            correct_out[:ran] = metric_out[:ran, 0, 0] if self.n_metrics else 0
        if step_counter != NULL:
            step_counter[0] = start_iteration + call.done
        if held is not None:
            raise held
        return call.done, start_iteration + call.done

    def _trainable_variables(self):
        """(start, size) in params of each trainable dense op's kernel and bias, and each
        trainable batch normalization's gamma and beta, in order: the variables whose gradients
        clipnorm and global_clipnorm measure (made once)."""
        if self._variables is not None:
            return self._variables
        kind, units, act, _, w_off, b_off, _, _ = self._arrays
        spans, width = [], self.plan.n_inputs
        for i in range(self.plan.n_ops):
            if kind[i] == OP_DENSE and self._trainable[i]:
                spans.append((w_off[i], width * units[i]))
                if b_off[i] >= 0:
                    spans.append((b_off[i], units[i]))
            elif kind[i] == OP_BATCH_NORMALIZATION and self._trainable[i]:
                trained = int(act[i] & _BN_SCALE != 0) + int(act[i] & _BN_CENTER != 0)
                spans += [(w_off[i] + k * units[i], units[i]) for k in range(trained)]
            width = units[i]
        self._variables = np.array(spans, np.int64).reshape(-1, 2)
        self._scales = np.empty(2 * len(spans))
        return self._variables

    cdef object _run(self, TrainCall* call):
        """Run ``call``'s batches without the GIL, in stretches on the thread count the
        network's ``TeamSizer`` chooses for each; OUT call.done: the batches applied in all.

        Returns None, or the exception a signal handler (Ctrl-C) raised: in the Python code
        between two stretches, where the run stops; or on thread 0 during a stretch
        (``_stopping``, when the call runs on Python's main thread), where the team skips its
        remaining products and stops at the next step's loss, and sets call.stopped: the
        parameters and slots are then void, half-updated. ``train`` raises it once the
        parameters, slots and step counter agree on the batches applied."""
        cdef unsigned int state
        cdef bint f32 = self.dtype == np.float32
        cdef Py_ssize_t first = call.first, count = call.count, done = 0
        cdef int64_t iteration = call.iteration
        cdef double* losses = call.loss_out
        cdef double* sums = call.metric_out
        cdef int threads
        held = None
        call.stopped = False
        call.poll = threading.current_thread() is threading.main_thread()
        try:
            sizer = self._sizer("train", _team_threads(&self.plan, call.batch_size),
                                call.batch_size)
            while done < count:
                threads, call.count, seconds = sizer.next_run(count - done)
                call.stretch = _stretch(seconds)
                call.first, call.iteration = first + done, iteration + done
                call.loss_out, call.metric_out = losses + done, sums + done * 2 * self.n_metrics
                call.done = call.count
                memset(call.claimed, 0, sizeof(call.claimed))
                call.team = team_t(0, 0, 0)
                started = time.perf_counter()
                self._busy += 1
                with nogil, parallel(num_threads=threads):
                    state = _team_start(&call.team)
                    if call.poll and team_index() == 0:
                        team_poll_signals()
                    if f32:
                        _train_batches(call, <float*>NULL, team_index(), team_size())
                    else:
                        _train_batches(call, <double*>NULL, team_index(), team_size())
                    _team_end(state)
                self._busy -= 1
                if call.team.stop:
                    call.stopped = True
                    held = _take_signal_exception()
                    break
                done += call.done
                if call.done < (call.count if call.stretch.cut < 0 else call.stretch.cut):
                    break  # a non-finite loss
                sizer.record(threads, call.done, time.perf_counter() - started)
        except BaseException as e:  # only the Python code between stretches can raise
            held = e
        call.done = done
        return held

    def _sizer(self, work, team, rows):
        """The ``TeamSizer`` of ``work`` ('train' or 'infer') on batches of ``rows`` rows, for a
        team of ``team`` threads (a new one when the team or the batch size changes)."""
        key = (work, team, rows)
        if self._sizers is None:
            self._sizers = {}
        sizer = self._sizers.get(work)
        if sizer is None or sizer[0] != key:
            sizer = self._sizers[work] = (key, TeamSizer(team))
        return sizer[1]

    def _keep(self, slots, uint64_t counter):
        """Copy the parameters and slots into the network's spare buffers (made once per slots
        shape); return ``(params copy, slots copy, dropout position)``."""
        if self._kept is None or self._kept[1].shape != slots.shape:
            self._kept = (np.empty_like(self.params), np.empty_like(slots))
        np.copyto(self._kept[0], self.params)
        np.copyto(self._kept[1], slots)
        return self._kept + (counter,)

    def _restore(self, kept, slots):
        np.copyto(self.params, kept[0])
        np.copyto(slots, kept[1])

    def _finite(self, slots):
        """Whether every parameter and slot is finite (one pass on this thread: no team to wake
        for a pass this short)."""
        cdef void* pp = _data(self.params)
        cdef void* ps = _data(slots)
        cdef Py_ssize_t n = self.params.shape[0], n_slots = slots.size, bad
        if self.dtype == np.float32:
            with nogil:
                bad = simd.count_nonfinite_f32(<float*>pp, n)
                bad += simd.count_nonfinite_f32(<float*>ps, n_slots)
        else:
            with nogil:
                bad = simd.count_nonfinite_f64(<double*>pp, n)
                bad += simd.count_nonfinite_f64(<double*>ps, n_slots)
        return bad == 0

    def evaluate(self, x, y, sample_weight=None):
        """Return ``(loss_sum, correct)`` over all samples, in inference mode, without the GIL:
        correct is the number of hits for a metric given as one code, else every metric's sums,
        an (n_metrics, 2) array; with ``sample_weight`` ((n,) finite, the network's dtype),
        each sample's loss and weighted metrics' sums count that many times."""
        self._check_ready()
        labels, targets = self._check_data(x, y)
        self._check_weights(sample_weight, x.shape[0])
        return self._infer(x, labels, targets, None, sample_weight)

    def _check_weights(self, sample_weight, n):
        if sample_weight is not None:
            _check("sample_weight", sample_weight, 1, self.dtype, (n,))
            if count_nonfinite(sample_weight):
                raise ValueError("sample_weight must be finite")

    def predict(self, x, out):
        """Write the model's outputs for x into OUT ``out`` (n, n_outputs), without the GIL."""
        self._check_ready()
        _check("x", x, 2, self.dtype, (None, self.plan.n_inputs))
        _check("out", out, 2, self.dtype, (x.shape[0], self.n_outputs), writable=True)
        self._infer(x, None, None, out, None)

    def _infer(self, x, labels, targets, out, weights):
        """Run ``_infer`` over x in calls of about ``_CALL_FLOPS`` at most (whole batches of
        ``capacity`` rows when a batch is cheaper than that, so the results do not change),
        handling signals between calls and, on Python's main thread, during them
        (``_stopping``): Ctrl-C stops a long predict or evaluate promptly. Each call is a
        stretch on the thread count the network's ``TeamSizer`` chooses."""
        cdef double loss_sum = 0
        sums = np.zeros((max(self.n_metrics, 1), 2))
        cdef double* psums = <double*>_data(sums)
        cdef Py_ssize_t n = x.shape[0], n_out = self.n_outputs, start = 0, rows
        cdef Py_ssize_t capacity = self.plan.capacity
        cdef Py_ssize_t step = _rows_per_call(&self.plan)
        cdef Py_ssize_t item = self.dtype.itemsize, x_row = self.plan.n_inputs * item
        cdef char* pp = <char*>_data(self.params)
        cdef char* pws = <char*>_data(self._ws)
        cdef char* pparts = <char*>_data(self._scratch[2])
        cdef char* px = <char*>_data(x)
        cdef char* py = <char*>_data(targets)
        cdef int32_t* pl = <int32_t*>_data(labels)
        cdef char* pw = <char*>_data(weights)
        cdef char* pout = <char*>_data(out)
        cdef int threads
        cdef unsigned int state
        cdef team_t team
        cdef Stretch stretch
        cdef bint f32 = self.dtype == np.float32
        cdef bint poll = threading.current_thread() is threading.main_thread()
        sizer = self._sizer("infer", _team_threads(&self.plan, capacity), capacity)
        while start < n:  # in stretches of whole batches as in ``train``, within _CALL_FLOPS
            rows = min(step, n - start)
            threads, batches, seconds = sizer.next_run((rows + capacity - 1) // capacity)
            rows = min(rows, batches * capacity)
            team, stretch = team_t(0, 0, 0), _stretch(seconds)
            started = time.perf_counter()
            self._busy += 1
            with nogil, parallel(num_threads=threads):
                state = _team_start(&team)
                if poll and team_index() == 0:
                    team_poll_signals()
                if f32:
                    _infer(&self.plan, <float*>pp, <float*>pws, <float*>pparts,
                           <float*>(px + start * x_row),
                           <float*>(py + start * n_out * item) if py != NULL else NULL,
                           pl + start if pl != NULL else NULL,
                           <float*>(pw + start * item) if pw != NULL else NULL,
                           <float*>(pout + start * n_out * item) if pout != NULL else NULL,
                           rows, &loss_sum, psums, &stretch, team_index(), team_size())
                else:
                    _infer(&self.plan, <double*>pp, <double*>pws, <double*>pparts,
                           <double*>(px + start * x_row),
                           <double*>(py + start * n_out * item) if py != NULL else NULL,
                           pl + start if pl != NULL else NULL,
                           <double*>(pw + start * item) if pw != NULL else NULL,
                           <double*>(pout + start * n_out * item) if pout != NULL else NULL,
                           rows, &loss_sum, psums, &stretch, team_index(), team_size())
                _team_end(state)
            self._busy -= 1
            if team.stop:  # a signal's exception (Ctrl-C): the outputs are incomplete
                raise _take_signal_exception()
            if stretch.cut >= 0:
                rows, batches = stretch.cut, (stretch.cut + capacity - 1) // capacity
            sizer.record(threads, batches, time.perf_counter() - started)
            start += rows
            if start < n:
                PyErr_CheckSignals()
        if labels is not None or targets is not None:  # the penalty, per sample
            loss_sum += n * (_penalty(&self.plan, <float*>pp) if f32
                             else _penalty(&self.plan, <double*>pp))
        if self._one_metric:
            return loss_sum, float(sums[0, 0])
        return loss_sum, sums[:self.n_metrics]


_OP_FIELDS = 6  # kind, units, activation, param, kernel_offset, bias_offset: fastdnn._plan.Op


def _checked_ops(ops, Py_ssize_t n_inputs, Py_ssize_t n_params, loss, bint fused):
    """Check Network's ``ops`` against the inputs' width, the parameter buffer and the loss;
    return their fields as the Plan's arrays: int64 kinds, units, activations, float64 params,
    int64 kernel and bias offsets."""
    if not isinstance(ops, (list, tuple)) or not ops:
        raise ValueError("ops must be a non-empty list of ops")
    n = len(ops)
    kind, units, act = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
    w_off, b_off = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    rate = np.zeros(n)
    spans, width = [], n_inputs
    for i, op in enumerate(ops):
        if not isinstance(op, (list, tuple)) or len(op) != _OP_FIELDS:
            raise ValueError(f"ops[{i}] must be a tuple of {_OP_FIELDS} fields (kind, units, "
                             "activation, param, kernel_offset, bias_offset)")
        name = f"ops[{i}]"
        kind[i] = _int_in(name + ".kind", op[0], OP_DENSE, OP_NORMALIZATION)
        units[i] = _int_in(name + ".units", op[1], 1, _INT_MAX)
        act[i] = _int_in(name + ".activation", op[2], 0, EXPONENTIAL)
        if kind[i] != OP_DENSE and units[i] != width:
            raise ValueError(f"ops have inconsistent widths: {name} has {units[i]} units, its "
                             f"input {width}")
        if kind[i] == OP_DENSE:
            if act[i] in UNFUSED_ACTIVATIONS:
                raise ValueError(f"{name}: a dense op cannot apply gelu, silu or leaky_relu: "
                                 "follow it with an activation op")
            rate[i] = _finite_scalar(name + ".param", op[3])
            w_off[i] = _int_in(name + ".kernel_offset", op[4], 0, n_params)
            b_off[i] = _int_in(name + ".bias_offset", op[5], -1, n_params)
            if w_off[i] + width * units[i] > n_params or (b_off[i] >= 0 and
                                                          b_off[i] + units[i] > n_params):
                raise ValueError(f"{name}: ops address weights outside params")
            spans.append((w_off[i], w_off[i] + width * units[i]))
            if b_off[i] >= 0:
                spans.append((b_off[i], b_off[i] + units[i]))
        elif kind[i] in (OP_BATCH_NORMALIZATION, OP_NORMALIZATION):
            if kind[i] == OP_BATCH_NORMALIZATION:
                _int_in(name + ".activation (the flags BN_SCALE | BN_CENTER)", op[2], 0,
                        _BN_SCALE | _BN_CENTER)
                size = (2 + (act[i] & _BN_SCALE != 0) + (act[i] & _BN_CENTER != 0)) * units[i]
            else:
                _int_in(name + ".activation (1: invert)", op[2], 0, 1)
                size = 2 * units[i] + 1
            w_off[i] = _int_in(name + ".kernel_offset", op[4], 0, n_params)
            _int_in(name + ".bias_offset", op[5], -1, -1)
            if w_off[i] + size > n_params:
                raise ValueError(f"{name}: ops address weights outside params")
            spans.append((w_off[i], w_off[i] + size))
        else:
            if kind[i] == OP_DROPOUT:
                rate[i] = _finite_scalar(name + ".param (the dropout rate)", op[3], 0.0, 1.0)
            else:
                rate[i] = _finite_scalar(name + ".param (leaky_relu's slope)", op[3], 0.0)
            _int_in(name + ".kernel_offset", op[4], -1, -1)
            _int_in(name + ".bias_offset", op[5], -1, -1)
        width = units[i]
    if not np.any(kind == OP_DENSE):
        raise ValueError("ops need at least one dense layer")
    covered = 0
    for start, end in sorted(spans):
        if start != covered:  # a gap or an overlap
            covered = -1
            break
        covered = end
    if covered != n_params:
        # each layer applies the optimizer step to its own weights (see _backward)
        raise ValueError("the ops' weights (dense kernels and biases, normalizations' vectors) "
                         "must cover params exactly, each parameter once")
    if fused and not ((loss in (LOSS_SPARSE_CE, LOSS_CE) and act[n - 1] == SOFTMAX or
                       loss == LOSS_BCE and act[n - 1] == SIGMOID) and
                      kind[n - 1] in (OP_DENSE, OP_ACTIVATION)):
        raise ValueError("fused needs a cross-entropy loss and a final softmax (or, for binary "
                         "cross-entropy, sigmoid)")
    return kind, units, act, rate, w_off, b_off


# A call into the kernels from predict or evaluate does about this many flops before Python
# handles signals (Ctrl-C): tenths of a second even on a slow, shared core.
cdef double _CALL_FLOPS = 2e9


cdef Py_ssize_t _rows_per_call(const Plan* p) noexcept:
    """Rows per inference call: whole batches of ``capacity`` rows within ``_CALL_FLOPS``, or
    fewer rows than a batch when a batch alone would exceed it."""
    cdef double row_flops = 0
    cdef Py_ssize_t width = p.n_inputs, rows
    cdef int i
    for i in range(p.n_ops):
        row_flops += 2.0 * width * p.units[i] if p.kind[i] == OP_DENSE else p.units[i]
        width = p.units[i]
    rows = max(1, <Py_ssize_t>(_CALL_FLOPS / row_flops))
    return rows - rows % p.capacity if rows >= p.capacity else rows
