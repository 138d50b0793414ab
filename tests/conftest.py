"""Fixtures shared by the test modules. Plain helpers (grids, layouts, tolerances) are in
``helpers.py`` and the float64 reference in ``reference.py``."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import fastlinear as fl

# Hypothesis: modest example counts, no deadline (the first call of a kernel may JIT-compile).
settings.register_profile(
    "fastlinear",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("fastlinear")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run the tests marked slow (start-up, compile, multi-process)")


def pytest_collection_modifyitems(config, items):
    """Leave out the tests marked slow unless --run-slow is given (CI gives it)."""
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's id: every test gets its own fixed data."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def restore_threads():
    """Put the thread count back (Numba's and BLAS's) after a test that changes it."""
    before = fl.get_num_threads()
    yield before
    fl.set_num_threads(before)
    assert fl.get_num_threads() == before
