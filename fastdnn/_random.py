"""The generators fastdnn draws from, and fastdnn's own stream of seeds for new layers.

A new layer's seed comes from fastdnn's own stream, not from Python's global ``random``: that
one is shared with every library in the process, and some draw from it on their own threads at
any moment (a Dask worker samples the collections it sizes), so a seeded build there would get
other weights than the same build elsewhere.
"""

import contextlib
import random
import threading

import numpy as np

_seeds = random.Random()
_one_seeded_block = threading.Lock()


def draw_seed() -> int:
    """The seed of a new layer's initial weights."""
    return _seeds.randrange(2**31)


def seed_all(seed: int) -> None:
    """Seed fastdnn's stream of layer seeds, Python's ``random`` and NumPy's global generator."""
    _seeds.seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with every generator seeded, then put their states back; one such block at
    a time in the process (their generators are process-wide)."""
    with _one_seeded_block:
        saved = _seeds.getstate(), random.getstate(), np.random.get_state()
        seed_all(seed)
        try:
            yield
        finally:
            _seeds.setstate(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])
