# cython: language_level=3
"""fastdnn's compiled kernels.

How the layers stack (after scikit-learn's ``_loss``):

1. ``cdef inline ... nogil`` helpers work on raw pointers for one precision (``floating`` is a
   fused type: every helper exists for float32 and float64 from this one source).
2. Array-level ``cdef`` functions chain them: dense forward/backward, fused losses, optimizer
   updates. They allocate nothing: every buffer is passed in (IN/OUT marked in the docstrings).
3. Public ``def`` entry points check every argument (type, dtype, rank, shape, contiguity,
   writability, label range) and raise ``TypeError``/``ValueError`` naming it, then run the
   array-level function without the GIL. Bounds checks are off below this line: the checks at the
   boundary are what keeps a Python caller from crashing the interpreter.
4. ``Network`` runs many training batches (gather, forward, loss, backward, fused update) in one
   call without the GIL, on one flat parameter buffer, one flat gradient buffer and one workspace.

Arrays are row-major (C order); BLAS is column-major. A row-major ``(r, c)`` matrix is the
column-major ``(c, r)`` matrix with leading dimension ``c``, so ``Z = X @ W`` in row-major is
``Z^T = W^T @ X^T`` in column-major: every GEMM call below swaps its operands accordingly.

Denormals are flushed to zero while a kernel runs (``_fpenv.h``), and the caller's floating-point
state is restored afterwards. Reductions (loss means, bias gradients) run in a fixed order, so
results do not depend on the number of threads.
"""

import os
import threading
import time

import numpy as np

from fastdnn._team_size import TeamSizer

cimport cython
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, expf, fabs, isfinite, log, log1p, log1pf, logf, pow, powf, sqrt, sqrtf, tanh, tanhf
from libc.math cimport M_2_SQRTPI, M_PI, M_SQRT1_2, ceil, cos, erf, erff, expm1, expm1f, floor
from libc.stdint cimport int32_t, int64_t, uint64_t, uintptr_t
from libc.string cimport memcpy, memset
from cpython.exc cimport PyErr_CheckSignals
from scipy.linalg.cython_blas cimport dgemm, sgemm

cnp.import_array()

cdef extern from "_fpenv.h" nogil:
    unsigned int fpenv_flush_denormals()
    void fpenv_restore(unsigned int state)

cdef extern from "simd/dispatch.h" nogil:
    enum:
        SPARSE_DEPTH
        _OPT_SGD "OPT_SGD"
        _OPT_ADAGRAD "OPT_ADAGRAD"
        _OPT_RMSPROP "OPT_RMSPROP"
        _OPT_ADAM "OPT_ADAM"
    ctypedef struct OptConfig:
        int kind
        double learning_rate
        double momentum
        double rho
        double beta_1
        double beta_2
        double epsilon
        bint nesterov
        bint centered
        bint amsgrad
    ctypedef struct simd_kernels:
        const char* name
        void (*update_f32)(const OptConfig* c, float alpha, float* w, const float* g, float* s0,
                           float* s1, float* s2, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil
        void (*update_f64)(const OptConfig* c, double alpha, double* w, const double* g,
                           double* s0, double* s1, double* s2, Py_ssize_t lo,
                           Py_ssize_t hi) noexcept nogil
        bint (*sparse_nonzeros_below)(const float* x, Py_ssize_t ldx, Py_ssize_t n, Py_ssize_t lo,
                                      Py_ssize_t hi, double limit) noexcept nogil
        void (*sparse_product_f32)(const float* x, Py_ssize_t ldx, Py_ssize_t n, Py_ssize_t lo,
                                   Py_ssize_t hi, const float* w, Py_ssize_t width,
                                   float* out) noexcept nogil
        void (*sparse_weight_gradient_f32)(const float* x, Py_ssize_t ldx, Py_ssize_t n,
                                           Py_ssize_t lo, Py_ssize_t hi, const float* g,
                                           Py_ssize_t width, float* dw) noexcept nogil
        Py_ssize_t (*count_nonfinite_f32)(const float* a, Py_ssize_t size) noexcept nogil
        Py_ssize_t (*count_nonfinite_f64)(const double* a, Py_ssize_t size) noexcept nogil
    enum: SIMD_VARIANTS
    const simd_kernels _simd_table "simd_variants"[]
    const simd_kernels* simd  # the variant in use
    bint simd_supported(int i)
    int simd_use(const char* name)

cdef extern from "_team.h" nogil:
    ctypedef struct team_t:
        int arrived
        int sleepers
        int stop
    void team_join(team_t* team, int size)
    void team_leave()
    int team_arrive()
    bint team_all_arrived(int everyone)
    void team_wait(int everyone)
    void team_barrier()
    int team_index()
    int team_size()
    int team_default_size()
    long long team_load(const long long* p)
    void team_store(long long* p, long long v)
    long long team_take(long long* p)
    long long team_take_end(long long* run, int from_back)
    ctypedef struct team_member_t:
        pass
    team_member_t team_step_out()
    void team_step_in(team_member_t me)
    void team_poll_signals()
    bint team_poll_due()
    void team_request_stop()
    bint team_stopped()


# --- constants shared with the Python layer

LINEAR, RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4
ELU, SELU, GELU, SILU, SOFTPLUS, SOFTSIGN, LEAKY_RELU, RELU6, HARD_SIGMOID, EXPONENTIAL = range(5, 15)
ACTIVATIONS = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX,
               "elu": ELU, "selu": SELU, "gelu": GELU, "silu": SILU, "softplus": SOFTPLUS,
               "softsign": SOFTSIGN, "leaky_relu": LEAKY_RELU, "relu6": RELU6,
               "hard_sigmoid": HARD_SIGMOID, "exponential": EXPONENTIAL}
# Activations a dense layer cannot fuse: their derivative needs the input z (gelu, silu) or a
# parameter (leaky_relu's negative slope, the op's ``rate``), so they run as an activation op.
UNFUSED_ACTIVATIONS = frozenset({GELU, SILU, LEAKY_RELU})

OP_DENSE, OP_ACTIVATION, OP_DROPOUT = 0, 1, 2
LOSS_SPARSE_CE, LOSS_CE, LOSS_BCE, LOSS_MSE = 0, 1, 2, 3
METRIC_NONE, METRIC_SPARSE_ACC, METRIC_CATEGORICAL_ACC, METRIC_BINARY_ACC = 0, 1, 2, 3
METRIC_MAE, METRIC_MSE, METRIC_SPARSE_TOP_K, METRIC_PRECISION, METRIC_RECALL = 4, 5, 6, 7, 8
MAX_METRICS = 16
OPT_SGD, OPT_ADAGRAD, OPT_RMSPROP, OPT_ADAM = 0, 1, 2, 3

cdef enum:
    _LINEAR = 0
    _RELU = 1
    _SIGMOID = 2
    _TANH = 3
    _SOFTMAX = 4
    _ELU = 5
    _SELU = 6
    _GELU = 7
    _SILU = 8
    _SOFTPLUS = 9
    _SOFTSIGN = 10
    _LEAKY_RELU = 11
    _RELU6 = 12
    _HARD_SIGMOID = 13
    _EXPONENTIAL = 14
    _OP_DENSE = 0
    _OP_ACTIVATION = 1
    _OP_DROPOUT = 2
    _LOSS_SPARSE_CE = 0
    _LOSS_CE = 1
    _LOSS_BCE = 2
    _LOSS_MSE = 3
    _METRIC_NONE = 0
    _METRIC_SPARSE_ACC = 1
    _METRIC_CATEGORICAL_ACC = 2
    _METRIC_BINARY_ACC = 3
    _METRIC_MAE = 4
    _METRIC_MSE = 5
    _METRIC_SPARSE_TOP_K = 6
    _METRIC_PRECISION = 7
    _METRIC_RECALL = 8
    _MAX_METRICS = 16

# Below this many elements per thread, an OpenMP fork costs more than it saves.
cdef Py_ssize_t _MIN_CHUNK = 1 << 15
cdef uintptr_t _LINE = 64  # bytes in a cache line
cdef int _n_threads = 1


def set_num_threads(int n):
    """Set how many threads the kernels' parallel work (large products, updates) may use.

    Args:
        n: number of threads, at least 1. Keep BLAS itself to one thread meanwhile
            (``fastdnn.models`` does): both pools on the same cores slow each other down.
    """
    global _n_threads
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    _n_threads = n


def get_num_threads():
    """Return the number of threads the kernels' own parallel loops may use."""
    return _n_threads


def openmp_default_threads():
    """Return OpenMP's default thread count (``OMP_NUM_THREADS`` when set, else the CPUs the
    process could run on when the OpenMP runtime started), or 0 in a build without OpenMP."""
    return team_default_size()


def sparse_products():
    """Return True if the SIMD variant in use multiplies mostly-zero float32 layer inputs with
    their zeros skipped (``simd/sparse.h``: the AVX2 and AVX-512 variants), False if BLAS takes
    every product."""
    return simd.sparse_product_f32 != NULL


def simd_variant():
    """Return the name of the SIMD variant in use: ``'baseline'``, ``'avx2'`` or ``'avx512'``."""
    return simd.name.decode()


def simd_variants():
    """Return the names of the SIMD variants this CPU runs, slowest first (``FASTDNN_SIMD``'s
    choices here)."""
    return [_simd_table[i].name.decode() for i in range(SIMD_VARIANTS) if simd_supported(i)]


def _use_simd(str name):
    """Use the SIMD variant called ``name`` (``''``: the fastest this CPU supports), at import."""
    names = [_simd_table[i].name.decode() for i in range(SIMD_VARIANTS)]
    rc = simd_use(name.encode())
    if rc == -1:
        raise ValueError(f"FASTDNN_SIMD must be one of {', '.join(names)} on this machine (or "
                         f"unset), got {name!r}")
    if rc == -2:
        supported = [names[i] for i in range(SIMD_VARIANTS) if simd_supported(i)]
        raise RuntimeError(f"FASTDNN_SIMD={name}: this CPU lacks the instructions of the "
                           f"{name!r} variant; it runs {', '.join(supported)}")


_use_simd(os.environ.get("FASTDNN_SIMD", ""))


# --- scalar helpers: one name for both precisions

cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _pow(floating x, floating y) noexcept nogil:
    if floating is float:
        return powf(x, y)
    else:
        return pow(x, y)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _expm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)


cdef inline floating _erf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    """1 / (1 + exp(-x)), without overflow for inputs of large magnitude."""
    cdef floating e
    if x >= 0:
        return 1 / (1 + _exp(-x))
    e = _exp(x)
    return e / (1 + e)


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
# a dense layer's blocks. Measured, one thread, one call against chunks under the limit:
# 32x256x1024 forward 284 -> 186 us, its input gradient 580 -> 212 us (skinny: a batch of 32);
# 256x196x100 forward 130 -> 110 us (chunks of 48 rows). So a product is issued in chunks of C's
# rows or columns under the limit, where a chunk stays at least _MIN_CHUNK_WIDTH wide (narrower
# ones re-read the other operand too often: 256x196x1024 in chunks of 16 took 2.5x longer) or the
# product is skinny. Elsewhere the chunks cost a few calls more. Chunks depend on the shapes only.
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
# few instructions to find, paid back by one multiply-add per 8 (or 16) units. Measured on an
# AVX2 machine (Zen 3), one thread, sparse time over OpenBLAS's: 32 rows against 192 x 100 of a
# kernel at densities 0.5 / 0.7 / 0.8 / 1.0, x @ w 0.46 / 0.60 / 0.68 / 0.73, x^T g 0.60 / 0.75 /
# 0.80 / 0.87; at density 0.5 against 256 x n_out, for n_out 16 / 24 / 32 / 64, x @ w 1.15 / 0.87
# / 0.70 / 0.53 and x^T g 0.99 / 0.84 / 0.79 / 0.59 (100 x 10: 1.34 and 1.24). On an AVX-512
# Xeon, whose OpenBLAS runs nearer the FMA units' peak, on Fashion-MNIST's blocks of 192 inputs
# (densities 0.35 / 0.55 / 0.66): 32 rows, x @ w 0.63 / 0.90 / 1.02, x^T g 0.62 / 0.88 / 0.97;
# 256 rows at 0.35 / 0.66, x @ w 0.50 / 0.86, x^T g 0.63 / 0.92. In Fashion-MNIST's batches of 32
# the densest quarter of the pixels averages 0.66 (std 0.03); 0.75 keeps 99.5% of those blocks
# sparse.
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
# badly on the skinny products of small batches (measured: 32x784x100 ten times slower with 2
# BLAS threads than with 1).
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


# --- activations

# SELU's constants (Klambauer et al.), as Keras writes them
cdef double _SELU_ALPHA = 1.6732632423543772848170429916717
cdef double _SELU_SCALE = 1.0507009873554804934193349852946


cdef void _activation_forward(const floating* z, floating* a, Py_ssize_t n, Py_ssize_t c,
                              int act, double param=0) noexcept nogil:
    """OUT a = act(z), row by row; z and a may be the same buffer. ``param`` is leaky_relu's
    negative slope."""
    cdef Py_ssize_t i, j, size = n * c
    cdef floating m, s, v
    cdef floating slope = <floating>param, sa = <floating>(_SELU_SCALE * _SELU_ALPHA)
    cdef floating scale = <floating>_SELU_SCALE, root_half = <floating>M_SQRT1_2
    if act == _LINEAR:
        if a != z:
            memcpy(a, z, size * sizeof(floating))
    elif act == _RELU:
        for i in range(size):
            a[i] = 0 if z[i] <= 0 else z[i]  # NaN stays NaN, as np.maximum
    elif act == _SIGMOID:
        for i in range(size):
            a[i] = _sigmoid(z[i])
    elif act == _TANH:
        for i in range(size):
            a[i] = _tanh(z[i])
    elif act == _ELU:
        for i in range(size):
            a[i] = z[i] if z[i] > 0 else _expm1(z[i])
    elif act == _SELU:
        for i in range(size):
            a[i] = scale * z[i] if z[i] > 0 else sa * _expm1(z[i])
    elif act == _GELU:
        for i in range(size):
            a[i] = <floating>0.5 * z[i] * (1 + _erf(z[i] * root_half))
    elif act == _SILU:
        for i in range(size):
            a[i] = z[i] * _sigmoid(z[i])
    elif act == _SOFTPLUS:
        for i in range(size):
            v = z[i] if z[i] > 0 else 0
            a[i] = v + _log1p(_exp(-(z[i] if z[i] > 0 else -z[i])))
    elif act == _SOFTSIGN:
        for i in range(size):
            a[i] = z[i] / (1 + (z[i] if z[i] > 0 else -z[i]))
    elif act == _LEAKY_RELU:
        for i in range(size):
            a[i] = slope * z[i] if z[i] < 0 else z[i]
    elif act == _RELU6 or act == _HARD_SIGMOID:
        # hard_sigmoid = relu6(z + 3) / 6, as Keras 3
        for i in range(size):
            v = z[i] + 3 if act == _HARD_SIGMOID else z[i]
            v = 0 if v <= 0 else (6 if v > 6 else v)  # NaN stays NaN
            a[i] = v / 6 if act == _HARD_SIGMOID else v
    elif act == _EXPONENTIAL:
        for i in range(size):
            a[i] = _exp(z[i])
    elif act == _SOFTMAX:
        for i in range(n):
            m = z[i * c]
            for j in range(1, c):
                if z[i * c + j] > m:
                    m = z[i * c + j]
            s = 0
            for j in range(c):
                a[i * c + j] = _exp(z[i * c + j] - m)
                s += a[i * c + j]
            s = 1 / s
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
    if act == _RELU:
        for i in range(size):
            g[i] = g[i] if a[i] > 0 else 0
    elif act == _SIGMOID:
        for i in range(size):
            g[i] = g[i] * a[i] * (1 - a[i])
    elif act == _TANH:
        for i in range(size):
            g[i] = g[i] * (1 - a[i] * a[i])
    elif act == _ELU:
        for i in range(size):  # exp(z) = a + 1 where z <= 0
            g[i] = g[i] if a[i] > 0 else g[i] * (a[i] + 1)
    elif act == _SELU:
        for i in range(size):
            g[i] = g[i] * scale if a[i] > 0 else g[i] * (a[i] + sa)
    elif act == _GELU:
        for i in range(size):
            cdf = <floating>0.5 * (1 + _erf(z[i] * root_half))
            g[i] = g[i] * (cdf + z[i] * density * _exp(<floating>-0.5 * z[i] * z[i]))
    elif act == _SILU:
        for i in range(size):
            s = _sigmoid(z[i])
            g[i] = g[i] * s * (1 + z[i] * (1 - s))
    elif act == _SOFTPLUS:
        for i in range(size):  # sigmoid(z) = 1 - exp(-a)
            g[i] = -g[i] * _expm1(-a[i])
    elif act == _SOFTSIGN:
        for i in range(size):  # 1 / (1 + |z|)^2 = (1 - |a|)^2
            s = 1 - (a[i] if a[i] > 0 else -a[i])
            g[i] = g[i] * s * s
    elif act == _LEAKY_RELU:
        for i in range(size):  # slope >= 0: a > 0 exactly where z > 0
            g[i] = g[i] if a[i] > 0 else g[i] * slope
    elif act == _RELU6:
        for i in range(size):
            g[i] = g[i] if 0 < a[i] < 6 else 0
    elif act == _HARD_SIGMOID:
        for i in range(size):
            g[i] = g[i] / 6 if 0 < a[i] < 1 else 0
    elif act == _EXPONENTIAL:
        for i in range(size):
            g[i] = g[i] * a[i]
    elif act == _SOFTMAX:
        for i in range(n):
            dot = 0
            for j in range(c):
                dot += g[i * c + j] * a[i * c + j]
            for j in range(c):
                g[i * c + j] = a[i * c + j] * (g[i * c + j] - dot)


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


cdef inline floating _adam_step_size(const OptConfig* c, int64_t iteration,
                                     const floating* like) noexcept nogil:
    """Adam's ``lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)`` for t = iteration + 1, computed in the
    precision of ``like`` (the parameters), as Keras does in float32."""
    cdef floating t = <floating>(iteration + 1)
    cdef floating lr = <floating>c.learning_rate
    return lr * _sqrt(1 - _pow(<floating>c.beta_2, t)) / (1 - _pow(<floating>c.beta_1, t))


cdef void _update_range(const OptConfig* c, floating alpha, floating* w, const floating* g,
                        floating* s0, floating* s1, floating* s2, Py_ssize_t lo,
                        Py_ssize_t hi) noexcept nogil:
    """IN/OUT w[lo:hi] and the slots s0..s2 (NULL when unused): one step of Keras 3's rule.

    The elements before w's first cache-line boundary in the range take a step of their own, so
    that the vector loop writes w in whole lines: a store across two lines costs two (SGD at
    79,510 weights, one thread, on an AVX-512 Xeon: 10.4 us with w 16 bytes past a line, 8.0 us
    at 32; a plain C loop).
    """
    cdef Py_ssize_t edge = lo + <Py_ssize_t>((-<uintptr_t>(w + lo) % _LINE) // sizeof(floating))
    if lo < edge < hi:
        _update_span(c, alpha, w, g, s0, s1, s2, lo, edge)
        lo = edge
    _update_span(c, alpha, w, g, s0, s1, s2, lo, hi)


cdef inline void _update_span(const OptConfig* c, floating alpha, floating* w, const floating* g,
                              floating* s0, floating* s1, floating* s2, Py_ssize_t lo,
                              Py_ssize_t hi) noexcept nogil:
    """IN/OUT w[lo:hi] and the slots s0..s2 (NULL when unused): one step of Keras 3's rule, by the
    variant's loops (``simd/update.h``). ``alpha`` is Adam's step size (``_adam_step_size``)."""
    if floating is float:
        simd.update_f32(c, alpha, w, g, s0, s1, s2, lo, hi)
    else:
        simd.update_f64(c, alpha, w, g, s0, s1, s2, lo, hi)


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
    cdef floating alpha = _adam_step_size(c, iteration, w)
    if size // _MIN_CHUNK < chunks:
        chunks = <int>(size // _MIN_CHUNK) if size >= 2 * _MIN_CHUNK else 1
    if chunks <= 1:
        _update_range(c, alpha, w, g, s0, s1, s2, 0, size)
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
                _update_range(c, alpha, w, g, s0, s1, s2, _share(size, <int>piece, <int>n_pieces),
                              _share(size, <int>piece + 1, <int>n_pieces))
        fpenv_restore(state)


# --- meetings that put the wait to use: a thread that reaches a barrier before the others
# (thread 0 alone on the small layers and the loss, or the other side of an uneven split) copies
# rows of the next shuffled batch into its own buffer meanwhile, so that less of the gather is
# left for the next step. The gather of a random row waits on memory, not on arithmetic.

cdef struct Helpers:
    # One thread's view of the next batch; claimed is shared.
    const void* x           # the data, rows ``width`` wide
    const int64_t* rows     # the next batch's rows of x (NULL: nothing to copy this step)
    void* out               # the next batch's buffer
    Py_ssize_t n            # its rows
    Py_ssize_t width
    long long* claimed      # rows of it taken so far


cdef void _meet(Helpers* h, floating* like) noexcept nogil:
    """Meet the team at a barrier (``_team.h``; ``like`` only selects the precision). With h, a
    thread that arrives before the others copies whole rows of the next batch while it waits,
    taking one at a time from the shared counter, until all have arrived or no row is left. A
    row taken is copied before its taker reaches the barrier, which orders the copies before
    their readers."""
    cdef long long r
    cdef int everyone = team_arrive()
    if h != NULL and h.rows != NULL:
        while not team_all_arrived(everyone):
            r = team_take(h.claimed)
            if r >= h.n:
                break
            memcpy(<floating*>h.out + r * h.width, <const floating*>h.x + h.rows[r] * h.width,
                   h.width * sizeof(floating))
    team_wait(everyone)


cdef inline unsigned int _team_start(team_t* team) noexcept nogil:
    """Join ``team`` (zeroed before the parallel region) as one of the region's threads and
    flush denormals in this thread (the FP state is per thread); returns the state to restore."""
    team_join(team, team_size())
    return fpenv_flush_denormals()


cdef inline void _team_end(unsigned int state) noexcept nogil:
    """Leave the team joined by ``_team_start`` and restore this thread's FP state."""
    team_leave()
    fpenv_restore(state)


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
    double alpha            # Adam's step size for this step, in the parameters' precision
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
    int64_t pending[4]      # a handed-off layer's w_off, b_off, kernel and bias sizes, whose step
                            # waits for the next meeting (pending[0] -1: none)


cdef void _apply_update(const Update* u, floating* like, Py_ssize_t lo,
                        Py_ssize_t hi) noexcept nogil:
    """Apply ``u`` to the flat parameters lo:hi (``like`` only selects the precision), in
    Keras' order: the gradient of the weights' penalties added, the gradient clipped, the
    weights decayed, then the optimizer's step; a stopped team's step is void, skipped."""
    cdef Py_ssize_t i
    cdef floating* w = <floating*>u.params
    cdef floating* g = <floating*>u.grads
    cdef floating clip = <floating>u.clipvalue, decay = <floating>u.weight_decay
    cdef floating lr = <floating>u.config.learning_rate
    if team_stopped():
        return
    if u.plan != NULL and u.plan.penalized:
        _penalty_gradient(u.plan, w, g, lo, hi)
    if clip > 0:
        for i in range(lo, hi):
            g[i] = clip if g[i] > clip else (-clip if g[i] < -clip else g[i])
    if decay > 0:
        for i in range(lo, hi):
            w[i] -= w[i] * decay * lr
    _update_range(u.config, <floating>u.alpha, <floating*>u.params, <floating*>u.grads,
                  <floating*>u.slots[0], <floating*>u.slots[1], <floating*>u.slots[2], lo, hi)


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
        if p.kind[i] == _OP_DENSE:
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
        if p.kind[i] == _OP_DENSE and p.trainable[i]:
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
    if act != _LINEAR:
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
            _finish_rows(dx, parts, cut, NULL, 0, n, n, n_in, _LINEAR, t, nt)


# --- losses (mean over the batch; gradients already divided by the batch size)

cdef floating _log_sum_exp_row(const floating* z, floating* p, Py_ssize_t c,
                               floating scale) noexcept nogil:
    """Return log Σ exp(z) computed stably; OUT p = scale·softmax(z) unless p is NULL."""
    cdef Py_ssize_t j
    cdef floating m = z[0], s = 0
    for j in range(1, c):
        if z[j] > m:
            m = z[j]
    if p == NULL:
        for j in range(c):
            s += _exp(z[j] - m)
    else:
        for j in range(c):
            p[j] = _exp(z[j] - m)
            s += p[j]
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
    if kind == _LOSS_SPARSE_CE:
        return _sparse_softmax_xent(out, labels, grad, n, c, scale)
    if kind == _LOSS_CE:
        return _softmax_xent(out, y, grad, n, c, scale)
    if kind == _LOSS_BCE:
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
    cdef Py_ssize_t j
    cdef floating total = 0
    m[0] = s[_argmax_row(s, c)]
    for j in range(c):
        total += _exp(s[j] - m[0])
    return 1 / total


cdef inline floating _probability(floating v, int act, floating m, floating scale) noexcept nogil:
    """The model's output for score v: the fused activation ``act`` applied (softmax through the
    row's m and scale from ``_softmax_scale``)."""
    if act == _SIGMOID:
        return _sigmoid(v)
    if act == _SOFTMAX:
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
    if metric == _METRIC_SPARSE_ACC:
        for i in range(n):
            hits += _argmax_row(s + i * c, c) == labels[i]
    elif metric == _METRIC_CATEGORICAL_ACC:
        for i in range(n):
            hits += _argmax_row(s + i * c, c) == _argmax_row(y + i * c, c)
    elif metric == _METRIC_BINARY_ACC:
        for i in range(n):
            row = 0
            if act == _SOFTMAX:
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
    if metric <= _METRIC_BINARY_ACC and w == NULL:
        out[0], out[1] = _count_correct(metric, s, labels, y, n, c, act), n
        return
    for i in range(n):
        if w != NULL:
            weight = w[i]
        if metric <= _METRIC_BINARY_ACC:
            a += weight * _count_correct(metric, s + i * c, labels + i if labels != NULL else NULL,
                                         y + i * c if y != NULL else NULL, 1, c, act)
            b += weight
            continue
        if metric == _METRIC_SPARSE_TOP_K:
            above = 0
            for j in range(c):
                above += s[i * c + j] > s[i * c + labels[i]]
            a += weight * (above < k)
            b += weight
            continue
        if act == _SOFTMAX:
            scale = _softmax_scale(s + i * c, c, &m)
        row = positives = 0
        for j in range(c):
            p = _probability(s[i * c + j], act, m, scale)
            d = y[i * c + j] - p
            if metric == _METRIC_MAE:
                row += fabs(d)
            elif metric == _METRIC_MSE:
                row += d * d
            else:
                predicted, actual = p > 0.5, y[i * c + j] > 0.5
                row += predicted and actual
                positives += predicted if metric == _METRIC_PRECISION else actual
        if metric == _METRIC_MAE or metric == _METRIC_MSE:
            a += weight * row / c
            b += weight
        else:
            a += weight * row
            b += weight * positives
    out[0], out[1] = a, b


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
    if act in (_GELU, _SILU):
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
    if kind == _LOSS_SPARSE_CE:
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
    return _loss_entry(_LOSS_SPARSE_CE, "logits", logits, labels, None, grad)


def softmax_cross_entropy(logits, targets, grad=None):
    """Fused softmax + categorical cross-entropy, from logits, for one-hot (or soft) targets.

    Args:
        logits: float32 or float64, shape (n, classes), C-contiguous.
        targets: target distribution, same shape and dtype.
        grad: OUT dL/dlogits of the mean loss, or None.

    Returns:
        The mean loss over the batch.
    """
    return _loss_entry(_LOSS_CE, "logits", logits, None, targets, grad)


def sigmoid_binary_cross_entropy(logits, targets, grad=None):
    """Fused sigmoid + binary cross-entropy, from logits (stable: no exp overflow).

    Args:
        logits: float32 or float64, shape (n, c), C-contiguous.
        targets: 0/1 (or soft) targets, same shape and dtype.
        grad: OUT dL/dlogits of the mean loss, or None.

    Returns:
        The mean over samples of the per-sample mean over the last axis.
    """
    return _loss_entry(_LOSS_BCE, "logits", logits, None, targets, grad)


def mean_squared_error(predictions, targets, grad=None):
    """Mean squared error, with its gradient.

    Args:
        predictions: float32 or float64, shape (n, c), C-contiguous.
        targets: same shape and dtype.
        grad: OUT dL/dpredictions of the mean loss, or None.

    Returns:
        The mean over samples of the per-sample mean over the last axis.
    """
    return _loss_entry(_LOSS_MSE, "predictions", predictions, None, targets, grad)


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
        metric = _METRIC_SPARSE_ACC
    else:
        _check("targets", targets, 2, dtype, scores.shape)
        metric = _METRIC_BINARY_ACC if binary else _METRIC_CATEGORICAL_ACC
    cdef void* ps = _data(scores)
    cdef int32_t* pl = <int32_t*>_data(labels)
    cdef void* pt = _data(targets)
    cdef double hits
    cdef bint f32 = dtype == np.float32
    with nogil:
        if f32:
            hits = _count_correct(metric, <float*>ps, pl, <float*>pt, n, c, _LINEAR)
        else:
            hits = _count_correct(metric, <double*>ps, pl, <double*>pt, n, c, _LINEAR)
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
    cdef int chunks = _n_threads if size // _MIN_CHUNK >= 2 * _n_threads else 1
    cdef void* pa = _data(a)
    cdef bint f32 = a.dtype == np.float32
    with nogil:
        for k in prange(chunks, num_threads=chunks, schedule="static"):
            lo = size * k // chunks
            hi = size * (k + 1) // chunks
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
    cdef OptConfig c
    c.kind = _OPT_SGD
    c.learning_rate = _finite_scalar("learning_rate", learning_rate, 0.0)
    c.momentum = _finite_scalar("momentum", momentum, 0.0, 1.0)
    c.nesterov = nesterov
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
    cdef OptConfig c
    c.kind = _OPT_ADAGRAD
    c.learning_rate = _finite_scalar("learning_rate", learning_rate, 0.0)
    c.epsilon = _finite_scalar("epsilon", epsilon, 0.0)
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
    cdef OptConfig c
    c.kind = _OPT_RMSPROP
    c.learning_rate = _finite_scalar("learning_rate", learning_rate, 0.0)
    c.rho = _decay("rho", rho)
    c.momentum = _finite_scalar("momentum", momentum, 0.0)
    c.epsilon = _finite_scalar("epsilon", epsilon, 0.0)
    c.centered = centered
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
    cdef OptConfig c
    c.kind = _OPT_ADAM
    c.learning_rate = _finite_scalar("learning_rate", learning_rate, 0.0)
    c.beta_1 = _decay("beta_1", beta_1)
    c.beta_2 = _decay("beta_2", beta_2)
    c.epsilon = _finite_scalar("epsilon", epsilon, 0.0)
    c.amsgrad = amsgrad
    _require_slot("m", m, True)
    _require_slot("v", v, True)
    _require_slot("v_hat", v_hat, amsgrad)
    _run_update(&c, params, grads, (m, v, v_hat), ("m", "v", "v_hat"),
                _int_in("iteration", iteration, 0, 2**62))


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
        return _LINEAR
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
        if p.kind[i] == _OP_DENSE:
            _dense_forward(cur, params + p.w_off[i], params + p.b_off[i] if p.b_off[i] >= 0 else NULL,
                           out, parts, n, width, units, _op_act(p, i), i == 0, h, t, nt)
        elif p.kind[i] == _OP_ACTIVATION:
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
        if p.kind[i] == _OP_DENSE:
            inp = x if i == 0 else ws + p.out_off[i - 1]
            width_in = p.n_inputs if i == 0 else p.units[i - 1]
            dx = g_other if i > p.first_dense else NULL
            u.w_off, u.b_off, u.frozen = p.w_off[i], p.b_off[i], not p.trainable[i]
            u.hand_off = (not u.frozen and nt > 1 and i == p.n_ops - 1 and i - 1 >= p.first_dense
                          and _op_act(p, i) == _LINEAR and _cut(n, width_in, units) == 1
                          and p.kind[i - 1] == _OP_DENSE and _cut(
                              n, p.n_inputs if i == 1 else p.units[i - 2], width_in) > 1)
            _dense_backward(inp, params + p.w_off[i], out, g, grads + p.w_off[i],
                            grads + p.b_off[i] if p.b_off[i] >= 0 else NULL, dx, parts, n,
                            width_in, units, _op_act(p, i), u, h, t, nt)
            tmp = g
            g = g_other
            g_other = tmp
        elif t != 0:
            pass
        elif p.kind[i] == _OP_ACTIVATION:  # i > first_dense: its input is op i - 1's output
            _activation_backward(out, g, n, units, _op_act(p, i), ws + p.out_off[i - 1],
                                 p.rate[i])
        else:
            mask = ws + p.mask_off[i]
            for j in range(n * units):
                g[j] *= mask[j]


cdef void _slot_pointers(const OptConfig* c, floating* slots, Py_ssize_t n_params,
                         floating** s) noexcept nogil:
    """OUT s[0..2]: the rows of ``slots`` the update reads, NULL where a slot is not used.

    Rows hold only the slots Keras creates, in its order: SGD [velocity (momentum > 0)];
    Adagrad [accumulator]; RMSprop [velocity, then momentum buffer (momentum > 0), then average
    gradient (centered)]; Adam [m, v, then v_hat (amsgrad)]. s[k] is the update's k-th slot.
    """
    cdef int k, n = _slot_count(c[0])
    for k in range(3):
        s[k] = slots + k * n_params if k < n else NULL
    if c.kind == _OPT_RMSPROP and c.centered and c.momentum == 0:
        s[1] = NULL
        s[2] = slots + n_params


cdef inline int _first_blocks(const Plan* p, Py_ssize_t n) noexcept nogil:
    """Blocks the first op cuts its input into (1 unless it is a dense layer cut by rows)."""
    if p.kind[0] != _OP_DENSE:
        return 1
    return _row_blocks(n, p.n_inputs, p.units[0])


cdef int _team_threads(const Plan* p, Py_ssize_t n) noexcept nogil:
    """Threads worth starting for batches of up to n rows: as many as the most-cut layer has
    blocks, at most the thread count (1: no layer is cut)."""
    cdef Py_ssize_t width = p.n_inputs
    cdef int i, cut, most = 1
    for i in range(p.n_ops):
        if p.kind[i] == _OP_DENSE:
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
    double clipvalue        # opt's clipvalue and weight_decay (0: none), see Update
    double weight_decay
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
    _slot_pointers(c.opt, <floating*>c.slots, c.n_params, s)
    u.config, u.params, u.grads, u.pending[0], u.plan = &opt, c.params, c.grads, -1, p
    u.clipvalue, u.weight_decay = c.clipvalue, c.weight_decay
    for k in range(3):
        u.slots[k] = s[k]
    h.x, h.width = c.x, n_in
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
            _plan_metrics(p, out, lb, yb, wb, n, <int>p.act[p.n_ops - 1] if p.fused else _LINEAR,
                          c.metric_out + b * 2 * p.n_metrics)
            if not isfinite(total) or _stopping():  # a stopped team skipped this step's work
                c.done = b
        _meet(&h, xbuf)
        if c.done == b:
            return
        if t == 0:  # every thread has read this buffer's count; batch b + 3 starts it anew
            team_store(&c.claimed[cur], 0)
        opt.learning_rate = _learning_rate_at(c.schedule, c.opt.learning_rate, iteration)
        u.alpha = _adam_step_size(&opt, iteration, <floating*>c.params)
        _backward(p, <floating*>c.params, <floating*>c.grads, <floating*>c.ws, <floating*>c.g0,
                  <floating*>c.g1, <floating*>c.parts, xb, n, &u, &h, t, nt)
        iteration += 1


cdef void _infer(const Plan* p, const floating* params, floating* ws, floating* parts,
                 const floating* x, const floating* y, const int32_t* labels, const floating* w,
                 floating* pred, Py_ssize_t n_samples, double* loss_sum, double* sums, int t,
                 int nt) noexcept nogil:
    """Forward pass over all samples in workspace-sized batches, in inference mode.

    OUT pred (n_samples x n_out) gets the model's outputs (the fused activation applied), unless
    NULL; with targets (y or labels), OUT loss_sum and sums[0:2·n_metrics] accumulate the loss
    and the metrics' sums, weighted by the per-sample weights w unless NULL. Team call (thread t
    of nt); thread 0 writes the outputs.
    """
    cdef Py_ssize_t start, n, n_out = p.units[p.n_ops - 1], n_in = p.n_inputs
    cdef double batch[2 * _MAX_METRICS]
    cdef int m
    cdef floating* out
    cdef uint64_t unused = 0
    cdef int last_act = <int>p.act[p.n_ops - 1] if p.fused else _LINEAR
    start = 0
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
        team_barrier()  # the next batch overwrites the workspace
        start += n


_SPARSE_METRICS = (_METRIC_SPARSE_ACC, _METRIC_SPARSE_TOP_K)


def _metric_specs(metric, loss, n_outputs):
    """Check Network's ``metric`` argument; return int64 arrays of codes, ks and weighted
    flags."""
    if isinstance(metric, (int, np.integer)):
        if metric not in (_METRIC_NONE, _METRIC_SPARSE_ACC, _METRIC_CATEGORICAL_ACC,
                          _METRIC_BINARY_ACC):
            raise ValueError(f"unknown metric code {metric}")
        specs = [] if metric == _METRIC_NONE else [(metric, 0, False)]
    else:
        specs = [tuple(spec) for spec in metric]
        if len(specs) > _MAX_METRICS or any(len(spec) not in (2, 3) for spec in specs):
            raise ValueError(f"metric must be a list of at most {_MAX_METRICS} (code, k) or "
                             "(code, k, weighted) tuples")
        specs = [spec if len(spec) == 3 else spec + (False,) for spec in specs]
    for code, k, _ in specs:
        if code not in range(_METRIC_SPARSE_ACC, _METRIC_RECALL + 1):
            raise ValueError(f"unknown metric code {code}")
        if (code in _SPARSE_METRICS) != (loss == _LOSS_SPARSE_CE) \
                and not (code == _METRIC_BINARY_ACC and n_outputs == 1):
            raise ValueError("metric and loss must both read integer labels (sparse) or both "
                             "read target arrays (binary accuracy reads labels for one output)")
        if code == _METRIC_SPARSE_TOP_K:
            _int_in("k", k, 1, _INT_MAX)
    return (np.array([spec[0] for spec in specs], np.int64),
            np.array([spec[1] for spec in specs], np.int64),
            np.array([bool(spec[2]) for spec in specs], np.int64))


cdef class Network:
    """A sequential network laid out for the kernels: plan, flat buffers, workspace.

    The model API builds one from its layers. The parameters live in one flat buffer owned by the
    caller (layers hold views into it); the network owns the flat gradient buffer and one
    workspace sized for ``capacity`` rows, so training allocates nothing per batch.

    Args:
        n_inputs: features per sample.
        ops: list of ``(kind, units, activation, rate, w_offset, b_offset)`` tuples, kind one of
            OP_DENSE, OP_ACTIVATION, OP_DROPOUT (offsets -1 where there are none). The dense
            ops' kernels and biases cover params exactly, each parameter once: every layer
            applies the optimizer step to its own weights.
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
            weights (no optimizer step); backpropagation stops at the lowest trainable one.
        penalties: one entry per op, or None: a dense op's ``(kernel l1, kernel l2, bias l1,
            bias l2)`` (>= 0) or None; a trainable op's ``l1·Σ|w| + l2·Σw²`` joins the loss
            (per sample) and its gradient the update, as Keras' regularizers.
    """
    cdef Plan plan
    cdef readonly object dtype
    cdef readonly object params
    cdef readonly object grads
    cdef object _arrays       # int/float plan arrays the Plan points into
    cdef object _ws
    cdef object _scratch      # g0, g1, parts, xbuf, ybuf, lbuf, wbuf
    cdef object _trainable    # int64 per op, the Plan points into it
    cdef object _penalties    # float64 (n_ops, 4), the Plan points into it
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
                 trainable=None, penalties=None):
        if self._ready:
            raise RuntimeError("this Network is already initialised: create a new one (its "
                               "buffers belong to its plan)")
        self.dtype = _check("params", params, 1, None, None, True)
        n_inputs = _int_in("n_inputs", n_inputs, 1, _INT_MAX)
        capacity = _int_in("capacity", capacity, 1, _INT_MAX)
        if not ops:
            raise ValueError("ops must not be empty")
        if loss not in (_LOSS_SPARSE_CE, _LOSS_CE, _LOSS_BCE, _LOSS_MSE):
            raise ValueError(f"unknown loss code {loss}")
        kind, units, act, rate, w_off, b_off = (np.array(col) for col in zip(*ops))
        kind, units, act, w_off, b_off = (a.astype(np.int64) for a in (kind, units, act, w_off, b_off))
        rate = rate.astype(np.float64)
        width_in = np.concatenate([[n_inputs], units[:-1]])
        if np.any(units < 1) or np.any((kind != _OP_DENSE) & (units != width_in)):
            raise ValueError("ops have inconsistent widths")
        codes, ks, weighted = _metric_specs(metric, loss, int(units[-1]))
        if np.any((kind < 0) | (kind > 2)) or np.any((act < 0) | (act > _EXPONENTIAL)):
            raise ValueError("ops have an unknown kind or activation")
        if np.any((kind == _OP_DROPOUT) & ~((rate >= 0) & (rate <= 1))):
            raise ValueError("dropout rates must lie in [0, 1]")
        if np.any((kind == _OP_ACTIVATION) & ~((rate >= 0) & np.isfinite(rate))):
            raise ValueError("an activation op's parameter (leaky_relu's slope) must be finite "
                             "and >= 0")
        if np.any((kind == _OP_DENSE) & np.isin(act, list(UNFUSED_ACTIVATIONS))):
            raise ValueError("a dense op cannot apply gelu, silu or leaky_relu: follow it with "
                             "an activation op")
        dense = kind == _OP_DENSE
        if not dense.any():
            raise ValueError("ops need at least one dense layer")
        w_end = w_off + width_in * units
        b_end = b_off + units
        if np.any(dense & ((w_off < 0) | (w_end > params.shape[0]))) or np.any(
                dense & (b_off >= 0) & (b_end > params.shape[0])):
            raise ValueError("ops address weights outside params")
        has_bias = dense & (b_off >= 0)
        spans = sorted(zip(np.concatenate([w_off[dense], b_off[has_bias]]).tolist(),
                           np.concatenate([w_end[dense], b_end[has_bias]]).tolist()))
        starts, ends = [s for s, _ in spans], [e for _, e in spans]
        if starts != [0] + ends[:-1] or ends[-1] != params.shape[0]:
            # each layer applies the optimizer step to its own weights (see _backward)
            raise ValueError("the dense ops' kernels and biases must cover params exactly, "
                             "each parameter once")
        if fused and not ((loss in (_LOSS_SPARSE_CE, _LOSS_CE) and act[-1] == _SOFTMAX or
                           loss == _LOSS_BCE and act[-1] == _SIGMOID) and kind[-1] != _OP_DROPOUT):
            raise ValueError("fused needs a cross-entropy loss and a final softmax (or, for "
                             "binary cross-entropy, sigmoid)")
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
        stepped = dense & (self._trainable != 0)
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
            if kind[i] == _OP_DROPOUT:
                new_mask[i] = offset
                offset += capacity * units[i]
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
        if self.plan.loss == _LOSS_SPARSE_CE:
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
            opt: dict of optimizer settings (kind, learning_rate, momentum, rho, beta_1, beta_2,
                epsilon, nesterov, centered, amsgrad; schedule: None or a learning-rate
                schedule's ``kernel_spec()``, evaluated at every step instead of
                learning_rate; clipvalue and weight_decay, 0 for none).
            slots: IN/OUT optimizer slots, (n_slots, n_params) of the network's dtype: the slots
                Keras creates for these settings, in Keras' order (see ``_slot_pointers``).
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
        cdef OptConfig c = _opt_config(opt)
        cdef Schedule schedule = _schedule_config(opt.get("schedule"))
        needed = _slot_count(c)
        if slots.shape[0] != needed:
            raise ValueError(f"slots must have {needed} rows for this optimizer, got {slots.shape[0]}")
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
        call.plan, call.opt, call.schedule = &self.plan, &c, &schedule
        call.clipvalue = _finite_scalar("clipvalue", opt.get("clipvalue", 0.0), 0.0)
        call.weight_decay = _finite_scalar("weight_decay", opt.get("weight_decay", 0.0), 0.0)
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
                threads, call.count = sizer.next_run(count - done)
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
                if call.done < call.count:
                    break
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
        cdef bint f32 = self.dtype == np.float32
        cdef bint poll = threading.current_thread() is threading.main_thread()
        sizer = self._sizer("infer", _team_threads(&self.plan, capacity), capacity)
        while start < n:  # in stretches of whole batches as in ``train``, within _CALL_FLOPS
            rows = min(step, n - start)
            threads, batches = sizer.next_run((rows + capacity - 1) // capacity)
            rows = min(rows, batches * capacity)
            team = team_t(0, 0, 0)
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
                           rows, &loss_sum, psums, team_index(), team_size())
                else:
                    _infer(&self.plan, <double*>pp, <double*>pws, <double*>pparts,
                           <double*>(px + start * x_row),
                           <double*>(py + start * n_out * item) if py != NULL else NULL,
                           pl + start if pl != NULL else NULL,
                           <double*>(pw + start * item) if pw != NULL else NULL,
                           <double*>(pout + start * n_out * item) if pout != NULL else NULL,
                           rows, &loss_sum, psums, team_index(), team_size())
                _team_end(state)
            self._busy -= 1
            if team.stop:  # a signal's exception (Ctrl-C): the outputs are incomplete
                raise _take_signal_exception()
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
        row_flops += 2.0 * width * p.units[i] if p.kind[i] == _OP_DENSE else p.units[i]
        width = p.units[i]
    rows = max(1, <Py_ssize_t>(_CALL_FLOPS / row_flops))
    return rows - rows % p.capacity if rows >= p.capacity else rows


_OPT_KINDS = {"sgd": _OPT_SGD, "adagrad": _OPT_ADAGRAD, "rmsprop": _OPT_RMSPROP, "adam": _OPT_ADAM}
# schedule kind: (code, number of parameters, indices of the parameters that must be > 0)
_SCHEDULES = {"exponential": (_EXPONENTIAL_DECAY, 4, (1,)), "inverse_time": (_INVERSE_TIME_DECAY, 4, (1,)),
              "polynomial": (_POLYNOMIAL_DECAY, 5, (1,)), "cosine": (_COSINE_DECAY, 6, (1,))}


cdef Schedule _schedule_config(object schedule) except *:
    """Read and check ``opt['schedule']`` (``fastdnn.schedules``' ``kernel_spec()``)."""
    cdef Schedule c
    cdef int k
    c.kind, c.n_pieces = _CONSTANT_RATE, 0
    if schedule is None:
        return c
    if not isinstance(schedule, dict):
        raise TypeError(f"opt['schedule'] must be a dict or None, got {type(schedule).__name__}")
    kind = schedule.get("kind")
    if kind == "piecewise":
        bounds = [_finite_scalar("schedule boundary", b) for b in schedule.get("boundaries", ())]
        values = [_finite_scalar("schedule value", v) for v in schedule.get("values", ())]
        if len(values) != len(bounds) + 1 or len(bounds) > _MAX_PIECES:
            raise ValueError(f"a piecewise schedule needs at most {_MAX_PIECES} boundaries and "
                             "one value more than boundaries")
        c.kind, c.n_pieces = _PIECEWISE_CONSTANT, len(bounds)
        for k in range(len(bounds)):
            c.bounds[k] = bounds[k]
        for k in range(len(values)):
            c.values[k] = values[k]
        return c
    if kind not in _SCHEDULES:
        raise ValueError(f"unknown schedule kind {kind!r}")
    code, count, positive = _SCHEDULES[kind]
    params = list(schedule.get("params", ()))
    if len(params) != count:
        raise ValueError(f"a {kind} schedule has {count} parameters, got {len(params)}")
    for k in range(count):
        c.decay[k] = _finite_scalar("schedule parameter", params[k])
        if k in positive and not c.decay[k] > 0:
            raise ValueError(f"the {kind} schedule's decay_steps must be > 0")
    c.kind = code
    return c


def learning_rate_at(opt, iteration):
    """The learning rate the training loop uses for the step after ``iteration`` steps with
    the optimizer settings ``opt`` (see ``Network.train``): its schedule's value, or its
    constant learning rate."""
    cdef OptConfig c = _opt_config(opt)
    cdef Schedule schedule = _schedule_config(opt.get("schedule"))
    return _learning_rate_at(&schedule, c.learning_rate, _int_in("iteration", iteration, 0, 2**62))


cdef OptConfig _opt_config(dict opt) except *:
    """Read and check a settings dict into an OptConfig."""
    cdef OptConfig c
    if opt.get("kind") not in _OPT_KINDS:
        raise ValueError(f"opt['kind'] must be one of {sorted(_OPT_KINDS)}, got {opt.get('kind')!r}")
    c.kind = _OPT_KINDS[opt["kind"]]
    c.learning_rate = _finite_scalar("learning_rate", opt.get("learning_rate", 0.001), 0.0)
    c.momentum = _finite_scalar("momentum", opt.get("momentum", 0.0), 0.0)
    c.rho = _decay("rho", opt.get("rho", 0.9))
    c.beta_1 = _decay("beta_1", opt.get("beta_1", 0.9))
    c.beta_2 = _decay("beta_2", opt.get("beta_2", 0.999))
    c.epsilon = _finite_scalar("epsilon", opt.get("epsilon", 1e-7), 0.0)
    c.nesterov = bool(opt.get("nesterov", False))
    c.centered = bool(opt.get("centered", False))
    c.amsgrad = bool(opt.get("amsgrad", False))
    return c


cdef int _slot_count(OptConfig c) noexcept nogil:
    """Slots the optimizer reads: SGD 0 or 1, Adagrad 1, RMSprop 1-3, Adam 2-3 (see the updates)."""
    if c.kind == _OPT_SGD:
        return 1 if c.momentum > 0 else 0
    if c.kind == _OPT_ADAGRAD:
        return 1
    if c.kind == _OPT_RMSPROP:
        return 1 + (c.momentum > 0) + c.centered
    return 3 if c.amsgrad else 2
