/* One variant's functions, included by simd/dispatch.h once per variant with SIMD_VARIANT (the
 * suffix of their names) and SIMD_LANES (floats per vector of the sparse products; 0: none). */
#if SIMD_LANES
#include "sparse.h"
#include "adam.h"
#endif

#define UPDATE_T float
#define UPDATE(name) SIMD(name##_f32)
#define UPDATE_SQRT sqrtf
#define UPDATE_RECIPROCAL SIMD_LANES
#include "update.h"
#undef UPDATE_T
#undef UPDATE
#undef UPDATE_SQRT
#undef UPDATE_RECIPROCAL

#define UPDATE_T double
#define UPDATE(name) SIMD(name##_f64)
#define UPDATE_SQRT sqrt
#define UPDATE_RECIPROCAL 0
#include "update.h"
#undef UPDATE_T
#undef UPDATE
#undef UPDATE_SQRT
#undef UPDATE_RECIPROCAL
