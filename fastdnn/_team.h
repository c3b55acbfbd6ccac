/* The thread team a training call runs on: one OpenMP parallel region per call, its threads
 * meeting at barriers between phases instead of forking and joining once per phase.
 * An orphaned barrier binds to the innermost enclosing parallel region; outside one (or in a
 * build without OpenMP) the team is the calling thread alone and the barrier does nothing. */
#ifndef FASTDNN_TEAM_H
#define FASTDNN_TEAM_H

#ifdef _OPENMP
#include <omp.h>
static inline void team_barrier(void) {
    _Pragma("omp barrier")
}
static inline int team_index(void) { return omp_get_thread_num(); }
static inline int team_size(void) { return omp_get_num_threads(); }
/* OpenMP's own default team size: OMP_NUM_THREADS when set, else the CPUs the process could run
 * on when the runtime started (OMP_PROC_BIND then pins the starting thread to one of them). */
static inline int team_default_size(void) { return omp_get_max_threads(); }
#else
static inline void team_barrier(void) {}
static inline int team_index(void) { return 0; }
static inline int team_size(void) { return 1; }
static inline int team_default_size(void) { return 0; }  /* no OpenMP: no default to report */
#endif

/* A shared counter and a shared signal between the team's threads (barriers order the rest). */
static inline long long team_load(const long long* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void team_store(long long* p, long long v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline long long team_take(long long* p) { return __atomic_fetch_add(p, 1, __ATOMIC_RELAXED); }

/* A run of pieces [front, back) packed in one word, taken from either end: the owner of the run
 * takes from the front, a thread that has finished its own run from the back. Returns the piece
 * taken, or -1 when none is left. */
static inline long long team_take_end(long long* run, int from_back) {
    long long old = __atomic_load_n(run, __ATOMIC_RELAXED), next, front, back;
    do {
        front = old >> 32;
        back = old & 0xffffffffLL;
        if (front >= back) return -1;
        next = from_back ? (front << 32) | (back - 1) : ((front + 1) << 32) | back;
    } while (!__atomic_compare_exchange_n(run, &old, next, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return from_back ? back - 1 : front;
}

#endif
