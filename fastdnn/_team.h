/* The thread team a training call runs on: one OpenMP parallel region per run of batches, its
 * threads meeting at the team's own barriers between phases instead of forking and joining once
 * per phase.
 *
 * The barrier is ours, not OpenMP's, so that its wait policy is fastdnn's alone (setting
 * OMP_WAIT_POLICY or GOMP_SPINCOUNT would change every OpenMP library in the process): a thread
 * that arrives first spins for at most TEAM_SPIN_NS, then sleeps on a futex (Linux; elsewhere it
 * yields its core in a loop). A partner that lost its core to another process thus gets a core
 * back at once, instead of waiting a scheduler time slice while the early thread burns one.
 *
 * Every thread of a region calls team_join first and team_leave last; a barrier outside a
 * region, or in a team of one, does nothing. */
#ifndef FASTDNN_TEAM_H
#define FASTDNN_TEAM_H

#include <limits.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#elif !defined(_WIN32)
#include <sched.h>
#endif

#ifdef _OPENMP
#include <omp.h>
static inline int team_index(void) { return omp_get_thread_num(); }
static inline int team_size(void) { return omp_get_num_threads(); }
/* OpenMP's own default team size: OMP_NUM_THREADS when set, else the CPUs the process could run
 * on when the runtime started (OMP_PROC_BIND then pins the starting thread to one of them). */
static inline int team_default_size(void) { return omp_get_max_threads(); }
#else
static inline int team_index(void) { return 0; }
static inline int team_size(void) { return 1; }
static inline int team_default_size(void) { return 0; }  /* no OpenMP: no default to report */
#endif

/* Longer than the wait at a meeting of threads that both hold a core (a few microseconds), far
 * shorter than a scheduler time slice (milliseconds). */
#define TEAM_SPIN_NS 50000

/* A team's shared state: the arrivals at its meetings so far (the futex word; compared with
 * wrap-around arithmetic) and how many threads sleep on it. Zeroed before the region. */
typedef struct {
    int arrived;
    int sleepers;
} team_t;

/* Each thread's view of its current team. */
static __thread team_t* team_current = 0;
static __thread int team_threads = 1;
static __thread int team_meetings = 0;

static inline void team_join(team_t* team, int size) {
    team_current = team;
    team_threads = size;
    team_meetings = 0;
}

static inline void team_leave(void) { team_current = 0; }

/* Count this thread in at the next meeting; returns the arrival count that completes it (0 when
 * there is no team to meet). */
static inline int team_arrive(void) {
    if (team_current == 0 || team_threads < 2) return 0;
    team_meetings += 1;
    __atomic_fetch_add(&team_current->arrived, 1, __ATOMIC_SEQ_CST);
    return (int)((unsigned)team_meetings * (unsigned)team_threads);
}

/* Whether every thread has arrived at the meeting ``everyone`` (team_arrive's answer). */
static inline int team_all_arrived(int everyone) {
    if (everyone == 0) return 1;
    int now = __atomic_load_n(&team_current->arrived, __ATOMIC_ACQUIRE);
    return (int)((unsigned)now - (unsigned)everyone) >= 0;
}

static inline long long team_clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void team_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sleep until the arrival count differs from ``seen`` (or a spurious wake). */
static inline void team_sleep(int seen) {
#ifdef __linux__
    syscall(SYS_futex, &team_current->arrived, FUTEX_WAIT_PRIVATE, seen, (void*)0, (void*)0, 0);
#elif !defined(_WIN32)
    (void)seen;
    sched_yield();
#else
    (void)seen;
#endif
}

/* Wait until every thread has arrived at the meeting ``everyone``: spin, then sleep. The last
 * thread to arrive wakes the sleepers. */
static inline void team_wait(int everyone) {
    long long deadline = 0;
    int spins = 0, seen;
    if (everyone == 0) return;
    if (team_all_arrived(everyone)) {
        if (__atomic_load_n(&team_current->sleepers, __ATOMIC_SEQ_CST) > 0) {
#ifdef __linux__
            syscall(SYS_futex, &team_current->arrived, FUTEX_WAKE_PRIVATE, INT_MAX, (void*)0,
                    (void*)0, 0);
#endif
        }
        return;
    }
    while (!team_all_arrived(everyone)) {
        if (++spins % 64 != 0) {
            team_pause();
            continue;
        }
        if (deadline == 0) deadline = team_clock_ns() + TEAM_SPIN_NS;
        if (team_clock_ns() < deadline) continue;
        /* Announce the sleep before checking once more: the last arrival either sees the
         * sleeper or was seen here (both sequentially consistent), and the futex call itself
         * returns at once if the count moved since. */
        __atomic_fetch_add(&team_current->sleepers, 1, __ATOMIC_SEQ_CST);
        seen = __atomic_load_n(&team_current->arrived, __ATOMIC_SEQ_CST);
        if ((int)((unsigned)seen - (unsigned)everyone) < 0) team_sleep(seen);
        __atomic_fetch_sub(&team_current->sleepers, 1, __ATOMIC_SEQ_CST);
    }
}

static inline void team_barrier(void) { team_wait(team_arrive()); }

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
