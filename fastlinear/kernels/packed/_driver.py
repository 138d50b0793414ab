"""The blocked driver shared by the three products: C (+)= A @ B with packed operands.

C is (M, N), A is (M, K), B is (K, N), each given as a C-contiguous source array plus how to read
it (see `_pack`). Loop order (Goto / van de Geijn, with the roles measured best here):

    for each k-block of KC steps (serial, in order):
        pack all of A's MR-row panels for this k-block           (parallel over panels)
        for each NC-column block of C                            (parallel over blocks)
            pack its B block (KC x NC) into this thread's buffer
            for each MR-row panel of A, for each NR-column panel of the B block:
                micro-kernel -> MR x NR tile -> stored into C with the k-block's store mode

A k-block larger than the usual L2-sized choice pays off because each k-block reads and writes
all of C once (the read-modify-write cost ~27% at small KC). Every element of C belongs to one
(column block, row panel) pair, handled by one thread, and is summed over k-blocks in order: the
result does not depend on the thread count (block sizes never do either).

Store modes: the first k-block writes C (or adds to it when ``accumulate``), later k-blocks add;
after the last k-block, bias and activation are applied to the tile just stored (no second pass).
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, njit, prange

from ..._config import FASTMATH
from ._act import apply_act
from ._micro import micro
from ._pack import pack_cols, pack_cols_scaled_sum, pack_rows
from ._prefetch import prefetch_write

_U = np.uintp


@njit(cache=True, nogil=True, fastmath=set(FASTMATH))
def _store(c, i0, mr, j0, nr, t, tw, add, last, bias, with_bias, act):
    """c[i0 + i, j0 + j] (+)= t[i * tw + j] for i < mr, j < nr; when ``last``, then add bias[j0 + j]
    (if ``with_bias``) and apply the activation ``act``."""
    for i in range(mr):
        row = c[i0 + i]
        ti = i * tw
        if add:
            for j in range(nr):
                row[j0 + j] += t[ti + j]
        else:
            for j in range(nr):
                row[j0 + j] = t[ti + j]
        if last:
            if with_bias:
                for j in range(nr):
                    row[j0 + j] += bias[j0 + j]
            apply_act(row, j0, nr, act)


@njit(cache=True, nogil=True)
def _prefetch_tile(c, i0, mr, j0, nr):
    """Prefetch (for writing) the cache lines of c[i0:i0 + mr, j0:j0 + nr]."""
    step = _U(64 // c.itemsize)
    last = j0 + nr - _U(1)
    for i in range(mr):
        row = c[i0 + i]
        for j in range(j0, last, step):
            prefetch_write(row, j)
        prefetch_write(row, last)


@njit(parallel=True, cache=True, nogil=True, fastmath=set(FASTMATH))
def gemm(c, asrc, a_by_rows, bsrc, b_by_rows, k, scale, db, with_db, bias, with_bias, act,
         accumulate, mr_, nr_, kc_, nc_, apack, bpack, tiles):
    """C (+)= A @ B (see the module docstring); the three public products call this.

    ``asrc`` is read by `pack_rows` when ``a_by_rows`` (A = asrc) and otherwise by
    `pack_cols_scaled_sum` (A = asrc.T, scaled by ``scale``, with the column sums of the scaled
    values added to ``db`` when ``with_db``). ``bsrc`` likewise: B = bsrc.T when ``b_by_rows``,
    else B = bsrc. ``apack`` holds ceil(M / MR) * MR * KC elements, ``bpack`` one row of
    KC * ceil(NC / NR) * NR elements per Numba thread, ``tiles`` one MR * NR row per thread.
    """
    # c is (M, N); A is (M, k) and B is (k, N) read through asrc / bsrc as described above
    m = _U(c.shape[0])
    n = _U(c.shape[1])
    kk = _U(k)
    mr = _U(mr_)
    nr = _U(nr_)
    kcb = _U(kc_)
    ncb = _U(nc_)
    one = _U(1)
    zero = c.dtype.type(0)
    mpanels = (m + mr - one) // mr
    nblocks = (n + ncb - one) // ncb
    if with_db and not accumulate:
        for j in range(m):
            db[j] = zero
    if kk == 0:
        # empty reduction: C = 0 (or unchanged when accumulating), then bias and activation
        for jbi in prange(nblocks):
            j0 = _U(jbi) * ncb
            ncols = min(ncb, n - j0)
            for i in range(m):
                row = c[i]
                if not accumulate:
                    for j in range(ncols):
                        row[j0 + j] = zero
                if with_bias:
                    for j in range(ncols):
                        row[j0 + j] += bias[j0 + j]
                apply_act(row, j0, ncols, act)
        return
    nkb = (kk + kcb - one) // kcb
    for kb in range(nkb):
        p0 = kb * kcb
        kc = min(kcb, kk - p0)
        add = accumulate or kb > 0
        last = kb == nkb - one
        for ipi in prange(mpanels):
            ip = _U(ipi)  # prange's index is signed; int64 * uint64 would be float64 in Numba
            i0 = ip * mr
            rows = min(mr, m - i0)
            off = ip * mr * kc
            if a_by_rows:
                pack_rows(apack, off, asrc, i0, rows, p0, kc, mr)
            else:
                pack_cols_scaled_sum(apack, off, asrc, p0, kc, i0, rows, mr, scale, db, with_db)
        for jbi in prange(nblocks):
            jb = _U(jbi)
            tid = get_thread_id()
            bp = bpack[tid]
            t = tiles[tid]
            j0 = jb * ncb
            ncols = min(ncb, n - j0)
            npanels = (ncols + nr - one) // nr
            for jp in range(npanels):
                jj = j0 + jp * nr
                cols = min(nr, n - jj)
                if b_by_rows:
                    pack_rows(bp, jp * nr * kc, bsrc, jj, cols, p0, kc, nr)
                else:
                    pack_cols(bp, jp * nr * kc, bsrc, p0, kc, jj, cols, nr)
            for ip in range(mpanels):
                i0 = ip * mr
                rows = min(mr, m - i0)
                for jp in range(npanels):
                    jj = j0 + jp * nr
                    cols = min(nr, n - jj)
                    # C's lines start arriving while the micro-kernel runs (see _prefetch)
                    _prefetch_tile(c, i0, rows, jj, cols)
                    micro(kc, apack, ip * mr * kc, bp, jp * nr * kc, t)
                    _store(c, i0, rows, jj, cols, t, nr, add, last, bias, with_bias, act)
