"""Every file fastlinear writes goes through `fastlinear._io`: the target is either the old file or
the complete new one, and a path that cannot be written is refused before any long work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastlinear._io import atomic_write, check_writable


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    with atomic_write(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["model.npz"]


@pytest.mark.parametrize("make", ["missing dir", "a directory", "a file as dir", "special fs"])
def test_unwritable_targets_are_refused_before_work_naming_the_path(tmp_path, make):
    target = {
        "missing dir": tmp_path / "nope" / "m.npz",
        "a directory": tmp_path,
        "a file as dir": tmp_path / "f" / "m.npz",
        "special fs": Path("/proc/fastlinear-test.npz"),
    }[make]
    (tmp_path / "f").write_text("")
    if make == "special fs" and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    with pytest.raises(OSError, match="fastlinear-test|nope|m.npz|is a directory"):
        check_writable(target)
    with pytest.raises(OSError):
        with atomic_write(target) as f:
            f.write(b"x")
