/* One variant's functions, included by simd/dispatch.h once per variant with SIMD_VARIANT (the
 * suffix of their names) and SIMD_LANES (floats per vector of the sparse products; 0: none). */
#if SIMD_LANES
#include "sparse.h"
#include "adam.h"
#endif

/* The bodies written for both precisions: FLOAT_T, and TYPED(name) suffixed by both. */
#define FLOAT_T float
#define TYPED(name) SIMD(name##_f32)
#define FLOAT_SQRT sqrtf
#define ADAM_RECIPROCAL SIMD_LANES
#include "update.h"
#include "scan.h"
#undef FLOAT_T
#undef TYPED
#undef FLOAT_SQRT
#undef ADAM_RECIPROCAL

#define FLOAT_T double
#define TYPED(name) SIMD(name##_f64)
#define FLOAT_SQRT sqrt
#define ADAM_RECIPROCAL 0
#include "update.h"
#include "scan.h"
#undef FLOAT_T
#undef TYPED
#undef FLOAT_SQRT
#undef ADAM_RECIPROCAL
