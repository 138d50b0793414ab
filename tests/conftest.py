"""Fixtures shared by the test modules. Plain helpers (grids, layouts, tolerances) are in
``helpers.py`` and the float64 reference in ``reference.py``."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import zlib
from pathlib import Path


def _numba_cache_dir() -> str:
    """A Numba cache directory for this exact package source: ``<base>/<hash>``, the hash taken
    over every ``fastlinear/**/*.py`` (path and bytes), the Python and the Numba version. Numba
    checks only a kernel's own file, so an edit to a helper another file's kernel calls would
    otherwise leave stale machine code in use; here any edit starts a new, cold directory, and
    an unchanged tree stays warm across runs. ``<base>`` is ``FASTLINEAR_TEST_NUMBA_CACHE`` (for
    CI to keep between steps), else ``.pytest_cache/numba`` in the repository. The three most
    recently used directories are kept; older ones are removed."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted((root / "fastlinear").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(sys.version.encode() + importlib.metadata.version("numba").encode())
    base = Path(os.environ.get("FASTLINEAR_TEST_NUMBA_CACHE") or root / ".pytest_cache" / "numba")
    here = base / digest.hexdigest()[:16]
    here.mkdir(parents=True, exist_ok=True)
    os.utime(here)  # mark as used
    others = sorted((p for p in base.iterdir() if p.is_dir() and p != here),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in others[2:]:
        shutil.rmtree(old, ignore_errors=True)
    return str(here)


# Before numba is imported (it reads NUMBA_CACHE_DIR once); a directory the user chose is kept.
if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _numba_cache_dir()
    if "numba" in sys.modules:  # imported by a plugin: no kernel is defined yet
        sys.modules["numba"].config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]

# The tests expect auto's built-in defaults (deterministic loop kernels), not whatever table a
# `fastlinear tune` on this machine left behind; tests of the tuning table set their own value.
os.environ["FASTLINEAR_TUNING"] = "off"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import fastlinear as fl  # noqa: E402

# A fixed thread count for the test run: the adaptive default follows the machine's load, and BLAS
# may round differently at another count, so two blas calls within one test could differ. Tests of
# the adaptive default switch it on for themselves (tests/test_adaptive_threads.py).
fl.set_num_threads(fl.get_num_threads())

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
