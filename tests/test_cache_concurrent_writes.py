"""Processes writing one Numba cache directory at once take turns (`fastlinear._cache`).

Numba's own cache write picks a data-file number without a lock, so two processes adding
different signatures of one function at once can end up with an index entry that points at the
other's machine code. Here several processes save different keys into one index as fast as they
can, starting together; afterwards every key must load its own data.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from fastlinear._cache import LOCK_NAME, _TolerantIndexFile

STAMP = ("source", 1)

WRITER = textwrap.dedent("""
    import sys, time
    from fastlinear._cache import _TolerantIndexFile
    directory, who, count, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    index = _TolerantIndexFile(directory, "kernel", ("source", 1))
    time.sleep(max(0.0, start - time.time()))  # all writers begin together, after their imports
    for i in range(count):
        index.save((who, i), (who, i, who * 4000))
""")


def _payload(who: str, i: int) -> tuple:
    return (who, i, who * 4000)


def test_processes_saving_different_keys_at_once_each_keep_their_own(tmp_path):
    writers, count = [f"p{j}" for j in range(4)], 40
    start = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), who, str(count),
                               str(start)], stderr=subprocess.PIPE, text=True)
             for who in writers]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    index = _TolerantIndexFile(str(tmp_path), "kernel", STAMP)
    wrong = [(who, i) for who in writers for i in range(count)
             if index.load((who, i)) != _payload(who, i)]
    assert not wrong, f"{len(wrong)} of {len(writers) * count} entries load other data: {wrong[:5]}"
    assert len(index._load_index()) == len(writers) * count
    assert (tmp_path / LOCK_NAME).exists()


def test_saving_again_replaces_an_entry(tmp_path):
    index = _TolerantIndexFile(str(tmp_path), "kernel", STAMP)
    index.save("sig", (1,))
    index.save("other", (2,))
    index.save("sig", (3,))
    assert index.load("sig") == (3,) and index.load("other") == (2,)
    assert sorted(index._load_index().values()) == ["kernel.1.nbc", "kernel.2.nbc"]


def test_the_lock_file_is_shared_by_every_user_of_the_directory(tmp_path, monkeypatch):
    """Created writable by all (less the umask), like Numba's own files; a lock file this user
    may not write is locked through a read-only descriptor."""
    import os

    old = os.umask(0)
    try:
        _TolerantIndexFile(str(tmp_path), "kernel", STAMP).save("sig", (1,))
    finally:
        os.umask(old)
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o777 == 0o666
    real_open, modes = os.open, []

    def refuse_writing(path, flags, *args):
        modes.append(flags & os.O_ACCMODE)
        if path.endswith(LOCK_NAME) and flags & os.O_ACCMODE != os.O_RDONLY:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_writing)
    index = _TolerantIndexFile(str(tmp_path), "kernel", STAMP)
    index.save("other", (2,))
    assert os.O_RDONLY in modes
    assert index.load("other") == (2,) and index.load("sig") == (1,)
