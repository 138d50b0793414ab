"""Where Numba keeps fastlinear's compiled kernels, and what happens when it cannot.

Every kernel is compiled with ``cache=True``, so Numba writes its machine code to disk and later
processes load it in milliseconds instead of compiling for about a minute. Numba's own rules for
where (``NUMBA_CACHE_DIR``, else ``__pycache__`` beside the source, else ``~/.cache/numba``) fail
in common set-ups: a package installed into a read-only image and run as another user makes
``cache=True`` raise "no locator available" when the kernel modules are imported; a full disk
makes the first call of every kernel raise ``OSError``; a corrupt or unreadable index file makes
the call raise whatever ``pickle`` raises; and a complete cache in a read-only ``__pycache__`` is
skipped in favour of recompiling into the home directory.

For the source files of this package only (other libraries' Numba code is left to Numba's rules),
this module chooses, per source directory:

* the directory kernels are loaded from and written to: the first writable one of
  ``NUMBA_CACHE_DIR`` (laid out as Numba lays it out), ``__pycache__`` beside the source,
  Numba's user-wide cache directory, and ``fastlinear-numba-<uid>`` in the system temporary
  directory (created with mode 0700; used only if it belongs to this user and nobody else can
  write to it, since loading machine code from a directory another user controls would run their
  code). If none is writable, nothing is written and kernels compile in every process.
* a read-only ``__pycache__`` beside the source, when there is one and it is not the writable
  choice: kernels found there (a cache built when the package was installed) are loaded from it
  before the writable directory is tried, so a complete read-only cache compiles nothing.

Several processes may write to one directory at once (the ranks of a job, two programs started
together, `fastlinear.warmup`'s compile processes): each write holds a lock on a file in the
directory and writes the machine code before the index entry that names it (Numba's own write does
neither, see `_TolerantIndexFile.save`).

A cache file that cannot be read or unpickled counts as missing (the index is then rewritten); a
write that fails (full disk, permissions changed underneath) stops writes for the rest of the
process instead of failing the call. Each of these prints one line to standard error, once per
process, saying what happened and that ``NUMBA_CACHE_DIR`` chooses the directory.

This uses Numba's cache-locator interface (``numba.core.caching``, as of Numba 0.68): a locator
class placed first in ``CacheImpl._locator_classes`` that declines every file outside this
package, and a subclass of Numba's cache for the functions it accepts. A user who sets
``NUMBA_CACHE_LOCATOR_CLASSES`` replaces that list and keeps Numba's behaviour.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import sys
import tempfile
import threading
from typing import Iterator

try:
    import fcntl
except ImportError:  # Windows: writes are not locked
    fcntl = None

from numba.core import caching, config

#: The package directory: files under it are ours.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: The file in each cache directory that writers lock (`_locked`).
LOCK_NAME = "fastlinear-cache.lock"

#: How to choose the directory, appended to every notice.
HOW_TO_CHOOSE = "set NUMBA_CACHE_DIR to a writable directory to choose where Numba caches kernels"

_lock = threading.Lock()
_noticed: set[str] = set()
_writes_failed = False
#: (source directory, disambiguator suffix) -> _Choice
_choices: dict[str, "_Choice"] = {}


def notice(kind: str, message: str) -> None:
    """Print ``message`` to standard error, once per process for each ``kind``."""
    with _lock:
        if kind in _noticed:
            return
        _noticed.add(kind)
    print(f"fastlinear: {message}; {HOW_TO_CHOOSE}", file=sys.stderr, flush=True)


def _writable(path: str) -> bool:
    """Whether ``path`` exists (or can be created) and a file can be created in it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _can_create_in(directory: str) -> bool:
    """Whether a file can be created in the existing ``directory`` (nothing is left behind)."""
    try:
        tempfile.TemporaryFile(dir=directory).close()
        return True
    except OSError:
        return False


def _private_temp_dir() -> str | None:
    """``fastlinear-numba-<uid>`` in the system temporary directory, created 0700, or None when it
    exists but belongs to another user or others may write to it (or cannot be created)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = os.path.join(tempfile.gettempdir(), f"fastlinear-numba-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != uid
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return None
    return path


def _user_wide_dir() -> str:
    """Numba's user-wide cache directory (``~/.cache/numba`` on Linux)."""
    from numba.misc.appdirs import AppDirs

    return AppDirs(appname="numba", appauthor=False).user_cache_dir


class _Choice:
    """Where the kernels of one source directory are read from and written to."""

    def __init__(self, source_dir: str) -> None:
        subpath = caching._CacheLocator.get_suitable_cache_subpath(
            os.path.join(source_dir, "x.py"))
        in_tree = os.path.join(source_dir, "__pycache__")
        # (label, path or a function giving it: the temporary one is created only if needed)
        candidates: list[tuple[str, object]] = []
        if config.CACHE_DIR:
            candidates.append(("NUMBA_CACHE_DIR", os.path.join(config.CACHE_DIR, subpath)))
        candidates.append(("beside the package", in_tree))
        primary = candidates[0][1]
        candidates.append(("Numba's user cache directory",
                           os.path.join(_user_wide_dir(), subpath)))

        def temp() -> str | None:
            base = _private_temp_dir()
            return None if base is None else os.path.join(base, subpath)

        candidates.append(("a private temporary directory", temp))
        self.write_dir: str | None = None
        self.tried: list[str] = []
        for label, path in candidates:
            if callable(path):
                path = path()
                if path is None:
                    self.tried.append(f"fastlinear-numba-<uid> in {tempfile.gettempdir()} "
                                      "(missing, not ours, or writable by others)")
                    continue
            if _writable(path):
                self.write_dir = path
                self.label = label
                break
            self.tried.append(f"{path} ({label})")
        self.fell_back = self.write_dir != primary
        # A read-only __pycache__ may hold a cache built at install time: read it first. (A
        # writable one that is not the choice, because NUMBA_CACHE_DIR is set, is left alone:
        # it may hold code compiled from other versions of the sources.)
        self.read_dir = (in_tree if self.write_dir != in_tree and os.path.isdir(in_tree)
                         and not _can_create_in(in_tree) else None)

    def explain(self) -> str:
        """One sentence: what could not be used and what is used instead."""
        tried = "; ".join(self.tried) or "none"
        if self.write_dir is None:
            return (f"no writable directory for Numba's cache (tried {tried}); kernels compiled "
                    "in this process are not cached")
        return f"cannot write Numba's cache in {tried}; caching kernels in {self.write_dir}"


def _choice_for(source_dir: str) -> _Choice:
    with _lock:
        choice = _choices.get(source_dir)
    if choice is None:
        choice = _Choice(source_dir)
        with _lock:
            choice = _choices.setdefault(source_dir, choice)
    return choice


def _in_package(path: str) -> bool:
    path = os.path.abspath(path)
    return path == PACKAGE_DIR or path.startswith(PACKAGE_DIR + os.sep)


#: Appended to each cache file's name: code compiled with and without fastlinear's vector-width
#: preference (`fastlinear._cpu`) must never be loaded in place of the other, and Numba's cache
#: key does not see a per-function preference.
DISAMBIGUATOR_SUFFIX = ""


class FastlinearCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba cache locator for the source files of this package (see the module docstring)."""

    def __init__(self, py_func, py_file: str, choice: _Choice) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self.choice = choice

    def get_cache_path(self) -> str:
        # Without a writable directory the path is only reported, never written to.
        return self.choice.write_dir or os.path.join(os.path.dirname(self._py_file), "__pycache__")

    def get_disambiguator(self) -> str:
        return str(self._lineno) + DISAMBIGUATOR_SUFFIX

    def ensure_cache_path(self) -> None:
        if self.choice.write_dir is None:
            raise OSError(f"no writable cache directory for {self._py_file}")
        super().ensure_cache_path()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not (_in_package(py_file) and os.path.exists(py_file)):
            return None
        return cls(py_func, py_file, _choice_for(os.path.dirname(os.path.abspath(py_file))))


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """Hold an exclusive lock (``flock``) on ``directory``/`LOCK_NAME` while the block runs, so
    that processes writing to one cache directory take turns; without ``fcntl`` (Windows), no
    lock. The file is created writable by all (less the umask), as Numba creates its cache
    files, so that other users who share the directory can lock it too; one that cannot be opened
    for writing is locked through a read-only descriptor (``flock`` takes either). Raises OSError
    if it cannot be opened at all."""
    if fcntl is None:
        yield
        return
    path = os.path.join(directory, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file in a directory we may write to
        fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _TolerantIndexFile(caching.IndexDataCacheFile):
    """An index/data file pair whose unreadable or corrupt files count as missing, and whose
    writes are safe when several processes write to one directory at once (`save`)."""

    def save(self, key, data):
        """Store ``data`` for ``key``, holding the directory's lock from reading the index to
        writing it, and writing the data file before the index that names it.

        Numba's own ``save`` reads the index, picks the first unused data-file number, writes the
        index and then the data, with no lock. Two processes adding different signatures of one
        function at once can both pick the same number, and the index then sends one signature
        to the other's machine code; and a process that loads between the index and the data
        write can read a stale data file left under that number by an older version of the
        source. Under the lock, with the data written first, neither can happen."""
        with _locked(self._cache_path):
            overloads = self._load_index()
            data_name = overloads.get(key)
            if data_name is not None:  # a new version of an entry: replace its data file
                self._save_data(data_name, data)
                return
            taken = set(overloads.values())
            data_name = next(name for name in map(self._data_name, itertools.count(1))
                             if name not in taken)
            self._save_data(data_name, data)
            overloads[key] = data_name
            self._save_index(overloads)

    def _load_index(self):
        try:
            return super()._load_index()
        except Exception as exc:  # noqa: BLE001  (pickle raises many types on a corrupt file)
            notice("unreadable", f"ignored an unreadable Numba cache index {self._index_path} "
                                 f"({type(exc).__name__}: {exc})")
            return {}

    def load(self, key):
        try:
            return super().load(key)
        except Exception as exc:  # noqa: BLE001
            notice("unreadable", f"ignored an unreadable Numba cache file in {self._cache_path} "
                                 f"({type(exc).__name__}: {exc}); the kernel is compiled again")
            return None


class _FastlinearCache:
    """Mixed into Numba's cache class for this package's functions: loads try the read-only
    directory first, and neither a failed load nor a failed write reaches the caller."""

    def _fastlinear_setup(self) -> None:
        locator = self._impl.locator
        choice = locator.choice
        base = self._impl.filename_base
        stamp = locator.get_source_stamp()
        self._cache_file = _TolerantIndexFile(self._cache_path, base, stamp)
        self._read_files = [self._cache_file] if choice.write_dir else []
        if choice.read_dir is not None:
            self._read_files.insert(0, _TolerantIndexFile(choice.read_dir, base, stamp))

    def _load_overload(self, sig, target_context):
        if not self._enabled:
            return None
        key = self._index_key(sig, target_context.codegen())
        for cache_file in self._read_files:
            data = cache_file.load(key)
            if data is None:
                continue
            try:
                return self._impl.rebuild(target_context, data)
            except Exception as exc:  # noqa: BLE001
                notice("unreadable", f"ignored unusable cached code in {cache_file._cache_path} "
                                     f"({type(exc).__name__}: {exc})")
        return None

    def _save_overload(self, sig, data):
        global _writes_failed
        choice = self._impl.locator.choice
        if choice.write_dir is None:
            notice("location", choice.explain())
            return
        if _writes_failed:
            return
        if choice.fell_back:
            notice("location", choice.explain())
        try:
            super()._save_overload(sig, data)
        except OSError as exc:
            _writes_failed = True
            notice("write", f"could not write Numba's cache in {choice.write_dir} ({exc}); "
                            "kernels compiled from now on in this process are not cached")


_subclasses: dict[type, type] = {}


def _adopt(cache) -> None:
    cls = type(cache)
    sub = _subclasses.get(cls)
    if sub is None:
        sub = _subclasses[cls] = type(cls.__name__, (_FastlinearCache, cls),
                                      {"__module__": __name__})
    cache.__class__ = sub
    cache._fastlinear_setup()


_installed = False


def install(disambiguator_suffix: str = "") -> bool:
    """Put the locator in place (idempotent). Must run before any kernel module is imported.

    Returns False, changing nothing, when Numba's caching module lacks the names this relies on
    (then Numba's own rules apply)."""
    global _installed, DISAMBIGUATOR_SUFFIX
    if _installed:
        return True
    classes = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    if not (isinstance(classes, list) and hasattr(caching, "_SourceFileBackedLocatorMixin")
            and hasattr(caching, "Cache")):
        return False
    DISAMBIGUATOR_SUFFIX = disambiguator_suffix
    original_init = caching.Cache.__init__

    def __init__(self, py_func, *args, **kwargs):
        original_init(self, py_func, *args, **kwargs)
        if isinstance(getattr(self._impl, "locator", None), FastlinearCacheLocator):
            _adopt(self)

    caching.Cache.__init__ = __init__
    classes.insert(0, FastlinearCacheLocator)
    _installed = True
    return True


def can_write() -> bool:
    """Whether this process can write compiled kernels to the disk cache: False when no writable
    directory was found for a kernel module imported so far, or a write failed. True where
    Numba's own rules apply (`install` declined)."""
    with _lock:
        choices = list(_choices.values())
    return not _writes_failed and all(c.write_dir is not None for c in choices)


def describe() -> dict:
    """What was chosen, per source directory of the package: for ``fastlinear info``."""
    with _lock:
        items = sorted(_choices.items())
    return {
        "installed": _installed,
        "writes_failed": _writes_failed,
        "dirs": {os.path.relpath(src, os.path.dirname(PACKAGE_DIR)): {
            "write": c.write_dir, "read_only": c.read_dir, "fell_back": c.fell_back}
            for src, c in items},
    }
