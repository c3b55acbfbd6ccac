/* Adam's float32 step with the division done by a reciprocal estimate and one Newton step.
 *
 * The plain loop waits on the divider, which the square root and the division share. The refined
 * reciprocal is within 1.5 ulp of 1/d, so each step is within a few ulp of the exact quotient.
 *
 * Every element goes through the same instructions, eight at a time and then one at a time, so a
 * weight's result does not depend on where the range it is updated in starts or ends (the threads
 * split the buffer differently). It needs eps > 0, so that d = sqrt(v) + eps is never 0 (the
 * kernels take the exact loop for eps = 0).
 *
 * A body compiled in the AVX2 and the AVX-512 variants (simd/dispatch.h), both with these 8-lane
 * instructions, so that their results are the same; the baseline variant keeps the exact loop. */
#include <float.h>
#include <stddef.h>

/* 1/d for d > 0: the estimate r0 = rcp(d) refined to r0 + r0(1 - d r0). An infinite d (v has
 * overflowed) is first clamped to FLT_MAX, whose estimate is 0 (tiny estimates are flushed), so
 * that the step is 0 as with the exact quotient, not the NaN of inf·0 in the Newton step. */
static inline __m256 SIMD(adam_reciprocal8)(__m256 d) {
    d = _mm256_min_ps(_mm256_set1_ps(FLT_MAX), d);  /* a NaN d stays NaN */
    __m256 r0 = _mm256_rcp_ps(d);
    return _mm256_fmadd_ps(r0, _mm256_fnmadd_ps(d, r0, _mm256_set1_ps(1.0f)), r0);
}

static inline __m128 SIMD(adam_reciprocal1)(__m128 d) {
    d = _mm_min_ss(_mm_set_ss(FLT_MAX), d);
    __m128 r0 = _mm_rcp_ss(d);
    return _mm_fmadd_ss(r0, _mm_fnmadd_ss(d, r0, _mm_set_ss(1.0f)), r0);
}

/* IN/OUT w[lo:hi], m[lo:hi], v[lo:hi]: m += (g - m)(1 - b1); v += (g² - v)(1 - b2);
 * w -= (m alpha) / (sqrt(v) + eps), for eps > 0. */
static void SIMD(adam_f32)(float* w, const float* g, float* m, float* v, ptrdiff_t lo,
                           ptrdiff_t hi, float alpha, float one_minus_b1, float one_minus_b2,
                           float eps) {
    ptrdiff_t i = lo;
    const __m256 b1 = _mm256_set1_ps(one_minus_b1), b2 = _mm256_set1_ps(one_minus_b2);
    const __m256 a = _mm256_set1_ps(alpha), e = _mm256_set1_ps(eps);
    for (; i + 8 <= hi; i += 8) {
        __m256 gi = _mm256_loadu_ps(g + i), mi = _mm256_loadu_ps(m + i);
        __m256 vi = _mm256_loadu_ps(v + i), wi = _mm256_loadu_ps(w + i);
        mi = _mm256_fmadd_ps(_mm256_sub_ps(gi, mi), b1, mi);
        vi = _mm256_fmadd_ps(_mm256_fmsub_ps(gi, gi, vi), b2, vi);
        __m256 r = SIMD(adam_reciprocal8)(_mm256_add_ps(_mm256_sqrt_ps(vi), e));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(w + i, _mm256_fnmadd_ps(_mm256_mul_ps(mi, a), r, wi));
    }
    for (; i < hi; i++) {
        __m128 gi = _mm_set_ss(g[i]), mi = _mm_set_ss(m[i]), vi = _mm_set_ss(v[i]);
        mi = _mm_fmadd_ss(_mm_sub_ss(gi, mi), _mm_set_ss(one_minus_b1), mi);
        vi = _mm_fmadd_ss(_mm_fmsub_ss(gi, gi, vi), _mm_set_ss(one_minus_b2), vi);
        __m128 r = SIMD(adam_reciprocal1)(_mm_add_ss(_mm_sqrt_ss(vi), _mm_set_ss(eps)));
        m[i] = _mm_cvtss_f32(mi);
        v[i] = _mm_cvtss_f32(vi);
        w[i] = _mm_cvtss_f32(_mm_fnmadd_ss(_mm_mul_ss(mi, _mm_set_ss(alpha)), r, _mm_set_ss(w[i])));
    }
}
