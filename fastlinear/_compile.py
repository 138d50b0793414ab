"""Compilation: a one-line notice while kernels compile, and `warmup` to compile ahead of time.

Kernels compile lazily, on their first call with a given dtype, and Numba stores the machine code
on disk (``cache=True``), so only the first process on a machine pays the compile time; later
processes load the cached code in milliseconds. The first compile of a process prints one line to
standard error (set ``FASTLINEAR_COMPILE_NOTICE=0`` to silence it). Loading from the cache is not
a compile and prints nothing.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Iterable

import numpy as np
from numba.core import event

_lock = threading.Lock()
_compiles = 0
_noticed = False


class _CompileNotice(event.Listener):
    """Counts compilations of fastlinear's kernels and announces the first one."""

    def on_start(self, ev: event.Event) -> None:
        global _compiles, _noticed
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("fastlinear."):
            return
        with _lock:
            _compiles += 1
            first = not _noticed
            _noticed = True
        if first and os.environ.get("FASTLINEAR_COMPILE_NOTICE", "1") != "0":
            print(
                "fastlinear: compiling kernels for this machine (first use only; the machine code "
                "is cached on disk for later runs)...",
                file=sys.stderr,
                flush=True,
            )

    def on_end(self, ev: event.Event) -> None:
        pass


event.register("numba:compile", _CompileNotice())


def compile_count() -> int:
    """How many fastlinear kernels this process has compiled (loads from the cache excluded)."""
    return _compiles


#: (batch, in_features, out_features) of the problems `warmup` runs: one per shape class the
#: loop kernels treat differently (tiny, small, skinny, medium).
WARMUP_SHAPES = ((1, 16, 16), (32, 128, 128), (8, 784, 128), (4096, 256, 10), (256, 512, 512))


def warmup(
    dtypes: Iterable[str | np.dtype | type] = ("float32", "float64"),
    backends: Iterable[str] = ("loops",),
    shapes: Iterable[tuple[int, int, int]] = WARMUP_SHAPES,
) -> int:
    """Compile (or load from the disk cache) every kernel the given backends use, ahead of need.

    Runs forward and backward, with and without bias and with and without a fused activation, on
    small problems of each shape class, so that later calls of any size start at full speed.

    Args:
        dtypes: float32 and/or float64.
        backends: backend names (see `fastlinear.available_backends`).
        shapes: (batch, in_features, out_features) problems to run.

    Returns:
        The number of kernels compiled (0 when everything came from the cache).
    """
    from . import _validate as check
    from .functional import linear, linear_backward

    before = _compiles
    dts = [check.resolve_dtype(d) for d in dtypes]
    names = list(backends)
    rng = np.random.default_rng(0)
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
    return _compiles - before
