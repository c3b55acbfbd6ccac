# The thread team's meetings (barriers that copy rows while they wait).
# Included by fastdnn/_kernels.pyx (one module, one compilation unit).

# --- meetings that put the wait to use: a thread that reaches a barrier before the others
# (thread 0 alone on the small layers and the loss, or the other side of an uneven split) copies
# rows of the next shuffled batch into its own buffer meanwhile, so that less of the gather is
# left for the next step. The gather of a random row waits on memory, not on arithmetic.

cdef struct Helpers:
    # One thread's view of the next batch; claimed is shared.
    const void* x           # the data, rows ``width`` wide
    const int64_t* rows     # the next batch's rows of x (NULL: nothing to copy this step)
    void* out               # the next batch's buffer
    Py_ssize_t n            # its rows
    Py_ssize_t width
    long long* claimed      # rows of it taken so far


cdef void _meet(Helpers* h, floating* like) noexcept nogil:
    """Meet the team at a barrier (``_team.h``; ``like`` only selects the precision). With h, a
    thread that arrives before the others copies whole rows of the next batch while it waits,
    taking one at a time from the shared counter, until all have arrived or no row is left. A
    row taken is copied before its taker reaches the barrier, which orders the copies before
    their readers."""
    cdef long long r
    cdef int everyone = team_arrive()
    if h != NULL and h.rows != NULL:
        while not team_all_arrived(everyone):
            r = team_take(h.claimed)
            if r >= h.n:
                break
            memcpy(<floating*>h.out + r * h.width, <const floating*>h.x + h.rows[r] * h.width,
                   h.width * sizeof(floating))
    team_wait(everyone)


cdef inline unsigned int _team_start(team_t* team) noexcept nogil:
    """Join ``team`` (zeroed before the parallel region) as one of the region's threads and
    flush denormals in this thread (the FP state is per thread); returns the state to restore."""
    team_join(team, team_size())
    return fpenv_flush_denormals()


cdef inline void _team_end(unsigned int state) noexcept nogil:
    """Leave the team joined by ``_team_start`` and restore this thread's FP state."""
    team_leave()
    fpenv_restore(state)
