"""Packing buffers, allocated once per size class and reused across calls.

Allocating the packing buffers on every call was a large loss in the measurements behind this
package, so each Python thread keeps its own buffers per dtype (`threading.local`: two Python
threads calling a kernel at once never share a buffer). The per-thread B buffers and result
tiles have a fixed size (one row per Numba worker, indexed by ``numba.get_thread_id()``); the
packed A buffer grows to the next power of two of what a call needs and is then kept, so a
training loop over fixed shapes allocates nothing after its first step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from ._compile import MICRO

#: Reduction (k) block: one packed A panel (MR x KC) stays in the 48 KB L1 cache, one B block
#: (KC x NC) in the L2 cache; the same number of bytes for both dtypes.
KC = {np.dtype(np.float32): 1024, np.dtype(np.float64): 512}
#: Column block of C handled by one thread per k-block (a multiple of both NR).
NC = 256


@dataclass
class Workspace:
    """Buffers for one dtype in one Python thread."""

    mr: int
    nr: int
    kc: int
    nc: int
    apack: np.ndarray  # 1-D, grows
    bpack: np.ndarray  # (threads, kc * nc)
    tiles: np.ndarray  # (threads, mr * nr)

    def packed_a(self, m: int) -> np.ndarray:
        """The A buffer, grown (to a power of two) if ``m`` rows need more than it holds."""
        need = -(-m // self.mr) * self.mr * self.kc
        if self.apack.size < need:
            self.apack = np.empty(1 << (need - 1).bit_length(), dtype=self.apack.dtype)
        return self.apack


_local = threading.local()


def workspace(dtype) -> Workspace:
    """This Python thread's workspace for ``dtype`` (created on first use)."""
    dtype = np.dtype(dtype)
    spaces = getattr(_local, "spaces", None)
    if spaces is None:
        spaces = _local.spaces = {}
    ws = spaces.get(dtype)
    if ws is None:
        _, mr, nr = MICRO[dtype]
        kc = KC[dtype]
        threads = numba.config.NUMBA_NUM_THREADS
        ws = spaces[dtype] = Workspace(
            mr, nr, kc, NC,
            apack=np.empty(0, dtype),
            bpack=np.empty((threads, kc * NC), dtype),
            tiles=np.empty((threads, mr * nr), dtype),
        )
    return ws
