"""How many threads a network's team runs each stretch of batches on, by measured speed.

A team of threads meets several times per training step, so a thread that loses its core to
another process (a busy neighbour, NumPy's BLAS threads still spinning after a product) holds
the whole team back; on a shared machine the team can then be several times slower than one
thread. ``TeamSizer`` therefore runs the batches in short stretches, times them, and keeps to
whichever of the whole team and one thread ran its latest stretch faster per batch. Now and
then it runs a short stretch of the other choice (a probe) to see whether that has changed;
probes that lose are spaced so that they cost at most about ``PROBE_SHARE`` of the time.
A stretch is planned in batches at the latest rate, and ends early (in the kernels, after the
batch during which its time ran out) once it has run OVERRUN times its planned seconds: a team
that loses a core mid-stretch, or a probe of a team beside a busy neighbour (where one batch can
wait a scheduler time slice), costs a few milliseconds, not its batches' worth.
While one thread runs, a CPU that the system counts idle (Linux: fewer runnable threads than
CPUs in ``/proc/loadavg``) brings the next probe of the team forward, so that the team is back
within a stretch or two once a neighbour stops; each such probe that loses doubles the time one
thread runs before the next, until the team wins again.
Results do not depend on the thread count (``_kernels``), so switching changes speed only.
"""

import os

RUN_SECONDS = 0.005  # a stretch: short enough to notice a neighbour, long enough to pay a fork
PROBE_SECONDS = 0.001
PROBE_SHARE = 0.02
FIRST_WAIT = 0.02  # seconds run before a probe of the team, after it last held for a while
MAX_WAIT = 0.5  # longest wait between probes, unless their cost asks for more
HELD = 4  # stretches the team must last after a winning probe for it to count as held
WARM_BATCHES = 1  # the first stretch (cold caches, first touches) is not timed
FIRST_BATCHES = 4
OVERRUN = 2  # a stretch ends at this many times its planned seconds
HINT_WAIT = 0.005  # one thread runs at least this long before an idle CPU brings a probe forward
                  # (twice as long after each such probe that lost, until the team wins one)


def idle_cpus():
    """How many CPUs the system runs nothing on right now (the calling thread counts as
    running), or None where that is not known."""
    try:
        with open("/proc/loadavg", "rb") as f:
            runnable = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return (os.cpu_count() or 1) - runnable


class TeamSizer:
    """Chooses the thread count of each stretch of batches: ``team`` or 1.

    It starts on one thread (which never waits for another, beside a busy neighbour or not), and
    its first timed stretch is followed by a probe of the team; a team stretch slower per batch
    than one thread's latest makes the next stretch a probe of one thread. A probe of the team
    comes after ``wait`` seconds of one thread, after one untimed batch that wakes the team (a
    wake-up slower than a whole probe counts as a lost probe); the wait doubles (up to MAX_WAIT)
    with every probe that loses and every team that did not hold, and stretches so that what
    they lost is at most PROBE_SHARE of the time, and starts again at FIRST_WAIT once a team has
    held.

    Args:
        team: the whole team's thread count (1: every stretch runs on one thread).
        idle: a callable returning how many CPUs are idle now, or None (default: ``idle_cpus``).
    """

    def __init__(self, team, idle=idle_cpus):
        self.team = team
        self.idle = idle
        self.hint_wait = HINT_WAIT  # one thread's seconds before an idle CPU brings a probe on
        self.hinted = False  # the probe under way was brought forward so
        self.threads = 1  # the current choice: one thread first, which never waits for another
        self.per_batch = {}  # thread count: seconds per batch of its latest stretch
        self.team_stretch = (0, 0.0)  # the latest team stretch: (batches, seconds)
        self.stretches = 0  # ordinary stretches since the last switch
        self.since_probe = 0.0  # seconds run on the current choice since the last probe
        self.wait = FIRST_WAIT  # seconds to run before the next probe
        self.probe_now = False
        self.warm = False
        self.woken = False  # the next team probe has had its untimed first batch
        self.waking = False  # the stretch under way is that batch
        self.wake_lost = 0.0  # seconds that batch took beyond the current choice's rate
        self.lost_probe = None  # a lost probe of the team: (seconds lost, one thread's rate)

    def _other(self, threads):
        return 1 if threads == self.team else self.team

    def next_run(self, remaining):
        """Return ``(threads, batches, seconds)`` for the next stretch: at most ``remaining``
        batches on ``threads`` threads, ending early once it has run ``seconds`` (0: no limit)."""
        if self.team == 1:
            return 1, remaining, 0.0
        if not self.warm:
            return self.threads, min(WARM_BATCHES, remaining), 0.0
        threads, seconds, rate = self.threads, RUN_SECONDS, self.per_batch.get(self.threads)
        if self._cpu_free(rate):
            self.probe_now = self.hinted = True
        if self.probe_now or (rate is not None and self.since_probe >= self.wait):
            threads, seconds = self._other(self.threads), PROBE_SECONDS
            if threads != 1 and not self.woken:
                # a team idle for a while pays for waking its threads and warming their caches
                # in its first batch: one untimed batch first, so the probe times the team itself
                self.woken = self.waking = True
                return threads, 1, 0.0
            # sized by the current choice's fresh rate, not the probed one's stale rate
            rate = rate or self.per_batch.get(threads)
        if rate is None:  # the first timed stretch is as short as a probe
            batches, seconds = FIRST_BATCHES, PROBE_SECONDS
        else:
            batches = max(1, int(seconds / rate))
        return threads, min(batches, remaining), OVERRUN * seconds

    def _cpu_free(self, rate):
        """Whether one thread, the current choice, has run a while and the team's other
        threads would find idle CPUs now."""
        if self.threads != 1 or rate is None or self.probe_now:
            return False
        if self.since_probe < self.hint_wait or self.since_probe >= self.wait:
            return False
        free = self.idle()
        return free is not None and free >= self.team - 1

    def record(self, threads, batches, seconds):
        """Take the time of a stretch: ``batches`` batches run on ``threads`` threads in
        ``seconds`` seconds (wall clock)."""
        if self.team == 1 or batches < 1:
            return
        if not self.warm:
            self.warm = True
            return
        rate = seconds / batches
        if self.waking:  # the team's wake-up batch: the probe comes next, and pays for it if it loses
            self.waking = False
            self.wake_lost = max(0.0, seconds - batches * self.per_batch.get(self.threads, rate))
            if self.wake_lost > PROBE_SECONDS:  # slower than a whole probe: the team has lost
                self.per_batch[threads] = rate
                self.woken, self.since_probe, self.probe_now = False, 0.0, False
                self._team_probe_lost(self.wake_lost)
                self.wake_lost = 0.0
            return
        if threads != self.threads:
            self.woken = False
            self._probed(threads, batches, seconds, rate)
            return
        if self.lost_probe is not None and threads == 1:
            # a lost team probe slows the stretch after it too (the team's threads still hold a
            # core for a while, and a neighbour they pushed off may take this thread's): count it
            lost, before = self.lost_probe
            self.lost_probe = None
            self._space_probes(lost + max(0.0, seconds - batches * before), double=False)
        self.per_batch[threads] = rate
        self.since_probe += seconds
        self.stretches += 1
        if self.per_batch.get(self._other(threads)) is None:  # the other's speed unknown yet
            self.probe_now = True
        elif threads == self.team:
            self.team_stretch = (batches, seconds)
            if rate > self.per_batch[1]:
                self.probe_now = True

    def _probed(self, threads, batches, seconds, rate):
        current = self.per_batch.get(self.threads)
        self.per_batch[threads] = rate
        self.since_probe, self.probe_now = 0.0, False
        if current is None:
            return
        if rate >= current:
            lost = seconds - batches * current + self.wake_lost
            self.wake_lost = 0.0
            if threads != 1:
                self._team_probe_lost(lost)
            else:
                self._space_probes(lost)
            return
        self.wake_lost = 0.0
        if threads == 1:  # the team has fallen behind
            if self.stretches < HELD:
                self._space_probes(self.team_stretch[1] - self.team_stretch[0] * rate)
            else:
                self.wait = FIRST_WAIT
        else:  # the team is back: an idle CPU may bring its next probe on soon again
            self.hinted, self.hint_wait = False, HINT_WAIT
        self.threads, self.stretches = threads, 0

    def _team_probe_lost(self, lost):
        """A probe of the team lost ``lost`` seconds: space the next (once more when the stretch
        after it shows what else it cost), and if an idle CPU brought it forward, wait twice as
        long before the next such probe."""
        self._space_probes(lost)
        self.lost_probe = (lost, self.per_batch[1])
        if self.hinted:
            self.hinted, self.hint_wait = False, 2 * self.hint_wait

    def _space_probes(self, lost, double=True):
        """Wait twice as long as last time before the next probe (unless not ``double``), and
        long enough that what was ``lost`` (seconds) stays within PROBE_SHARE of the time."""
        wait = min(2 * self.wait, MAX_WAIT) if double else self.wait
        self.wait = max(wait, lost / PROBE_SHARE)
