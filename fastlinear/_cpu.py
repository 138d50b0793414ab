"""Full-width (512-bit) vectors for fastlinear's own kernels, without touching anyone else's.

LLVM's tuning for several AVX-512 CPUs (Skylake-X to Ice Lake, for example) prefers 256-bit
vectors, which halves the peak of a register-blocked matrix micro-kernel. LLVM also reads a
per-function attribute, ``"prefer-vector-width"``, that overrides this preference for one
function. This module sets ``"prefer-vector-width"="512"`` on the functions Numba generates while
it compiles one of fastlinear's kernels (including the parallel-loop bodies Numba outlines from
them), and on nothing else:

* other libraries' Numba code, Numba's own helpers and Numba's process-wide settings
  (``numba.config.CPU_NAME``/``CPU_FEATURES``, part of every library's cache key) are unchanged;
* it works whenever fastlinear is imported, even after other Numba code has compiled;
* on a CPU without AVX-512 the attribute has no effect (LLVM never uses wider vectors than the
  CPU has).

``FASTLINEAR_NATIVE_VECTORS=0`` turns it off (kernels then follow LLVM's tuning), and it is off
when ``NUMBA_CPU_FEATURES`` itself states a vector-width preference (``prefer-256-bit`` or
``prefer-128-bit``): the user's explicit choice wins. Cached machine code built with and without
the preference is stored under different file names (see `fastlinear._cache`).

This hooks ``numba.core.codegen.CPUCodeLibrary.add_ir_module`` (Numba 0.68) and Numba's
``numba:compile`` event; when those are missing it does nothing and ``enabled`` is False.
"""

from __future__ import annotations

import os
import threading

from numba.core import config, event

_state = threading.local()


def _wanted() -> bool:
    setting = os.environ.get("FASTLINEAR_NATIVE_VECTORS", "").strip()
    if setting == "0":
        return False
    features = config.CPU_FEATURES or ""
    return not ("prefer-256-bit" in features or "prefer-128-bit" in features)


#: The attribute, in LLVM IR's syntax for a string function attribute.
ATTRIBUTE = '"prefer-vector-width"="512"'


class _Scope(event.Listener):
    """Tracks, per thread, whether the innermost compilation is one of fastlinear's kernels.

    Numba compiles the helpers a kernel calls (its own overloads of numpy functions, for example)
    as nested compilations with their own events, so those are not ours; the parallel-loop bodies
    it outlines from a kernel have no event and belong to the kernel."""

    def on_start(self, ev: event.Event) -> None:
        data = ev.data if isinstance(ev.data, dict) else {}
        module = getattr(getattr(data.get("dispatcher"), "py_func", None), "__module__", "") or ""
        stack = getattr(_state, "stack", None)
        if stack is None:
            stack = _state.stack = []
        stack.append(module == "fastlinear" or module.startswith("fastlinear."))

    def on_end(self, ev: event.Event) -> None:
        stack = getattr(_state, "stack", None)
        if stack:
            stack.pop()


def compiling_fastlinear() -> bool:
    """Whether the calling thread is inside the compilation of one of fastlinear's kernels."""
    stack = getattr(_state, "stack", None)
    return bool(stack and stack[-1])


#: Substrings of the (mangled) names of the functions that get the attribute: fastlinear's own
#: (Numba mangles the module path into the name) and the parallel-loop bodies outlined from them.
#: Runtime helpers that Numba happens to build during one of our compilations (its reference
#: counting functions, linked into every library's code later) are left alone.
_OURS = ("10fastlinear", "__numba_parfor_gufunc_")


def _install() -> bool:
    try:
        from llvmlite import ir
        from numba.core.codegen import CPUCodeLibrary
    except ImportError:  # pragma: no cover - depends on the Numba version
        return False
    original = getattr(CPUCodeLibrary, "add_ir_module", None)
    if original is None:  # pragma: no cover
        return False

    def add_ir_module(self, ir_module):
        if compiling_fastlinear():
            for fn in ir_module.functions:
                if (isinstance(fn, ir.Function) and not fn.is_declaration
                        and any(mark in fn.name for mark in _OURS)):
                    # FunctionAttributes.add() accepts only LLVM's enum attributes; a string
                    # attribute is written out verbatim from the set.
                    set.add(fn.attributes, ATTRIBUTE)
        return original(self, ir_module)

    event.register("numba:compile", _Scope())
    CPUCodeLibrary.add_ir_module = add_ir_module
    return True


#: Whether fastlinear's kernels get the 512-bit preference in this process.
enabled: bool = _wanted() and _install()


def live_target() -> dict:
    """What Numba's code generator targets in this process: CPU name, whether its features
    include AVX-512F, whether they state a vector-width preference, and whether fastlinear's
    per-function 512-bit preference is on. Creates Numba's code generator if none exists yet."""
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    _, cpu_name, features = codegen.magic_tuple()
    flags = features.split(",")
    return {
        "cpu_name": cpu_name,
        "avx512f": "+avx512f" in flags,
        "numba_prefers_256": "+prefer-256-bit" in flags,
        "fastlinear_512": enabled,
        "numba_cpu_settings": {"NUMBA_CPU_NAME": config.CPU_NAME,
                               "NUMBA_CPU_FEATURES": config.CPU_FEATURES},
    }


def vectors_512() -> bool:
    """Whether fastlinear's kernels are compiled with the 512-bit preference in this process: the
    code generator's CPU has AVX-512F and the per-function preference is on. (When it is off, LLVM's
    tuning for the CPU decides, which this cannot tell without compiling.)"""
    t = live_target()
    return t["avx512f"] and enabled
