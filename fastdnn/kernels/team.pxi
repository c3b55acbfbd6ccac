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


# --- stretches that end on time: a stretch of batches (``_team_size``) ends early, after the
# batch during which its time ran out, so a team that has lost a core costs at most the
# stretch's time and one batch, however many batches it was given.

cdef struct Stretch:
    long long budget_ns     # IN: the stretch's time (0: no limit)
    long long deadline_ns   # thread 0's: when the time runs out
    long long cut           # OUT: the batches (or rows) after which the time ran out; -1 before


cdef inline Stretch _stretch(double seconds) noexcept:
    """A stretch of at most ``seconds`` (0: no limit), to start in a team."""
    cdef Stretch s
    s.budget_ns = <long long>(seconds * 1e9) if seconds > 0 else 0
    s.deadline_ns, s.cut = 0, -1
    return s


cdef inline void _stretch_start(Stretch* s, int t) noexcept nogil:
    """Start the stretch's clock: thread 0, at the start of the team's work."""
    if t == 0 and s.budget_ns > 0:
        s.deadline_ns = team_clock_ns() + s.budget_ns


cdef inline void _stretch_check(Stretch* s, long long done, int t) noexcept nogil:
    """Thread 0, before a meeting, after ``done`` batches (or rows) of work: if the time is up,
    cut the stretch there; every thread reads the cut after the meeting (``_stretch_cut_at``)."""
    if t == 0 and s.deadline_ns != 0 and team_clock_ns() >= s.deadline_ns:
        team_store(&s.cut, done)


cdef inline bint _stretch_cut_at(Stretch* s, long long done) noexcept nogil:
    """Whether the stretch ends after ``done`` batches (or rows): after the meeting that followed
    thread 0's ``_stretch_check``."""
    return team_load(&s.cut) == done
