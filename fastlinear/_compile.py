"""Compilation: progress lines while kernels compile, and `warmup` to compile ahead of time.

Kernels compile lazily, on their first call with a given dtype, and Numba stores the machine code
on disk (``cache=True``, see `fastlinear._cache`), so only the first process on a machine pays the
compile time (13-22 s for the first `fastlinear train` on 2 cores, see the README); later processes
load the cached code in milliseconds. While fastlinear's kernels compile, standard error gets a
first line, then a progress line at most every `PROGRESS_EVERY_S` seconds of compiling (time spent
compiling in this process, not time since the first compile), for example (wrapped)::

    fastlinear: compiling kernels for this machine (first use only; later runs load them
        from the cache)...
    fastlinear: compiled 12 kernel functions in 31 s; 38 more are not cached yet
        (about 98 s at this rate, for those this run needs)

An estimate, not a bound: a run compiles only the kernels it calls (one dtype, the shapes it
meets), while the count is of every kernel function without any cached code; one cached for
one dtype and compiled for the other is counted among those compiled, not among those left. `warmup` and `compile_steps` (a model's
training steps, ``Sequential.warmup``) compile in several processes at once when something is not
cached; they print their own lines, one per group of kernels. Plain lines rather than a redrawn
status line, so that they read the same in a log and never collide with the program's own output.
``FASTLINEAR_COMPILE_NOTICE=0`` silences them. Loading from the cache is not a compile and prints
nothing; when nothing compiles, the cost is one event callback per Numba compile.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import sys
import tempfile
import threading
import time
from typing import Callable, Iterable, Iterator

import numpy as np
from numba.core import event

#: Seconds of compiling between two progress lines.
PROGRESS_EVERY_S = 5.0

_lock = threading.Lock()
_local = threading.local()
_compiles = 0
_started = False  # the first line was printed
_compile_s = 0.0  # seconds this process spent compiling fastlinear's kernels
_last_line_s = 0.0  # _compile_s at the last progress line
_cold: set[int] | None = None  # ids of kernel functions that had no cached code
_done: set[int] = set()


def _ours(dispatcher) -> bool:
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    return module.startswith("fastlinear.")


#: The modules that, with what they import, define fastlinear's kernels. Not listed:
#: ``fastlinear._blas_callback`` (OpenBLAS's jobs on Numba's pool), whose import compiles it;
#: its two functions count once fastlinear has set that pool up (`fastlinear._blas_pool`).
KERNEL_MODULES = ("fastlinear.backends", "fastlinear.nn")


def kernel_functions(load: bool = False) -> dict:
    """fastlinear's module-level Numba functions that have an on-disk cache, by qualified name:
    those of the modules imported so far, or, with ``load``, after importing `KERNEL_MODULES`.
    Helpers compiled only as part of their callers (``inline="always"``, no cache of their own)
    are left out: they never compile on their own."""
    import importlib

    from numba.core.caching import FunctionCache
    from numba.core.dispatcher import Dispatcher

    if load:
        for name in KERNEL_MODULES:
            importlib.import_module(name)
    found = {}
    for name, module in sorted(sys.modules.items()):
        if module is None or not name.startswith("fastlinear."):
            continue
        for attr, value in list(vars(module).items()):
            if (isinstance(value, Dispatcher) and getattr(value, "__module__", None) == name
                    and isinstance(getattr(value, "_cache", None), FunctionCache)):
                found[f"{name}.{attr}"] = value
    return found


def cache_files(dispatcher) -> list:
    """Numba's cache-file objects that ``dispatcher`` reads, in order (`fastlinear._cache` may
    read a read-only directory before the writable one); each has ``_cache_path``."""
    cache = dispatcher._cache
    return getattr(cache, "_read_files", None) or [cache._cache_file]


def is_cached(dispatcher) -> bool:
    """Whether Numba's cache holds machine code for ``dispatcher``'s current source (for any
    signature). Numba's cache object has no public API for this: ``_load_index()`` returns {}
    when the index is missing or was written for another version of the source file."""
    return any(f._load_index() for f in cache_files(dispatcher))


def _uncached_kernels() -> set[int]:
    """ids of the `kernel_functions` whose cache holds nothing for their current source (read
    once, at the first compile of a process)."""
    cold = set()
    for value in kernel_functions().values():
        try:
            warm = is_cached(value)
        except Exception:  # noqa: BLE001  (a count for a message: never fail a compile)
            warm = False
        if not warm:
            cold.add(id(value))
    return cold


def _say(text: str) -> None:
    if os.environ.get("FASTLINEAR_COMPILE_NOTICE", "1") != "0":
        print(f"fastlinear: {text}", file=sys.stderr, flush=True)


_interrupted = False


def interrupt_handler(signum, frame) -> None:
    """SIGINT handler of the command line: raises KeyboardInterrupt, as Python's own does, and
    remembers it. An interrupt that lands while LLVM calls back into Python during a compile
    (a ctypes callback) is swallowed there: Python prints "Exception ignored" and compiling goes
    on; the next compile to start or end then raises it again (`_raise_pending`)."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _raise_pending() -> None:
    global _interrupted
    if _interrupted:
        _interrupted = False
        raise KeyboardInterrupt


def interrupt_pending() -> bool:
    """Whether an interrupt was caught by `interrupt_handler` and not yet raised again."""
    return _interrupted


class _Uncached(Exception):
    """Raised, while `_probe` runs, by the first fastlinear kernel that would compile (before it
    starts: a kernel found in the disk cache raises nothing)."""


@contextlib.contextmanager
def _probe() -> Iterator[None]:
    """In this thread, for the block: a kernel that is not in the disk cache raises `_Uncached`
    instead of compiling."""
    _local.probing = True
    try:
        yield
    finally:
        _local.probing = False


class _CompileProgress(event.Listener):
    """Counts compilations of fastlinear's kernels and reports progress (see the module doc).

    Time is counted as seconds spent compiling (from the start to the end of each outermost
    compile in a thread), not since the first compile: a program that computes between lazy
    compiles would otherwise see its computing reported, and extrapolated, as compile time."""

    def on_start(self, ev: event.Event) -> None:
        global _compiles, _started, _cold
        _raise_pending()
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        if not _ours(dispatcher):
            return
        if getattr(_local, "probing", False):
            raise _Uncached(dispatcher)
        stack = _local.__dict__.setdefault("compiling", [])
        stack.append((id(dispatcher), time.perf_counter()))
        with _lock:
            _compiles += 1
            first, _started = not _started, True
        if first:
            _say("compiling kernels for this machine (first use only; later runs load them from "
                 "the cache)...")
            cold = _uncached_kernels()
            with _lock:
                _cold = cold

    def on_end(self, ev: event.Event) -> None:
        global _compile_s, _last_line_s
        _raise_pending()
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        stack = getattr(_local, "compiling", None)
        # not ours, stopped by `_probe`, or interrupted before on_start counted it
        if not _ours(dispatcher) or not stack or stack[-1][0] != id(dispatcher):
            return
        began = stack.pop()[1]
        now = time.perf_counter()
        with _lock:
            _done.add(id(dispatcher))
            if not stack:  # an outermost compile ended: its time is spent
                _compile_s += now - began
            # the outermost compile still running counts for what it has spent so far
            spent = _compile_s + (now - stack[0][1] if stack else 0.0)
            if spent - _last_line_s < PROGRESS_EVERY_S:
                return
            _last_line_s = spent
            done = len(_done)
            left = len(_cold - _done) if _cold is not None else None
        line = f"compiled {done} kernel function{'s' if done != 1 else ''} in {spent:.0f} s"
        if left:
            line += (f"; {left} more are not cached yet (about {spent / done * left:.0f} s "
                     "at this rate, for those this run needs)")
        _say(line)


event.register("numba:compile", _CompileProgress())


def compile_count() -> int:
    """How many fastlinear kernels this process has compiled (loads from the cache excluded)."""
    return _compiles


#: (batch, in_features, out_features) of the problems `warmup` runs: one per shape class the
#: loop kernels treat differently (tiny, small, skinny, medium).
WARMUP_SHAPES = ((1, 16, 16), (32, 128, 128), (8, 784, 128), (4096, 256, 10), (256, 512, 512))


#: The kernel groups `warmup` can compile in separate processes at once: the packed GEMM (one
#: driver for all three ops) and each op's other kernels (grad_weight's with grad_bias), since
#: Numba compiles a function's callees as part of its first compile and these groups share few.
GROUPS = ("packed", "grad_weight", "forward", "grad_input", "activation_grad")  # longest first

#: Backends whose kernels are Numba functions (auto runs loops' kernels where it does not run
#: BLAS); the others compile nothing worth a process of its own.
_COMPILING = {"loops": "loops", "auto": "loops", "naive": "naive"}


def warmup(
    dtypes: Iterable[str | np.dtype | type] = ("float32", "float64"),
    backends: Iterable[str] = ("loops",),
    shapes: Iterable[tuple[int, int, int]] = WARMUP_SHAPES,
    jobs: int | None = None,
) -> int:
    """Compile (or load from the disk cache) every kernel the given backends use, ahead of need.

    Runs forward and backward (and the bias gradient alone), with and without bias and with and
    without a fused activation, on small problems of each shape class, so that later calls of any
    size start at full speed. It
    runs inside ``fl.threads(2)`` (1 where Numba's pool has one thread), so that the parallel
    variants compile too: while it runs, every pool (Numba in this thread, BLAS, torch) uses that
    count and the adaptive default pauses; each is restored when it returns.

    When some kernel it runs has no cached machine code yet and ``jobs`` > 1, the kernels are
    first compiled in up to ``jobs`` fresh Python processes at once, one `GROUPS` entry and dtype
    each, which write them to the disk cache; this process then loads them from there (and
    compiles here whatever a process failed to). With everything cached, or with no writable
    cache directory (`fastlinear._cache`), no process starts.
    Numba compiles on one core, and the groups share little work, so this divides the first
    compile by up to the number of cores (measured in the README: 1.4-2x on 2 cores). Each
    finished group prints a line on stderr (silenced by ``FASTLINEAR_COMPILE_NOTICE=0``).

    Args:
        dtypes: float32 and/or float64 (one, as a name, numpy dtype or type, or an iterable).
        backends: backend names (see `fastlinear.available_backends`; one, or an iterable).
        shapes: (batch, in_features, out_features) problems to run.
        jobs: how many compile processes to run at once (default: the number of cores this
            process may run on); 1 compiles everything in this process.

    Returns:
        The number of kernel functions compiled in this process: 0 when everything came from the
        cache, whether it was there before or the compile processes put it there, except that
        the callback that runs BLAS on Numba's pool (`fastlinear._blas_pool`), needed in every
        process, compiles here before the processes start.

    Raises:
        TypeError: an unsupported dtype, or ``jobs`` not an int.
        ValueError: an unknown backend, a shape that is not three ints >= 1, or ``jobs`` < 1.
        KeyboardInterrupt: on an interrupt, after stopping the compile processes.
    """
    import numba

    from . import _cache, _threads
    from . import _validate as check
    from .backends import get_backend
    from .functional import linear, linear_backward

    before = _compiles
    # one name alone is one item, not a sequence of letters
    one = isinstance(dtypes, (str, np.dtype, type))
    dts = [check.resolve_dtype(d) for d in ([dtypes] if one else dtypes)]
    names = [backends] if isinstance(backends, str) else list(backends)
    for name in names:
        get_backend(name)  # unknown names raise before anything runs
    jobs = _threads.available_cores() if jobs is None else _jobs(jobs)
    shapes = [_shape(s) for s in shapes]
    compiling = sorted({_COMPILING[n] for n in names if n in _COMPILING})

    def runs() -> None:
        # at least 2 threads where the pool has them: some kernels run a serial variant on one
        # thread (the same bits), and the parallel one must be compiled too
        with _threads.threads(min(2, numba.config.NUMBA_NUM_THREADS)):
            _warmup_runs(dts, names, shapes, np.random.default_rng(0), linear, linear_backward)

    if jobs > 1 and compiling and _cache.can_write():  # what they compile must reach us
        from . import _blas_pool

        _blas_pool.install()  # compiles BLAS's callback here, before the processes would each
        units = [(str(dt), group) for dt in dts for group in GROUPS
                 if not _group_cached(str(dt), group, compiling, shapes)]
        if units:
            _compile_in_processes(units, compiling, shapes, jobs)
    runs()
    return _compiles - before


def _jobs(jobs: object) -> int:
    if isinstance(jobs, bool):
        raise TypeError("jobs must be an int, got bool")
    try:
        jobs = operator.index(jobs)  # int or numpy integer
    except TypeError:
        raise TypeError(f"jobs must be an int, got {type(jobs).__name__}") from None
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return jobs


def _shape(shape: object) -> tuple[int, int, int]:
    """(batch, in_features, out_features) as ints >= 1, or ValueError naming the shape."""
    try:
        n, k, m = (operator.index(v) for v in shape)
    except (TypeError, ValueError):
        raise ValueError(f"each shape must be (batch, in_features, out_features) as three ints, "
                         f"got {shape!r}") from None
    if min(n, k, m) < 1:
        raise ValueError(f"each side of a shape must be >= 1, got {shape!r}")
    return n, k, m


def _warmup_runs(dts, names, shapes, rng, linear, linear_backward) -> None:
    from .backends import get_backend

    for dt in dts:
        for n, k, m in shapes:
            x = rng.standard_normal((n, k)).astype(dt)
            w = rng.standard_normal((m, k)).astype(dt)
            b = rng.standard_normal(m).astype(dt)
            dy = rng.standard_normal((n, m)).astype(dt)
            for name in names:
                for bias in (b, None):
                    for activation in (None, "relu"):
                        y = linear(x, w, bias, activation=activation, backend=name)
                        linear_backward(dy, x, w, bias=bias is not None, activation=activation,
                                        y=y, backend=name)
                # the bias gradient alone (auto runs it beside a BLAS weight gradient)
                get_backend(name).grad_bias(np.empty(m, dt), dy, dt.type(1), False)


def _run_group(dtype: str, group: str, backends: list[str],
               shapes: list[tuple[int, int, int]]) -> None:
    """Call the kernels of one `GROUPS` entry the way `_warmup_runs` reaches them: with and
    without bias, with and without an activation. The op groups leave out the shapes at which
    loops runs the op on the packed GEMM; "packed" runs just those."""
    import numba

    from . import _threads
    from .activations import CODES
    from .backends import get_backend, loops

    dt = np.dtype(dtype)
    rng = np.random.default_rng(0)
    relu = CODES["relu"]
    scale = dt.type(1)
    ops = ("forward", "grad_weight", "grad_input") if group == "packed" else (group,)
    with _threads.threads(min(2, numba.config.NUMBA_NUM_THREADS)):
        for n, k, m in shapes:
            x, w, dy, y = (rng.standard_normal(s).astype(dt)
                           for s in ((n, k), (m, k), (n, m), (n, m)))
            for name in backends:
                be = get_backend(name)
                for op in ops:
                    packed = (name == "loops" and op != "activation_grad"
                              and loops.runs_packed(op, dt.itemsize, n, k, m))
                    if packed != (group == "packed"):
                        continue
                    for db in (np.empty(m, dt), None):
                        if op == "forward":
                            for act in (0, relu):
                                be.forward(np.empty((n, m), dt), x, w, db, act)
                        elif op == "grad_weight":
                            be.grad_weight(np.empty((m, k), dt), db, dy, x, scale, False)
                        elif op == "activation_grad":
                            be.activation_grad(np.empty((n, m), dt), db, dy, y, relu, scale,
                                               False)
                        elif db is None:  # grad_input has no bias variant
                            be.grad_input(np.empty((n, k), dt), dy, w)
                if group == "grad_weight":  # the bias gradient alone, at every shape
                    be.grad_bias(np.empty(m, dt), dy, scale, False)


def _group_cached(dtype: str, group: str, backends: list[str],
                  shapes: list[tuple[int, int, int]]) -> bool:
    """Whether every kernel `_run_group` calls is in the disk cache (those that are get loaded)."""
    try:
        with _probe():
            _run_group(dtype, group, backends, shapes)
    except _Uncached:
        return False
    return True


#: The parts of a training step that `compile_steps` spreads over processes, the one that goes to
#: another process first.
STEP_PARTS = ("weight_grad", "input_grad", "forward")


def step_layers(model, need_input_grad: bool = False) -> list[dict]:
    """The dense layers of a `fastlinear.nn.Sequential` as `compile_steps` takes them: what each
    layer's kernels are called with (features, dtype, backend, activation code, bias, reduction,
    and whether a step computes its input gradient; a backward with ``need_input_grad`` False
    skips the first layer's). Other modules of the model are left out (they compile on first
    use)."""
    from .nn.dense import Dense

    layers = []
    for i, (step, _) in enumerate(model._stages):
        if isinstance(step, Dense):
            layer = step.layer
            layers.append({"in_features": layer.in_features, "out_features": layer.out_features,
                           "dtype": layer.dtype.name, "backend": layer.backend, "act": step._act,
                           "bias": layer.bias is not None, "reduction": layer.reduction,
                           "input_grad": bool(need_input_grad or i > 0)})
    return layers


def _run_steps(layers: list[dict], rows: list[int], parts: Iterable[str], threads: int) -> None:
    """Call the kernels that training steps of ``layers`` (`step_layers`) call at each batch size
    in ``rows``, on zero-filled arrays and as ``fastlinear._dispatch`` calls them, at ``threads``
    threads: ``"forward"`` the forward, ``"weight_grad"`` the activation gradient and the weight
    and bias gradients, ``"input_grad"`` the input gradient (see `STEP_PARTS`)."""
    from . import _threads
    from ._dispatch import run_backward, run_forward
    from .backends import get_backend

    parts = set(parts)
    with _threads.threads(threads):
        for n in rows:
            for layer in layers:
                dt = np.dtype(layer["dtype"])
                be = get_backend(layer["backend"])
                k, m, act = layer["in_features"], layer["out_features"], layer["act"]
                x, w, y, dy = (np.zeros(s, dt) for s in ((n, k), (m, k), (n, m), (n, m)))
                db = np.zeros(m, dt) if layer["bias"] else None
                if "forward" in parts:
                    run_forward(be, y, x, w, db, act)
                if "weight_grad" in parts:  # the backward without its input gradient
                    run_backward(be, dy, x, w, None, np.empty((m, k), dt), db,
                                 layer["reduction"], False, y, act, np.empty((n, m), dt))
                if "input_grad" in parts and layer["input_grad"]:  # its last call
                    be.grad_input(np.empty((n, k), dt), dy, w)


def compile_steps(layers: list[dict], rows: Iterable[int], jobs: int) -> None:
    """Compile (or load from the disk cache) the kernels that training steps of ``layers``
    (`step_layers`) call at the batch sizes ``rows``, ahead of the first step.

    On a cold cache with ``jobs`` >= 2 and a writable cache directory (`fastlinear._cache`), they
    compile here and in ``jobs`` - 1 other processes at once (`STEP_PARTS`: with 2 jobs the
    weight gradients compile in another process while this one compiles the forward and the
    input gradients); then this process loads what the others compiled from the disk cache and
    compiles whatever one of them failed to. Otherwise everything compiles (or loads) here. The optimizer's kernels and modules other
    than the dense layers compile on first use. Layers whose backend compiles no kernels (blas,
    torch) are skipped. The calls run at the calling thread's thread count (Numba keeps one per
    thread), as steps in this thread will, so that the serial and parallel variants compiled are
    the ones they reach; steps run at another count may reach variants not compiled yet.

    Raises:
        KeyboardInterrupt: on an interrupt, after stopping the other processes.
    """
    from . import _blas_pool, _cache, _threads

    rows = sorted({int(r) for r in rows if r > 0})
    layers = [layer for layer in layers if layer["backend"] in _COMPILING]
    if not rows or not layers:
        return
    threads = _threads.get_num_threads()  # the steps' count: the variants they will reach
    if jobs >= 2 and _cache.can_write():  # what the others compile must reach this process
        try:
            with _probe():
                _run_steps(layers, rows, STEP_PARTS, threads)
            return  # all cached (and now loaded)
        except _Uncached:
            pass
        _blas_pool.install()  # here, before the other processes would each compile it
        away = list(STEP_PARTS[:min(jobs - 1, len(STEP_PARTS) - 1)])
        here = [p for p in STEP_PARTS if p not in away]
        units = [(f"{part.replace('_', ' ')} kernels of the layers",
                  {"layers": layers, "rows": rows, "parts": [part], "threads": threads})
                 for part in away]
        _run_processes(units, jobs, meanwhile=lambda: _run_steps(layers, rows, here, threads))
        # load what the others compiled, and compile here what one of them failed to
        _run_steps(layers, rows, away, threads)
        return
    _run_steps(layers, rows, STEP_PARTS, threads)


def _group_main() -> None:
    """Entry point of a compile process (`_run_processes`): the JSON argument holds either a
    `GROUPS` entry (dtype, group, backends and shapes) or a part of some training steps (layers,
    rows and parts, see `compile_steps`), and the parent's process id. The process ends itself
    when its parent is gone (killed, say, by SIGTERM, which runs no clean-up there)."""
    spec = json.loads(sys.argv[1])

    def watch(parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)  # the parent died: nobody waits for this compile

    threading.Thread(target=watch, args=(spec["parent"],), daemon=True).start()
    if "layers" in spec:
        _run_steps(spec["layers"], spec["rows"], spec["parts"], spec["threads"])
    else:
        _run_group(spec["dtype"], spec["group"], spec["backends"],
                   [tuple(s) for s in spec["shapes"]])


def _compile_in_processes(units: list[tuple[str, str]], backends: list[str],
                          shapes: list[tuple[int, int, int]], jobs: int) -> None:
    """Run `_run_group` for each (dtype, group) of ``units`` in fresh interpreters, at most
    ``jobs`` at once; each writes what it compiles to the disk cache. A process that fails is
    reported and otherwise ignored (the caller compiles what is still missing)."""
    _run_processes([(f"{group} kernels ({dtype})",
                     {"dtype": dtype, "group": group, "backends": backends, "shapes": shapes})
                    for dtype, group in units], jobs)


def _run_processes(units: list[tuple[str, dict]], jobs: int,
                   meanwhile: Callable[[], None] | None = None) -> None:
    """Run each (label, spec) of ``units`` in a fresh interpreter (`_group_main` reads the spec),
    at most ``jobs`` at once, and ``meanwhile`` (if given) in this process after the first ones
    have started; while it runs, at most ``jobs`` - 1 processes do. Each process writes what it
    compiles to the disk cache. A process that fails is reported by its label and otherwise
    ignored (the caller compiles what is still missing)."""
    import subprocess

    import numba

    # The child imports from exactly this process's sys.path (given as its arguments after the
    # spec, set before anything but the built-in sys is imported): the same fastlinear, numpy
    # and standard library. Python's own start would put the working directory first, where a
    # folder named like a module (another copy of fastlinear, a numpy.py) would shadow it; and
    # PYTHONSAFEPATH keeps it off the path while Python starts (3.11+).
    env = dict(os.environ, FASTLINEAR_COMPILE_NOTICE="0", PYTHONSAFEPATH="1")
    if numba.config.CACHE_DIR:  # set in this process (or from NUMBA_CACHE_DIR): the same there
        env["NUMBA_CACHE_DIR"] = numba.config.CACHE_DIR
    path = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    code = ("import sys; sys.path[:] = sys.argv[2:]; "
            "from fastlinear._compile import _group_main; _group_main()")
    pending = list(units)
    running: dict[subprocess.Popen, tuple] = {}
    start = time.perf_counter()
    finished = 0
    here = meanwhile is not None
    jobs = min(jobs, len(units) + here)
    global _started
    with _lock:
        first, _started = not _started, True
    if here:
        others = jobs - 1
        at_once = f"here and in {others} other process{'es' if others != 1 else ''} at once"
    else:
        at_once = f"in {jobs} processes at once" if jobs > 1 else "in another process"
    _say(f"compiling kernels for this machine {at_once} (first use only; later runs load them "
         "from the cache)..." if first else f"compiling the other kernels {at_once}...")
    try:
        while pending or running or meanwhile is not None:
            # while this process compiles too, it takes one of the jobs
            while pending and len(running) < jobs - (meanwhile is not None):
                label, spec = pending.pop(0)
                spec = json.dumps({**spec, "parent": os.getpid()})
                log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe blocks
                try:
                    proc = subprocess.Popen([sys.executable, "-c", code, spec, *path], env=env,
                                            stdout=subprocess.DEVNULL, stderr=log)
                except OSError as exc:  # the others would fail alike
                    log.close()
                    left = len(pending) + 1
                    _say(f"could not start a compile process ({exc}); the kernels of the {left} "
                         f"group{'s' if left != 1 else ''} not started compile in this process "
                         "instead")
                    pending.clear()
                    break
                running[proc] = (label, log)
            if meanwhile is not None:
                work, meanwhile = meanwhile, None
                work()
                continue
            if not running:
                break
            proc = _wait_any(running)
            label, log = running.pop(proc)
            log.seek(0)
            err = log.read()
            log.close()
            finished += 1
            elapsed = time.perf_counter() - start
            if proc.returncode == 0:
                _say(f"compiled the {label}: {finished} of {len(units)} groups done after "
                     f"{elapsed:.0f} s")
            else:
                last = err.strip().splitlines()[-1] if err.strip() else "no message"
                _say(f"the process compiling the {label} failed (exit code {proc.returncode}: "
                     f"{last}); they compile in this process instead")
        _after_processes()
    finally:
        for proc, (_, log) in running.items():  # an interrupt: stop the others (the cache
            proc.kill()                           # holds only whole entries)
            proc.wait()
            log.close()


def _after_processes() -> None:
    """Keep this process's progress estimate true after compile processes ran: the kernels they
    cached are no longer to come."""
    global _cold
    cold = _uncached_kernels()
    with _lock:
        if _cold is not None:
            _cold = cold


def _wait_any(running: dict) -> object:
    """The first of the running processes to end."""
    while True:
        for proc in running:
            if proc.poll() is not None:
                return proc
        time.sleep(0.05)
