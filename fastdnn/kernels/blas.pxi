# BLAS access and blocking: how a product is issued, cut and chunked.
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- BLAS

cdef inline void _blas_gemm(char transa, char transb, int m, int n, int k, floating alpha,
                            const floating* a, int lda, const floating* b, int ldb,
                            floating beta, floating* c, int ldc) noexcept nogil:
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb, &beta, c, &ldc)


# OpenBLAS (its SkylakeX kernels, which SciPy's build picks on AVX-512 CPUs) multiplies a product
# of at most 10^6 multiply-adds with "small matrix" kernels, straight from the operands; a larger
# one is first copied into packed panels, which costs more than the arithmetic on the products of
# a dense layer's blocks. So a product is issued in chunks of C's rows or columns under the
# limit, where a chunk stays at least _MIN_CHUNK_WIDTH wide (narrower ones re-read the other
# operand too often) or the product is skinny. Chunks depend on the shapes only.
cdef int _SMALL_GEMM = 1000000
cdef int _SKINNY = 64
cdef int _MIN_CHUNK_WIDTH = 32


cdef inline void _gemm(char transa, char transb, int m, int n, int k, floating alpha,
                       const floating* a, int lda, const floating* b, int ldb, floating beta,
                       floating* c, int ldc) noexcept nogil:
    """C := alpha*op(A)@op(B) + beta*C, column-major (the BLAS convention); a product above
    OpenBLAS's small-matrix limit in chunks of C's rows or columns under it, where chunks stay
    wide enough (each element still one call's sum), a very large one in chunks of about
    _STOP_GEMM. Before each chunk, the team's stop request (``_stopping``) skips the rest."""
    cdef int lo = 0, step
    cdef int by_m = _chunk_for(m, n, k), by_n = _chunk_for(n, m, k)
    cdef bint large = <int64_t>m * n * k > _STOP_CHECK
    if by_m == 0 and by_n == 0:
        by_m, by_n = _stop_chunk_for(m, n, k), _stop_chunk_for(n, m, k)
        if by_m == 0 and by_n == 0:
            by_m = m  # one call
    if by_m >= by_n:
        while lo < m:
            if large and _stopping():
                return
            step = by_m if lo + by_m <= m else m - lo
            _blas_gemm(transa, transb, step, n, k, alpha,
                       a + (lo if transa == c'N' else <int64_t>lo * lda), lda, b, ldb, beta,
                       c + lo, ldc)
            lo += by_m
    else:
        while lo < n:
            if large and _stopping():
                return
            step = by_n if lo + by_n <= n else n - lo
            _blas_gemm(transa, transb, m, step, k, alpha, a, lda,
                       b + (<int64_t>lo * ldb if transb == c'N' else lo), ldb, beta,
                       c + <int64_t>lo * ldc, ldc)
            lo += by_n


# A product of more than _STOP_GEMM multiply-adds (tens of milliseconds on one core) is issued in
# chunks of about that size, at least _STOP_MIN_WIDTH wide (each chunk re-packs one operand:
# narrower ones cost throughput), so that a stop request (Ctrl-C) is seen within one chunk.
# Products under _STOP_CHECK multiply-adds (a millisecond) check nothing: the loss checks each step.
cdef int64_t _STOP_GEMM = 1 << 30
cdef int _STOP_MIN_WIDTH = 256
cdef int64_t _STOP_CHECK = 1 << 24


cdef inline int _stop_chunk_for(int side, int other, int k) noexcept nogil:
    """Chunk of ``side`` for a product above _STOP_GEMM (0: none needed)."""
    cdef int64_t line = <int64_t>other * k, chunk
    if <int64_t>side * line <= _STOP_GEMM:
        return 0
    chunk = max(<int64_t>_STOP_MIN_WIDTH, (_STOP_GEMM // line) & ~7)
    return <int>chunk if chunk < side else 0


cdef object _signal_exception = None  # what a signal handler raised in ``_stopping``


cdef object _take_signal_exception():
    """Return and clear the exception a signal handler raised in ``_stopping``."""
    global _signal_exception
    held, _signal_exception = _signal_exception, None
    return held


cdef inline bint _stopping() noexcept nogil:
    """Whether this thread's team was asked to stop; on the team's polling thread (the calling
    Python thread, see ``team_poll_signals``), first run Python's signal handlers when due."""
    if team_poll_due():
        _run_signal_handlers()
    return team_stopped()


cdef void _run_signal_handlers() noexcept nogil:
    """Run Python's signal handlers, outside this thread's team (a handler may run kernels of
    its own, on another network: this one's refuse while busy); an exception they raise
    (KeyboardInterrupt) is kept in _signal_exception and stops the team."""
    global _signal_exception
    cdef team_member_t me = team_step_out()
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as e:
            _signal_exception = e
            team_step_in(me)
            team_request_stop()
    team_step_in(me)


cdef inline int _chunk_for(int side, int other, int k) noexcept nogil:
    """Chunk of ``side`` that keeps a product under the small-matrix limit (0: none needed, or
    none wide enough to pay)."""
    cdef int64_t size = <int64_t>side * other * k, chunk
    if size <= _SMALL_GEMM:
        return 0
    chunk = (_SMALL_GEMM // (<int64_t>other * k)) & ~7
    if chunk < _MIN_CHUNK_WIDTH and not (other <= _SKINNY or k <= _SKINNY):
        return 0
    return <int>chunk if chunk >= 8 else 0


# An input block with less than this fraction of nonzeros is multiplied with its zeros skipped
# (``simd/sparse.h``), if the layer has at least _SPARSE_MIN_WIDTH units: each nonzero input costs a
# few instructions to find, paid back by one multiply-add per 8 (or 16) units; narrower layers
# lose to BLAS. 0.75 keeps Fashion-MNIST's densest blocks sparse (the ratios by density and width
# are in CHANGELOG.md).
cdef double _SPARSE_DENSITY = 0.75
cdef Py_ssize_t _SPARSE_MIN_WIDTH = 32


cdef inline bint _sparse_pays(const floating* x, Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Whether x[:, lo:hi] (n rows n_in wide) times a kernel n_out wide is for ``simd/sparse.h``'s
    products (float32, in the AVX2 and AVX-512 variants; the choice depends on the data and the
    shapes, not on the threads)."""
    if floating is double or simd.sparse_product_f32 == NULL or n_out < _SPARSE_MIN_WIDTH:
        return False
    return simd.sparse_nonzeros_below(<const float*>x, n_in, n, lo, hi,
                                      _SPARSE_DENSITY * n * (hi - lo))


cdef inline void _input_product(const floating* x, const floating* w, floating* out, Py_ssize_t n,
                                Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t lo,
                                Py_ssize_t hi) noexcept nogil:
    """OUT out (n, n_out) := x[:, lo:hi] @ w[lo:hi], for x (n, n_in) and w (n_in, n_out); a
    large sparse product in chunks of rows of about _STOP_GEMM, each after ``_stopping``."""
    cdef Py_ssize_t r0 = 0, rows = n
    if _sparse_pays(x, n, n_in, n_out, lo, hi):
        if n * (hi - lo) * n_out > _STOP_GEMM:
            rows = max(<Py_ssize_t>SPARSE_DEPTH, _STOP_GEMM // ((hi - lo) * n_out))
        while r0 < n:
            if rows < n and _stopping():
                return
            simd.sparse_product_f32(<const float*>x + r0 * n_in, n_in, min(rows, n - r0), lo,
                                    hi, <const float*>w, n_out, <float*>out + r0 * n_out)
            r0 += rows
    else:
        _gemm(c'N', c'N', <int>n_out, <int>n, <int>(hi - lo), 1, w + lo * n_out, <int>n_out,
              x + lo, <int>n_in, 0, out, <int>n_out)


# A dense layer whose products reach this many multiply-adds is cut into blocks of its input rows,
# shared among threads, each product by single-threaded BLAS: OpenBLAS's own threads hand off
# badly on the skinny products of small batches.
cdef Py_ssize_t _MIN_SPLIT_PRODUCT = 1 << 20
cdef int _MAX_BLOCKS = 4
cdef int _MIN_BLOCK = 48


cdef inline int _blocks_along(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out,
                              Py_ssize_t width) noexcept nogil:
    """How many blocks a dense layer of ``n`` rows would cut its kernel into along a side of
    ``width`` (1: too small to pay for a fork)."""
    cdef Py_ssize_t blocks = width // _MIN_BLOCK
    if n * n_in * n_out < _MIN_SPLIT_PRODUCT or blocks < 2:
        return 1
    return <int>(blocks if blocks < _MAX_BLOCKS else _MAX_BLOCKS)


cdef inline int _row_blocks(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """How many blocks of kernel rows (inputs) a dense layer is cut into for a batch of n rows.

    The count depends on the shapes only, never on the thread count, so every element is summed
    the same way however many threads run (BLAS may pick other inner kernels for other sizes).
    """
    return _blocks_along(n, n_in, n_out, n_in)


cdef inline int _column_blocks(Py_ssize_t n, Py_ssize_t n_in, Py_ssize_t n_out) noexcept nogil:
    """How many blocks of kernel columns (units) a large layer with too few inputs to cut by rows
    is cut into (1: not cut; see ``_row_blocks``)."""
    if _row_blocks(n, n_in, n_out) > 1:
        return 1
    return _blocks_along(n, n_in, n_out, n_out)


cdef inline Py_ssize_t _block_edge(Py_ssize_t rows, int blocks, int p) noexcept nogil:
    """First row of block p (``rows`` for p == blocks); multiples of 8 keep BLAS's tiles whole."""
    return rows if p >= blocks else (rows * p // blocks) & ~7


cdef inline int _block_threads(int blocks) noexcept nogil:
    return _n_threads if _n_threads < blocks else blocks


cdef inline Py_ssize_t _share(Py_ssize_t count, int t, int nt) noexcept nogil:
    """First of the ``count`` items (blocks, rows) thread t of a team of nt takes; its share
    ends where thread t + 1's starts. One rule everywhere, so a thread owns the same blocks in
    every phase of a step."""
    return count * t // nt
