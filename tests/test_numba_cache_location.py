"""Numba's cache location in any state: import and kernels work, one line on stderr says why.

Each case runs a fresh Python on a copy of the package, as an unprivileged user where the tests
run as root (root ignores file permissions), and calls one real kernel (``grad_bias_serial``,
about a second to compile).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numba
import pytest

import fastlinear

NOBODY = 65534
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# Calls one kernel and prints how many kernels compiled (0: all loaded from a cache).
# The temporary directory is pinned to TMPDIR even when that is read-only (Python would otherwise
# fall back to /tmp), so no case writes outside its scratch directory.
RUN_KERNEL = textwrap.dedent("""
    import os, sys, tempfile
    tempfile.tempdir = os.environ["TMPDIR"]
    import numpy as np
    import fastlinear
    assert fastlinear.__file__.startswith(os.environ["EXPECT_PACKAGE"]), fastlinear.__file__
    from fastlinear import _compile
    db = np.zeros(3)
    # The loops backend's grad_bias (a stable signature): a 2 x 3 problem runs a serial kernel.
    fastlinear.get_backend("loops").grad_bias(db, np.ones((2, 3)), np.float64(1), False)
    assert db.tolist() == [2.0, 2.0, 2.0], db
    print("compiled", _compile.compile_count())
""")


def _chmod_tree(root: Path, writable: bool) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644 if writable else 0o444)
        os.chmod(dirpath, 0o755 if writable else 0o555)


@pytest.fixture
def box():
    """A world-readable scratch directory (pytest's tmp_path is private to root) with a copy of
    the package in ``site/``, a ``home/`` and a ``tmp/``; made writable again afterwards so it
    can be removed."""
    root = Path(tempfile.mkdtemp(prefix="fl-cache-test-"))
    os.chmod(root, 0o755)
    site = root / "site"
    shutil.copytree(Path(fastlinear.__file__).parent, site / "fastlinear",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("home", "tmp"):
        (root / name).mkdir()
    yield root
    _chmod_tree(root, True)
    shutil.rmtree(root, ignore_errors=True)


def _give(path: Path) -> None:
    """Make ``path`` belong to the user the child runs as."""
    if AS_ROOT:
        os.chown(path, NOBODY, NOBODY)


def _run(box: Path, *, as_user: bool = True, code: str = RUN_KERNEL, **env_extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NUMBA_CACHE_DIR", "XDG_", "FASTLINEAR_"))}
    env.update(PYTHONPATH=str(box / "site"), HOME=str(box / "home"), TMPDIR=str(box / "tmp"),
               EXPECT_PACKAGE=str(box / "site" / "fastlinear"), FASTLINEAR_COMPILE_NOTICE="0",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(env_extra)
    cmd = [sys.executable, "-c", code]
    if as_user and AS_ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv is missing: cannot drop root's permissions")
        cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=box)


def _compiled(result) -> int:
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("compiled")[-1])


def _files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()]


def _notices(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("fastlinear:")]


@pytest.mark.slow
def test_read_only_package_and_home_fall_back_to_a_private_temporary_cache(box):
    _chmod_tree(box / "site", False)
    _chmod_tree(box / "home", False)
    _give(box / "tmp")
    first = _run(box)
    assert _compiled(first) > 0
    notices = _notices(first)
    assert len(notices) == 1, first.stderr
    assert "NUMBA_CACHE_DIR" in notices[0] and "fastlinear-numba-" in notices[0]
    cached = _files(box / "tmp")
    assert any(p.suffix == ".nbi" for p in cached), cached
    # the next process loads what the first wrote, silently
    second = _run(box)
    assert _compiled(second) == 0
    assert _notices(second) == []


@pytest.mark.slow
def test_nothing_writable_runs_without_a_cache(box):
    _chmod_tree(box / "site", False)
    _chmod_tree(box / "home", False)
    _chmod_tree(box / "tmp", False)
    result = _run(box)
    assert _compiled(result) > 0
    notices = _notices(result)
    assert len(notices) == 1 and "not cached" in notices[0], result.stderr
    assert "NUMBA_CACHE_DIR" in notices[0]
    assert _files(box / "tmp") == [] and _files(box / "home") == []


@pytest.mark.slow
def test_a_temporary_cache_directory_of_another_user_is_never_used(box):
    """A directory someone else can write to could feed us their machine code."""
    _chmod_tree(box / "site", False)
    _chmod_tree(box / "home", False)
    os.chmod(box / "tmp", 0o777)
    planted = box / "tmp" / f"fastlinear-numba-{NOBODY if AS_ROOT else os.getuid()}"
    planted.mkdir()
    os.chmod(planted, 0o777)  # group/world-writable: refused even when it is ours
    result = _run(box)
    assert _compiled(result) > 0
    assert _files(planted) == []
    assert len(_notices(result)) == 1, result.stderr


@pytest.mark.slow
def test_a_complete_read_only_cache_is_loaded_not_rebuilt(box):
    # build the cache beside the package, as an installer would, then make everything read-only
    build = _run(box, as_user=False)
    assert _compiled(build) > 0
    _chmod_tree(box / "site", False)
    _chmod_tree(box / "home", False)
    _give(box / "tmp")
    result = _run(box)
    assert _compiled(result) == 0
    assert _notices(result) == [], result.stderr
    assert _files(box / "tmp") == [] and _files(box / "home") == []


@pytest.mark.slow
def test_an_unwritable_numba_cache_dir_falls_back(box):
    chosen = box / "chosen"
    chosen.mkdir()
    _chmod_tree(box / "site", False)
    _chmod_tree(box / "home", False)
    os.chmod(chosen, 0o555)
    _give(box / "tmp")
    result = _run(box, NUMBA_CACHE_DIR=str(chosen))
    assert _compiled(result) > 0
    notices = _notices(result)
    assert len(notices) == 1 and str(chosen) in notices[0], result.stderr
    assert _files(chosen) == []


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["index", "data", "both"])
def test_corrupt_cache_files_are_ignored_and_rewritten(box, damage):
    chosen = box / "chosen"
    assert _compiled(_run(box, as_user=False, NUMBA_CACHE_DIR=str(chosen))) > 0
    suffixes = {"index": (".nbi",), "data": (".nbc",), "both": (".nbi", ".nbc")}[damage]
    damaged = [p for p in _files(chosen) if p.suffix in suffixes]
    assert damaged
    for p in damaged:
        p.write_bytes(p.read_bytes()[:7] + b"\x00not a pickle")
    again = _run(box, as_user=False, NUMBA_CACHE_DIR=str(chosen))
    assert _compiled(again) > 0
    assert len(_notices(again)) == 1 and "unreadable" in _notices(again)[0], again.stderr
    # the rewritten files serve the next process
    third = _run(box, as_user=False, NUMBA_CACHE_DIR=str(chosen))
    assert _compiled(third) == 0 and _notices(third) == []


FULL_DISK = textwrap.dedent("""
    import errno
    from numba.core import caching
    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    caching.IndexDataCacheFile._open_for_write = full
""") + RUN_KERNEL


@pytest.mark.slow
def test_a_full_disk_does_not_fail_the_first_call(box):
    chosen = box / "chosen"
    result = _run(box, as_user=False, code=FULL_DISK, NUMBA_CACHE_DIR=str(chosen))
    assert _compiled(result) > 0
    notices = _notices(result)
    assert len(notices) == 1, result.stderr
    assert os.strerror(errno.ENOSPC) in notices[0] and "NUMBA_CACHE_DIR" in notices[0]
    assert [p for p in _files(chosen) if p.suffix in (".nbi", ".nbc")] == []


def test_other_libraries_numba_functions_keep_numbas_cache_rules(tmp_path, monkeypatch):
    """fastlinear's locator declines files outside the package: Numba's rules apply there."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    module = tmp_path / "other_lib_kernel.py"
    module.write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n"
                      "    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import other_lib_kernel

    cache = other_lib_kernel.twice._cache
    assert type(cache) is numba.core.caching.FunctionCache
    assert cache.cache_path == str(tmp_path / "__pycache__")
    assert not os.path.exists(cache.cache_path) or stat.S_ISDIR(os.stat(cache.cache_path).st_mode)


def test_fastlinear_kernels_use_fastlinears_locator():
    from fastlinear import _cache
    from fastlinear.kernels import grad_bias

    assert _cache._installed
    assert isinstance(grad_bias.grad_bias_serial._cache._impl.locator, _cache.FastlinearCacheLocator)
