"""How many threads a network's team runs each stretch of batches on, by measured speed.

A team of threads meets several times per training step, so a thread that loses its core to
another process (a busy neighbour, NumPy's BLAS threads still spinning after a product) holds
the whole team back; on a shared machine the team can then be several times slower than one
thread. ``TeamSizer`` therefore runs the batches in short stretches, times them, and keeps to
whichever of the whole team and one thread ran its latest stretch faster per batch. Now and
then it runs a short stretch of the other choice (a probe) to see whether that has changed;
probes that lose are spaced so that they cost at most about ``PROBE_SHARE`` of the time.
Results do not depend on the thread count (``_kernels``), so switching changes speed only.
"""

RUN_SECONDS = 0.005  # a stretch: short enough to notice a neighbour, long enough to pay a fork
PROBE_SECONDS = 0.001
PROBE_SHARE = 0.02
FIRST_WAIT = 0.02  # seconds run before the first probe of the choice not taken
MAX_WAIT = 0.5  # longest wait between probes, unless their cost asks for more
WARM_BATCHES = 2  # the first stretch (cold caches, first touches) is not timed
FIRST_BATCHES = 4


class TeamSizer:
    """Chooses the thread count of each stretch of batches: ``team`` or 1.

    Args:
        team: the whole team's thread count (1: every stretch runs on one thread).
    """

    def __init__(self, team):
        self.team = team
        self.threads = team  # the current choice
        self.per_batch = {}  # thread count: seconds per batch of its latest stretch
        self.since_probe = 0.0  # seconds run on the current choice since the last probe
        self.wait = FIRST_WAIT  # seconds to run before the next probe
        self.warm = False

    def _other(self, threads):
        return 1 if threads == self.team else self.team

    def next_run(self, remaining):
        """Return ``(threads, batches)`` for the next stretch of at most ``remaining`` batches."""
        if self.team == 1:
            return 1, remaining
        if not self.warm:
            return self.threads, min(WARM_BATCHES, remaining)
        threads, seconds = self.threads, RUN_SECONDS
        if self.threads in self.per_batch and self.since_probe >= self.wait:
            threads, seconds = self._other(self.threads), PROBE_SECONDS
        rate = self.per_batch.get(threads)
        batches = max(1, int(seconds / rate)) if rate else FIRST_BATCHES
        return threads, min(batches, remaining)

    def record(self, threads, batches, seconds):
        """Take the time of a stretch: ``batches`` batches run on ``threads`` threads in
        ``seconds`` seconds (wall clock)."""
        if self.team == 1 or batches < 1:
            return
        if not self.warm:
            self.warm = True
            return
        rate = seconds / batches
        self.per_batch[threads] = rate
        other = self._other(threads)
        if threads == self.threads:  # an ordinary stretch
            self.since_probe += seconds
            other_rate = self.per_batch.get(other)
            if other_rate is None or rate <= other_rate:
                return
            # the choice has become the slower one: switch, and count this stretch's loss
            self.threads, self.since_probe = other, 0.0
            self._space_probes(seconds - batches * other_rate, grow=False)
        else:  # a probe
            current = self.per_batch[self.threads]
            self.since_probe = 0.0
            if rate < current:
                self.threads = threads
            else:
                self._space_probes(seconds - batches * current, grow=True)

    def _space_probes(self, lost, grow):
        """Wait long enough before the next probe that what was ``lost`` (seconds) stays within
        PROBE_SHARE of the time; after a losing probe, also twice as long as last time."""
        wait = min(2 * self.wait, MAX_WAIT) if grow else self.wait
        self.wait = max(wait, lost / PROBE_SHARE)
