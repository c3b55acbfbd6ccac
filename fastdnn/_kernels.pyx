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

The module is one compilation unit (so the per-element helpers inline everywhere) assembled from
rooms, one concern each, included at the end of this file from ``kernels/``: scalar helpers,
BLAS access and blocking, element-wise ops, optimizer updates, the thread team's meetings, the
dense layer, (batch) normalization, losses and metric sums, argument checks, the public kernels,
the training driver and ``Network``. The SIMD variants are C in ``simd/``, the team's barrier in ``_team.h``.

Denormals are flushed to zero while a kernel runs (``_fpenv.h``), and the caller's floating-point
state is restored afterwards. Reductions (loss means, bias gradients) run in a fixed order, so
results do not depend on the number of threads.
"""

import os
import threading
import time

import numpy as np

from fastdnn._team_size import TeamSizer, idle_cpus

cimport cython
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, exp, expf, fabs, isfinite, log, log1p, log1pf, logf, pow, powf, sqrt, sqrtf, tanh, tanhf
from libc.math cimport M_2_SQRTPI, M_PI, M_SQRT1_2, ceil, cos, erf, erff, expm1, expm1f, floor, frexp
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
        _OPT_NADAM "OPT_NADAM"
        _OPT_ADAMAX "OPT_ADAMAX"
        STEP_TERMS
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
        void (*update_f32)(const OptConfig* c, const double* terms, float* w, const float* g,
                           float* s0, float* s1, float* s2, Py_ssize_t lo,
                           Py_ssize_t hi) noexcept nogil
        void (*update_f64)(const OptConfig* c, const double* terms, double* w, const double* g,
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
        double (*sum_squares_f32)(const float* a, Py_ssize_t size) noexcept nogil
        double (*sum_squares_f64)(const double* a, Py_ssize_t size) noexcept nogil
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
    long long team_clock_ns()
    team_member_t team_step_out()
    void team_step_in(team_member_t me)
    void team_poll_signals()
    bint team_poll_due()
    void team_request_stop()
    bint team_stopped()


# --- constants shared with the Python layer

cpdef enum Activation:
    LINEAR = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3
    SOFTMAX = 4
    ELU = 5
    SELU = 6
    GELU = 7
    SILU = 8
    SOFTPLUS = 9
    SOFTSIGN = 10
    LEAKY_RELU = 11
    RELU6 = 12
    HARD_SIGMOID = 13
    EXPONENTIAL = 14
globals().update(Activation.__members__)
ACTIVATIONS = {name.lower(): code for name, code in Activation.__members__.items()}
# Activations a dense layer cannot fuse: their derivative needs the input z (gelu, silu) or a
# parameter (leaky_relu's negative slope, the op's ``rate``), so they run as an activation op.
UNFUSED_ACTIVATIONS = frozenset({GELU, SILU, LEAKY_RELU})

cpdef enum Op:
    OP_DENSE = 0
    OP_ACTIVATION = 1
    OP_DROPOUT = 2
    OP_BATCH_NORMALIZATION = 3
    OP_NORMALIZATION = 4
globals().update(Op.__members__)

cpdef enum Loss:
    LOSS_SPARSE_CE = 0
    LOSS_CE = 1
    LOSS_BCE = 2
    LOSS_MSE = 3
globals().update(Loss.__members__)

cpdef enum Metric:
    METRIC_NONE = 0
    METRIC_SPARSE_ACC = 1
    METRIC_CATEGORICAL_ACC = 2
    METRIC_BINARY_ACC = 3
    METRIC_MAE = 4
    METRIC_MSE = 5
    METRIC_SPARSE_TOP_K = 6
    METRIC_PRECISION = 7
    METRIC_RECALL = 8
globals().update(Metric.__members__)

cdef enum:
    _MAX_METRICS = 16
MAX_METRICS = _MAX_METRICS

# Below this many elements per thread, an OpenMP fork costs more than it saves.
cdef Py_ssize_t _MIN_CHUNK = 1 << 15
cdef Py_ssize_t _SCAN_PIECES = 64  # most pieces a whole-array scan is cut into
cdef uintptr_t _LINE = 64  # bytes in a cache line
cdef int _n_threads = 1


cdef bint _busy_cpus(int threads):
    """Whether the system has fewer idle CPUs than a team of ``threads`` (the calling one
    running) would need (False where that is not known)."""
    idle = idle_cpus()
    return idle is not None and idle < threads - 1


def set_num_threads(int n):
    """The kernels' side of ``fastdnn.config.set_num_threads`` (the checked public entry point).

    Args:
        n: number of threads, at least 1. Keep BLAS itself to one thread meanwhile
            (``fastdnn.models`` does): both pools on the same cores slow each other down.
    """
    global _n_threads
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
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


# --- the rooms, one concern each (docs/design.md)

include "kernels/scalar.pxi"
include "kernels/blas.pxi"
include "kernels/elementwise.pxi"
include "kernels/updates.pxi"
include "kernels/team.pxi"
include "kernels/dense.pxi"
include "kernels/normalization.pxi"
include "kernels/losses.pxi"
include "kernels/checks.pxi"
include "kernels/optimizer_config.pxi"
include "kernels/entry_points.pxi"
include "kernels/driver.pxi"
include "kernels/network.pxi"
