"""Packing buffers, allocated once per size class and reused across calls, with a bounded size.

Allocating the packing buffers on every call was a large loss in the measurements behind this
package, so each Python thread keeps its own buffers per dtype (`threading.local`: two Python
threads calling a kernel at once never share a buffer); every buffer starts on a 64-byte boundary
(`fastlinear.kernels._scratch`). The per-thread result tiles have a fixed size (one MR x NR tile
per Numba worker, indexed by ``numba.get_thread_id()``). The packed A buffer grows to the next
power of two of what a call needs and is kept, up to `KEEP_BYTES`; a call that needs more gets a
buffer of its own, freed when the call returns, so one large batch does not pin memory for good (a
1 GiB forward used to keep 1 GiB here). The packed B block, shared by all threads (KC x N: 4 KiB
per output column for either dtype), comes from `fastlinear.kernels._scratch`, under the same cap.

What a packed call needs for A is bounded too: the forward and input-gradient products pack at
most `MC` rows at a time (``MC * KC`` elements, 8 MiB for either dtype; see `row_blocks`), so
their peak is their inputs and outputs plus at most 8 MiB and the packed B block. The weight
gradient packs all ``out_features`` rows of dy.T for one k-block: ``out_features * KC`` elements,
4 KiB per output feature (16 MiB for 4096 outputs), on top of its inputs and outputs. The forward
and input gradient at batches up to ``_api.W_IN_TILE_ROWS`` (at most MC rows of A, packed in one
piece) pack w in their tiles instead: a B buffer of at most 1 MiB per thread of the call for
either dtype (256 columns x KC; ``_api.in_tile_b``) in place of the KC x N block.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from ..._memory import empty_aligned
from ._micro import MICRO

#: Reduction (k) block: one packed A panel (MR x KC) stays in the 48 KB L1 cache, one B block
#: (KC x NC) in the L2 cache; the same number of bytes for both dtypes.
KC = {np.dtype(np.float32): 1024, np.dtype(np.float64): 512}
#: Rows of C (and of A) per driver call in the row-blocked products: a multiple of every MR (8),
#: so the row panels, hence every result bit, are the same as in one call over all rows. Packing
#: B again for each block costs 1 / MC of the multiply-adds (0.05%).
MC = 2048
#: The largest packed A buffer kept between calls (bytes): MC * KC elements of either dtype, so
#: the row-blocked products always reuse it.
KEEP_BYTES = 8 << 20


def row_blocks(m: int) -> list[slice]:
    """Consecutive slices of at most `MC` rows that cover ``m`` rows."""
    return [slice(i, min(m, i + MC)) for i in range(0, m, MC)]


@dataclass
class Workspace:
    """Buffers for one dtype in one Python thread."""

    mr: int
    nr: int
    kc: int
    apack: np.ndarray  # 1-D, grows
    tiles: np.ndarray  # (threads, mr * nr)

    def packed_a(self, m: int) -> np.ndarray:
        """An A buffer for ``m`` rows: the kept one, grown (to a power of two, at most
        `KEEP_BYTES`) if needed, or, beyond `KEEP_BYTES`, a new one that is not kept."""
        need = -(-m // self.mr) * self.mr * self.kc
        itemsize = self.apack.dtype.itemsize
        if need * itemsize > KEEP_BYTES:
            return empty_aligned(need, self.apack.dtype)
        if self.apack.size < need:
            size = min(1 << (need - 1).bit_length(), KEEP_BYTES // itemsize)
            self.apack = empty_aligned(size, self.apack.dtype)
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
        mr, nr = MICRO[dtype]
        kc = KC[dtype]
        threads = numba.config.NUMBA_NUM_THREADS
        ws = spaces[dtype] = Workspace(
            mr, nr, kc,
            apack=empty_aligned(0, dtype),
            # each worker's tile is MR x NR elements, a multiple of 64 bytes: every row is aligned
            tiles=empty_aligned(threads * mr * nr, dtype).reshape(threads, mr * nr),
        )
    return ws
