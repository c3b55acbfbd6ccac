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
