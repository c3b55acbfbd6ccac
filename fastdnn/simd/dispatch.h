/* The kernels that use vector instructions, compiled in variants for the CPUs that have them, in
 * this one translation unit, and chosen once at import: the module itself is built for any CPU
 * of its architecture (no -m flags), so it runs wherever NumPy does.
 *
 * Variants (each a row of simd_variants): "baseline" (the architecture's minimum: SSE2 on
 * x86-64), and on x86-64 with GCC "avx2" (AVX2 + FMA) and "avx512" (AVX-512F, the compiler's own
 * loops kept 256 bits wide, as measured). Each variant's code comes from the same bodies
 * (update.h, scan.h, sparse.h, adam.h), included once per variant under `#pragma GCC target` with
 * SIMD(name) appending the variant's name to every function they define, as NumPy's
 * NPY_CPU_DISPATCH and SimSIMD do. */
#ifndef FASTDNN_SIMD_DISPATCH_H
#define FASTDNN_SIMD_DISPATCH_H

#include <math.h>
#include <stddef.h>
#include <string.h>

/* An optimizer's settings (fastdnn._kernels.OptimizerConfig fills it, once). */
enum { OPT_SGD = 0, OPT_ADAGRAD = 1, OPT_RMSPROP = 2, OPT_ADAM = 3, OPT_NADAM = 4,
       OPT_ADAMAX = 5 };
typedef struct {
    int kind;  /* OPT_* */
    double learning_rate, momentum, rho, beta_1, beta_2, epsilon;
    int nesterov, centered, amsgrad;
} OptConfig;

/* The scalars of one step that depend on the step number (the kernels' _step_terms), in the
 * parameter precision: Adam's step size; Adamax's 1 - beta_1^t; Nadam's u_{t+1}, 1 - u_t,
 * 1 - (u_1...u_t), 1 - (u_1...u_{t+1}), 1 - beta_2^t. */
enum { STEP_TERMS = 5 };

/* Running sums of scan.h's sum_squares (a power of 2). */
enum { SUM_LANES = 8 };

/* Rows of the kernel a sparse product takes at a time (its nonzeros fit a 64-bit word). */
enum { SPARSE_DEPTH = 64 };

#define SIMD_CAT_(a, b) a##_##b
#define SIMD_CAT(a, b) SIMD_CAT_(a, b)
#define SIMD(name) SIMD_CAT(name, SIMD_VARIANT)

/* One variant's functions: the updates in both precisions, and with SIMD_LANES the sparse
 * products and the reciprocal Adam. */
#define SIMD_BODY "variant.h"

#define SIMD_VARIANT baseline
#define SIMD_LANES 0
#include SIMD_BODY
#undef SIMD_VARIANT
#undef SIMD_LANES

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIMD_X86 1
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SIMD_VARIANT avx2
#define SIMD_LANES 8
#include SIMD_BODY
#undef SIMD_VARIANT
#undef SIMD_LANES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,prefer-vector-width=256")
#define SIMD_VARIANT avx512
#define SIMD_LANES 16
#include SIMD_BODY
#undef SIMD_VARIANT
#undef SIMD_LANES
#pragma GCC pop_options
#else
#define SIMD_X86 0
#endif

/* A variant's entry points (the sparse products NULL where it has none: BLAS takes them). */
typedef struct {
    const char* name;
    void (*update_f32)(const OptConfig* c, const double* terms, float* w, const float* g,
                       float* s0, float* s1, float* s2, ptrdiff_t lo, ptrdiff_t hi);
    void (*update_f64)(const OptConfig* c, const double* terms, double* w, const double* g,
                       double* s0, double* s1, double* s2, ptrdiff_t lo, ptrdiff_t hi);
    int (*sparse_nonzeros_below)(const float* x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t lo,
                                 ptrdiff_t hi, double limit);
    void (*sparse_product_f32)(const float* x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t lo,
                               ptrdiff_t hi, const float* w, ptrdiff_t width, float* out);
    void (*sparse_weight_gradient_f32)(const float* x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t lo,
                                       ptrdiff_t hi, const float* g, ptrdiff_t width, float* dw);
    ptrdiff_t (*count_nonfinite_f32)(const float* a, ptrdiff_t size);
    ptrdiff_t (*count_nonfinite_f64)(const double* a, ptrdiff_t size);
    double (*sum_squares_f32)(const float* a, ptrdiff_t size);
    double (*sum_squares_f64)(const double* a, ptrdiff_t size);
} simd_kernels;

#define SIMD_UPDATES(v) update_f32_##v, update_f64_##v
#define SIMD_SPARSE(v) sparse_nonzeros_below_##v, sparse_product_f32_##v, \
    sparse_weight_gradient_f32_##v
#define SIMD_SCANS(v) count_nonfinite_f32_##v, count_nonfinite_f64_##v, sum_squares_f32_##v, \
    sum_squares_f64_##v

/* Slowest first: the default is the last one the CPU supports. */
static const simd_kernels simd_variants[] = {
    {"baseline", SIMD_UPDATES(baseline), NULL, NULL, NULL, SIMD_SCANS(baseline)},
#if SIMD_X86
    {"avx2", SIMD_UPDATES(avx2), SIMD_SPARSE(avx2), SIMD_SCANS(avx2)},
    {"avx512", SIMD_UPDATES(avx512), SIMD_SPARSE(avx512), SIMD_SCANS(avx512)},
#endif
};
enum { SIMD_VARIANTS = sizeof(simd_variants) / sizeof(simd_variants[0]) };

/* The variant in use (simd_use sets it once, at import). */
static const simd_kernels* simd = &simd_variants[0];

/* Whether this CPU (and its OS, which must save the wider registers) runs variant i. */
static int simd_supported(int i) {
#if SIMD_X86
    __builtin_cpu_init();
    if (i >= 1 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")))
        return 0;
    if (i >= 2 && !__builtin_cpu_supports("avx512f"))
        return 0;
#endif
    return i >= 0 && i < SIMD_VARIANTS;
}

/* Use the variant called `name`, or with an empty name the fastest this CPU supports. Returns 0,
 * or -1 if no variant has that name, -2 if this CPU lacks what it needs. */
static int simd_use(const char* name) {
    int i;
    if (name[0] == '\0') {
        for (i = SIMD_VARIANTS - 1; !simd_supported(i); i--)
            ;
        simd = &simd_variants[i];
        return 0;
    }
    for (i = 0; i < SIMD_VARIANTS; i++)
        if (strcmp(name, simd_variants[i].name) == 0) {
            if (!simd_supported(i))
                return -2;
            simd = &simd_variants[i];
            return 0;
        }
    return -1;
}

#endif
