/* A dense layer's two products with its input, skipping the input's zeros: for float32 layers
 * whose inputs are mostly zeros (Fashion-MNIST's images are half background, ReLU outputs about
 * half zeros); the kernels call them where a block's density makes them faster than BLAS.
 *
 * Each output row is kept in registers (up to 12 vectors and a partial one: 100 floats) while
 * the row's nonzero inputs, found by compares into one 64-bit word, are taken one by one, each
 * a broadcast and one multiply-add per vector. The kernel's rows are taken SPARSE_DEPTH (at most
 * 64, the word's bits) at a time, so that the rows in use stay in the L1 cache. Every output
 * element is the sum of its terms in the order of k, however the work is tiled, so the results
 * depend on the data only, with 8 lanes or 16 alike.
 *
 * Skipping x = 0 skips its terms: a weight that is inf or NaN there adds 0, not the NaN of
 * 0 * inf (as in sparse matrix products).
 *
 * A body compiled once per vector width (simd/dispatch.h: SIMD_LANES 8 under AVX2 and FMA, 16 under
 * AVX-512F, each function's name suffixed by SIMD()); the baseline variant has none, and the
 * kernels call BLAS there. */
#include <stddef.h>
#include <stdint.h>

/* What every width shares: defined once. */
#ifndef FASTDNN_SPARSE_SHARED
#define FASTDNN_SPARSE_SHARED
#define SPARSE_INLINE static inline __attribute__((always_inline))
enum { SPARSE_VECTORS = 12, SPARSE_ROWS = 32 };  /* SPARSE_DEPTH: simd/dispatch.h */
/* The widest tile's row, rounded up to whole vectors: the row stride of the packed copies. */
#define SPARSE_PACKED (SPARSE_LANES * (SPARSE_VECTORS + 1))
#define SPARSE_ALIGN 64
#define SPARSE_CASES(CALL) \
    CALL(0) CALL(1) CALL(2) CALL(3) CALL(4) CALL(5) CALL(6) \
    CALL(7) CALL(8) CALL(9) CALL(10) CALL(11) CALL(12)
#endif

/* One vector of SPARSE_LANES floats, and its operations: 16 lanes where the build has AVX-512,
 * else 8 (AVX2). A partial vector's lanes are a `sparse_mask` (sparse_lanes). SPARSE_PACK: the
 * rows of w and g are read from aligned copies (sparse_rows); with 8 lanes the copies cost more
 * than they save. */
#if SIMD_LANES == 16
#define SPARSE_MM(op) _mm512_##op  /* the operations named alike in both, but for the prefix */
#define sparse_vec __m512
#else
#define SPARSE_MM(op) _mm256_##op
#define sparse_vec __m256
#endif
SPARSE_INLINE sparse_vec SIMD(sparse_zero)(void) { return SPARSE_MM(setzero_ps)(); }
SPARSE_INLINE sparse_vec SIMD(sparse_load)(const float* p) { return SPARSE_MM(loadu_ps)(p); }
SPARSE_INLINE void SIMD(sparse_store)(float* p, sparse_vec v) { SPARSE_MM(storeu_ps)(p, v); }
SPARSE_INLINE sparse_vec SIMD(sparse_broadcast)(const float* p) { return SPARSE_MM(set1_ps)(*p); }
SPARSE_INLINE sparse_vec SIMD(sparse_fma)(sparse_vec a, sparse_vec b, sparse_vec c) {
    return SPARSE_MM(fmadd_ps)(a, b, c);
}

#if SIMD_LANES == 16
#define SPARSE_LANES 16
#define SPARSE_PACK 1
#define sparse_mask __mmask16
#define sparse_bits __m512i
SPARSE_INLINE sparse_mask SIMD(sparse_lanes)(ptrdiff_t count) {
    return (sparse_mask)((1u << count) - 1);
}
SPARSE_INLINE sparse_vec SIMD(sparse_load_part)(const float* p, sparse_mask m) {
    return _mm512_maskz_loadu_ps(m, p);
}
SPARSE_INLINE void SIMD(sparse_store_part)(float* p, sparse_mask m, sparse_vec v) {
    _mm512_mask_storeu_ps(p, m, v);
}
/* The lanes of v that are not 0 as bits (NaN is not 0). */
SPARSE_INLINE unsigned SIMD(sparse_nonzero_lanes)(sparse_vec v) {
    return _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
}
/* bits | `bit` in the lanes where x[0:16] is not 0. */
SPARSE_INLINE sparse_bits SIMD(sparse_mark)(sparse_bits bits, const float* x, uint32_t bit) {
    return _mm512_mask_or_epi32(bits, _mm512_cmp_ps_mask(SIMD(sparse_load)(x), _mm512_setzero_ps(),
                                                         _CMP_NEQ_UQ),
                                bits, _mm512_set1_epi32((int)bit));
}
SPARSE_INLINE sparse_bits SIMD(sparse_no_bits)(void) { return _mm512_setzero_si512(); }
SPARSE_INLINE void SIMD(sparse_store_bits)(uint32_t* p, sparse_bits b) {
    _mm512_storeu_si512(p, b);
}
#else
#define SPARSE_LANES 8
#define SPARSE_PACK 0
#define sparse_mask __m256i
#define sparse_bits __m256i
SPARSE_INLINE sparse_mask SIMD(sparse_lanes)(ptrdiff_t count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
SPARSE_INLINE sparse_vec SIMD(sparse_load_part)(const float* p, sparse_mask m) {
    return _mm256_maskload_ps(p, m);
}
SPARSE_INLINE void SIMD(sparse_store_part)(float* p, sparse_mask m, sparse_vec v) {
    _mm256_maskstore_ps(p, m, v);
}
/* The lanes of v that are not 0 as bits (NaN is not 0). */
SPARSE_INLINE unsigned SIMD(sparse_nonzero_lanes)(sparse_vec v) {
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
}
/* bits | `bit` in the lanes where x[0:8] is not 0. */
SPARSE_INLINE sparse_bits SIMD(sparse_mark)(sparse_bits bits, const float* x, uint32_t bit) {
    __m256 nonzero = _mm256_cmp_ps(SIMD(sparse_load)(x), _mm256_setzero_ps(), _CMP_NEQ_UQ);
    return _mm256_or_si256(bits, _mm256_and_si256(_mm256_castps_si256(nonzero),
                                                  _mm256_set1_epi32((int)bit)));
}
SPARSE_INLINE sparse_bits SIMD(sparse_no_bits)(void) { return _mm256_setzero_si256(); }
SPARSE_INLINE void SIMD(sparse_store_bits)(uint32_t* p, sparse_bits b) {
    _mm256_storeu_si256((__m256i*)p, b);
}
#endif

/* The nonzeros among x[0:min(count, SPARSE_LANES)] as bits (NaN is not 0). */
SPARSE_INLINE unsigned SIMD(sparse_nonzeros_vec)(const float* x, ptrdiff_t count) {
    return SIMD(sparse_nonzero_lanes)(
        count >= SPARSE_LANES ? SIMD(sparse_load)(x)
                              : SIMD(sparse_load_part)(x, SIMD(sparse_lanes)(count)));
}

/* Whether fewer than `limit` of x[i, lo:hi], i < n (rows ldx apart), are not 0 (NaN is not 0).
 * The rows are counted in turn until the answer is certain: the nonzeros reach the limit, or the
 * rows left could not make them reach it (half of the rows, for Fashion-MNIST's batches). */
static int SIMD(sparse_nonzeros_below)(const float* x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t lo,
                                        ptrdiff_t hi, double limit) {
    int64_t count = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        if ((double)(count + (n - i) * (hi - lo)) < limit)
            return 1;
        for (ptrdiff_t k = lo; k < hi; k += SPARSE_LANES)
            count += __builtin_popcount(SIMD(sparse_nonzeros_vec)(x + i * ldx + k, hi - k));
        if ((double)count >= limit)
            return 0;
    }
    return (double)count < limit;
}

/* The nonzeros among x[0:count], count <= 64, as bits. */
SPARSE_INLINE uint64_t SIMD(sparse_nonzeros64)(const float* x, ptrdiff_t count) {
    uint64_t bits = 0;
    for (ptrdiff_t k = 0; k < count; k += SPARSE_LANES)
        bits |= (uint64_t)SIMD(sparse_nonzeros_vec)(x + k, count - k) << k;
    return bits;
}

/* Columns [0, SPARSE_LANES nv + tail) of the output: o (=, or += unless first) x[0:count] @
 * w[0:count] for one input row x, count <= 64 (w's rows ldw apart; see sparse_rows).
 * nv and first are constants where it is called, so acc lives in registers; the nonzeros are
 * taken from one 64-bit word, so that the loop over them ends (a branch the predictor misses)
 * once per 64 inputs. */
SPARSE_INLINE void SIMD(sparse_row)(const float* x, ptrdiff_t count, const float* w, ptrdiff_t ldw,
                              float* o, const int nv, ptrdiff_t tail, sparse_mask lanes,
                              const int first) {
    sparse_vec acc[SPARSE_VECTORS], acc_tail = SIMD(sparse_zero)();
    uint64_t bits = SIMD(sparse_nonzeros64)(x, count);
    for (int v = 0; v < nv; v++)
        acc[v] = first ? SIMD(sparse_zero)() : SIMD(sparse_load)(o + SPARSE_LANES * v);
    if (tail && !first)
        acc_tail = SIMD(sparse_load_part)(o + SPARSE_LANES * nv, lanes);
    while (bits) {
        ptrdiff_t k = __builtin_ctzll(bits);
        bits &= bits - 1;
        sparse_vec xk = SIMD(sparse_broadcast)(x + k);
        const float* wk = w + k * ldw;
        for (int v = 0; v < nv; v++)
            acc[v] = SIMD(sparse_fma)(xk, SIMD(sparse_load)(wk + SPARSE_LANES * v), acc[v]);
        if (tail)
            acc_tail = SIMD(sparse_fma)(xk, SIMD(sparse_load_part)(wk + SPARSE_LANES * nv, lanes),
                                        acc_tail);
    }
    for (int v = 0; v < nv; v++)
        SIMD(sparse_store)(o + SPARSE_LANES * v, acc[v]);
    if (tail)
        SIMD(sparse_store_part)(o + SPARSE_LANES * nv, lanes, acc_tail);
}

/* Columns [0, SPARSE_LANES nv + tail) of one row of dw: d (=, or += unless first) the sum over
 * the rows i of x[i] g[i] (x's rows ldx apart; g's ldg, see sparse_rows) for the
 * rows whose bit is set in `rows`. The same loop as sparse_row's, kept apart: one version for
 * both, with the strides as arguments, leaves gcc a register short in sparse_row (AVX2). */
SPARSE_INLINE void SIMD(sparse_gradient_row)(const float* x, ptrdiff_t ldx, uint32_t rows,
                                       const float* g, ptrdiff_t ldg, float* d, const int nv,
                                       ptrdiff_t tail, sparse_mask lanes, const int first) {
    sparse_vec acc[SPARSE_VECTORS], acc_tail = SIMD(sparse_zero)();
    for (int v = 0; v < nv; v++)
        acc[v] = first ? SIMD(sparse_zero)() : SIMD(sparse_load)(d + SPARSE_LANES * v);
    if (tail && !first)
        acc_tail = SIMD(sparse_load_part)(d + SPARSE_LANES * nv, lanes);
    while (rows) {
        ptrdiff_t i = __builtin_ctz(rows);
        rows &= rows - 1;
        sparse_vec xik = SIMD(sparse_broadcast)(x + i * ldx);
        const float* gi = g + i * ldg;
        for (int v = 0; v < nv; v++)
            acc[v] = SIMD(sparse_fma)(xik, SIMD(sparse_load)(gi + SPARSE_LANES * v), acc[v]);
        if (tail)
            acc_tail = SIMD(sparse_fma)(xik, SIMD(sparse_load_part)(gi + SPARSE_LANES * nv, lanes),
                                        acc_tail);
    }
    for (int v = 0; v < nv; v++)
        SIMD(sparse_store)(d + SPARSE_LANES * v, acc[v]);
    if (tail)
        SIMD(sparse_store_part)(d + SPARSE_LANES * nv, lanes, acc_tail);
}

/* Width of the column tile that starts `left` columns before the end: SPARSE_VECTORS vectors,
 * or all that is left when that fits them and a partial one. */
static inline ptrdiff_t SIMD(sparse_tile)(ptrdiff_t left) {
    const ptrdiff_t full = SPARSE_LANES * SPARSE_VECTORS;
    return left < full + SPARSE_LANES ? left : full;
}

/* Where to read src[0:rows, 0:cols] (its rows *ld apart) from: src itself, or with SPARSE_PACK
 * a copy in `pack`, each row padded with zeros to whole vectors (*ld becomes the copy's row
 * stride). The copy is aligned: most rows of a layer 100 wide start inside a cache line, and a
 * load that crosses a line costs two. */
SPARSE_INLINE const float* SIMD(sparse_rows)(const float* src, ptrdiff_t* ld, ptrdiff_t rows,
                                       ptrdiff_t cols, float* pack) {
    ptrdiff_t full = cols - cols % SPARSE_LANES, stride = full + (full < cols ? SPARSE_LANES : 0);
    sparse_mask lanes = SIMD(sparse_lanes)(cols - full);
    if (!SPARSE_PACK)
        return src;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float* s = src + r * *ld;
        float* d = pack + r * stride;
        for (ptrdiff_t c = 0; c < full; c += SPARSE_LANES)
            SIMD(sparse_store)(d + c, SIMD(sparse_load)(s + c));
        if (full < cols)
            SIMD(sparse_store)(d + full, SIMD(sparse_load_part)(s + full, lanes));
    }
    *ld = stride;
    return pack;
}

/* OUT out (n x width) := x[:, lo:hi] @ w[lo:hi], x's rows ldx apart, w (its row k at
 * w + k * width) and out rows width apart. */
static void SIMD(sparse_product_f32)(const float* x, ptrdiff_t ldx, ptrdiff_t n, ptrdiff_t lo,
                                      ptrdiff_t hi, const float* w, ptrdiff_t width,
                                      float* out) {
    float pack[SPARSE_DEPTH * SPARSE_PACKED] __attribute__((aligned(SPARSE_ALIGN)));
    for (ptrdiff_t k0 = lo; k0 < hi; k0 += SPARSE_DEPTH) {
        ptrdiff_t depth = hi - k0 < SPARSE_DEPTH ? hi - k0 : SPARSE_DEPTH, cw;
        for (ptrdiff_t c0 = 0; c0 < width; c0 += cw) {
            cw = SIMD(sparse_tile)(width - c0);
            ptrdiff_t tail = cw % SPARSE_LANES, ldw = width;
            sparse_mask lanes = SIMD(sparse_lanes)(tail);
            const float* wt = SIMD(sparse_rows)(w + k0 * width + c0, &ldw, depth, cw, pack);
            for (ptrdiff_t i = 0; i < n; i++) {
                const float* xi = x + i * ldx + k0;
                float* o = out + i * width + c0;
                switch ((cw / SPARSE_LANES) * 2 + (k0 == lo)) {
#define SPARSE_ROW(N)                                                                            \
    case 2 * N: SIMD(sparse_row)(xi, depth, wt, ldw, o, N, tail, lanes, 0); break;               \
    case 2 * N + 1: SIMD(sparse_row)(xi, depth, wt, ldw, o, N, tail, lanes, 1); break;
                    SPARSE_CASES(SPARSE_ROW)
#undef SPARSE_ROW
                }
            }
        }
    }
}

/* OUT dw[lo:hi] := x[:, lo:hi]^T g, x (n rows) ldx apart, g (n x width) and dw (its row k at
 * dw + k * width) rows width apart. */
static void SIMD(sparse_weight_gradient_f32)(const float* x, ptrdiff_t ldx, ptrdiff_t n,
                                              ptrdiff_t lo, ptrdiff_t hi, const float* g,
                                              ptrdiff_t width, float* dw) {
    float pack[SPARSE_ROWS * SPARSE_PACKED] __attribute__((aligned(SPARSE_ALIGN)));
    uint32_t rows[SPARSE_DEPTH];  /* rows[k - k0]: bit r set where x[i0 + r, k] != 0 */
    for (ptrdiff_t k0 = lo; k0 < hi; k0 += SPARSE_DEPTH) {
        ptrdiff_t k1 = k0 + SPARSE_DEPTH < hi ? k0 + SPARSE_DEPTH : hi, cw;
        for (ptrdiff_t i0 = 0; i0 < n; i0 += SPARSE_ROWS) {
            ptrdiff_t i1 = i0 + SPARSE_ROWS < n ? i0 + SPARSE_ROWS : n, k = k0;
            for (; k + SPARSE_LANES <= k1; k += SPARSE_LANES) {
                sparse_bits bits = SIMD(sparse_no_bits)();
                for (ptrdiff_t i = i0; i < i1; i++)
                    bits = SIMD(sparse_mark)(bits, x + i * ldx + k, 1u << (i - i0));
                SIMD(sparse_store_bits)(rows + (k - k0), bits);
            }
            for (; k < k1; k++) {
                rows[k - k0] = 0;
                for (ptrdiff_t i = i0; i < i1; i++)
                    rows[k - k0] |= (uint32_t)(x[i * ldx + k] != 0) << (i - i0);
            }
            for (ptrdiff_t c0 = 0; c0 < width; c0 += cw) {
                cw = SIMD(sparse_tile)(width - c0);
                ptrdiff_t tail = cw % SPARSE_LANES, ldg = width;
                sparse_mask lanes = SIMD(sparse_lanes)(tail);
                const float* gt = SIMD(sparse_rows)(g + i0 * width + c0, &ldg, i1 - i0, cw, pack);
                for (k = k0; k < k1; k++) {
                    const float* xk = x + i0 * ldx + k;
                    float* d = dw + k * width + c0;
                    switch ((cw / SPARSE_LANES) * 2 + (i0 == 0)) {
#define SPARSE_GRADIENT_ROW(N)                                                                   \
    case 2 * N:                                                                                  \
        SIMD(sparse_gradient_row)(xk, ldx, rows[k - k0], gt, ldg, d, N, tail, lanes, 0);         \
        break;                                                                                   \
    case 2 * N + 1:                                                                              \
        SIMD(sparse_gradient_row)(xk, ldx, rows[k - k0], gt, ldg, d, N, tail, lanes, 1);         \
        break;
                        SPARSE_CASES(SPARSE_GRADIENT_ROW)
#undef SPARSE_GRADIENT_ROW
                    }
                }
            }
        }
    }
}

#undef SPARSE_MM
#undef SPARSE_LANES
#undef SPARSE_PACK
#undef sparse_vec
#undef sparse_mask
#undef sparse_bits
