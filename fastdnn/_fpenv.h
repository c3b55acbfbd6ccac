/* Denormal control for the kernels: flush-to-zero and denormals-are-zero while a kernel runs.
 * Denormals (e.g. Adam's second moments underflowing) make float loops over 2x slower on x86.
 * The state is per thread, so every OpenMP worker sets it too, and the caller's state is restored. */
#ifndef FASTDNN_FPENV_H
#define FASTDNN_FPENV_H

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
static inline unsigned int fpenv_flush_denormals(void) {
    unsigned int state = _mm_getcsr();
    _mm_setcsr(state | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return state;
}
static inline void fpenv_restore(unsigned int state) { _mm_setcsr(state); }
#elif defined(__aarch64__)
static inline unsigned int fpenv_flush_denormals(void) {
    unsigned long fpcr;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr | (1ul << 24)));
    return (unsigned int)fpcr;
}
static inline void fpenv_restore(unsigned int state) {
    unsigned long fpcr = state;
    __asm__ __volatile__("msr fpcr, %0" : : "r"(fpcr));
}
#else
static inline unsigned int fpenv_flush_denormals(void) { return 0u; }
static inline void fpenv_restore(unsigned int state) { (void)state; }
#endif

#endif
