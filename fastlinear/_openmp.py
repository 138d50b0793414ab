"""Keep PyTorch on its own OpenMP runtime when fastlinear is imported before torch.

Numba's "omp" threading layer links the system's GNU OpenMP (``libgomp.so.1.0.0``), and torch's
wheels bring their own copy (``torch/lib/libgomp.so.1``). Both carry the name ``libgomp.so.1``, and
the dynamic loader gives a library that asks for that name whichever copy is already loaded. So when
Numba's layer starts first, torch runs on the system's runtime, and some of its parallel operators
become far slower: ``torch.sqrt`` of a 256x256 float32 tensor took 3.9 ms instead of 26 us at 2
threads, an Adam step of a 64-256-256-10 network 8.3 ms instead of 0.46 ms, training 10 times slower
(measured with torch 2.13.0+cpu, numba 0.68.1). Loading torch's copy first, before Numba's layer
starts, gives torch its own runtime again, as when torch is imported first: `load_torch_runtime`
does that when torch is installed and not imported yet, without importing torch (about 1 ms).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

_loaded: ctypes.CDLL | None = None


def load_torch_runtime() -> str | None:
    """Load torch's bundled ``libgomp.so.1`` if torch is installed, not imported, and has one;
    return its path (None when nothing was loaded)."""
    global _loaded
    if _loaded is not None or "torch" in sys.modules or not sys.platform.startswith("linux"):
        return None
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "lib", "libgomp.so.1")
    if not os.path.exists(path):
        return None  # a build on another OpenMP runtime (or none): nothing to keep apart
    try:
        _loaded = ctypes.CDLL(path)
    except OSError:
        return None
    return path
