/* Whole-array scans that the compiler vectorizes: a body compiled once per variant and precision
 * (simd/variant.h sets FLOAT_T and TYPED(name)), so that they take the variant's widest
 * registers. */

/* How many of a[0:size] are NaN or infinite (x - x is NaN exactly for those). */
static ptrdiff_t TYPED(count_nonfinite)(const FLOAT_T* a, ptrdiff_t size) {
    ptrdiff_t bad = 0;
    for (ptrdiff_t i = 0; i < size; i++)
        bad += (a[i] - a[i]) != 0;
    return bad;
}

/* The sum of a[0:size]² in double, in one order whatever the variant: SUM_LANES running sums,
 * lane k taking the elements k, k + SUM_LANES, ..., then added pairwise. */
static double TYPED(sum_squares)(const FLOAT_T* a, ptrdiff_t size) {
    double lane[SUM_LANES] = {0};
    ptrdiff_t i = 0, k;
    for (; i + SUM_LANES <= size; i += SUM_LANES)
        for (k = 0; k < SUM_LANES; k++)
            lane[k] += (double)a[i + k] * a[i + k];
    for (k = 0; i < size; i++, k++)
        lane[k] += (double)a[i] * a[i];
    for (ptrdiff_t half = SUM_LANES / 2; half > 0; half /= 2)
        for (k = 0; k < half; k++)
            lane[k] += lane[k + half];
    return lane[0];
}
