"""Fixtures shared by the kernel test files (helper functions are in ``_helpers.py``)."""

import numpy as np
import pytest

from fastdnn import _kernels as kernels
from fastdnn import reference


@pytest.fixture
def rng():
    """A seeded generator: every test draws the same data on every run."""
    return np.random.default_rng(20240601)


@pytest.fixture(params=[kernels, reference], ids=["kernels", "reference"])
def engine(request):
    """The compiled kernels and their NumPy reference, which must both be right on their own."""
    return request.param


@pytest.fixture
def kernel_threads():
    """Set the kernels' own thread count for a test (``kernel_threads(n)``), restored after it."""
    saved = kernels.get_num_threads()
    yield kernels.set_num_threads
    kernels.set_num_threads(saved)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: trains on the real Fashion-MNIST (CI runs these; deselect with "
        "-m 'not slow')")
