"""Writing files so that a reader only ever sees the old file or the complete new one.

Every file fastlinear writes (model files, ``compare --json``/``--plot``, tuning tables) goes
through `atomic_write`: the data goes to a temporary file in the target's directory, is flushed to
disk, and is then moved over the target with `os.replace`, which POSIX and Windows both perform as
one step within a file system. An interrupt, a full disk or an exception while writing leaves the
target as it was and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def check_writable(path: str | os.PathLike) -> Path:
    """Check, before long work starts, that ``path`` can be written later.

    Returns the path as a `Path`. Raises `OSError` (with the path and the reason) if its
    directory does not exist, is not a directory, or cannot be written (a temporary file is
    created there and removed, which also catches read-only and special file systems), or if the
    path itself is a directory.
    """
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {str(target)!r}: it is a directory")
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {str(target)!r}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {str(target)!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {str(target)!r}: directory {str(parent)!r} is not writable")
    # os.access answers for the permission bits only: root passes it on a read-only or special file
    # system (/proc, a read-only mount), so create (and remove) the temporary file a write would use.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {str(target)!r}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(probe)
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success move it over ``path``.

    Args:
        path: the target file. Its directory must exist.
        mode: "wb" (default) or "w" (text, UTF-8).

    Yields:
        The open temporary file. Write everything to it inside the ``with`` block.

    Raises:
        ValueError: ``mode`` is not "wb" or "w".
        OSError: the directory is missing or unwritable, or writing fails (the target is then
            unchanged and no temporary file is left behind).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {str(target)!r}: {exc.strerror}") from None
    try:
        encoding = None if mode == "wb" else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
