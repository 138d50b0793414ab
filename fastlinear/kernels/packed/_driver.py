"""The blocked driver shared by the three products: C (+)= A @ B with packed operands.

C is (M, N), A is (M, K), B is (K, N), each given as a C-contiguous source array plus how to read
it (see `_pack`). Loop order (Goto / van de Geijn, BLIS-style, with the roles measured best here):

    for each k-block of KC steps (serial, in order):
        pack A's MR-row panels and B's NR-column panels for this k-block   (parallel over
            (panel, run of PACK_STEPS steps) pairs, or runs of fewer steps over a group of B
            panels (`_pack_task`); B is packed once and shared by all threads, unless each
            tile packs its own B panels, ``b_in_tile`` below)
        for each tile of C (a block of MR-row panels x a block of NR-column panels)
                                                                           (parallel over tiles)
            for each row panel, for each column panel of the tile:
                micro-kernel -> MR x NR block -> stored into C with the k-block's store mode
    (weight gradient with db: combine the leaf sums of db, one pass on one thread)

Parallel tasks. Both parallel loops have at least TASKS (256 = 4 x 64 threads) tasks of nearly
equal size at every shape of 256 x 512 x 512 or more (unless B is packed in the tiles, below):
a tile starts as all the row panels by 256 columns (the column block one thread handled before,
whose packed B stays in L2) and the longer side, counted in elements, is halved until there are
TASKS tiles or a tile is one micro-kernel. The tile shape depends only on the shape of C, never
on the number of threads (only whether B is packed in the tiles, with tiles of its own, does).
At 1024 x 1024 x 1024 float32 that is 256 tiles of 64 x 64 (before: 4 tasks, one per 256-column
block, so 16- or 64-core machines left most cores idle).

Determinism. Every element of C belongs to one tile and is summed over the k-blocks in order;
the micro-kernel's order within a k-block is fixed. The fused db is summed in leaves of
`LEAF` (= PACK_STEPS) batch rows while dy is packed and then combined in the fixed tree of
`fastlinear.kernels._sums`. No sum depends on the thread count (it may choose whether B is packed
in the tiles, `b_in_tile_balanced`, which leaves every sum as it is), so results are bitwise
identical for any number of threads.

A k-block larger than the usual L2-sized choice pays off because each k-block reads and writes
all of C once (the read-modify-write cost ~27% at small KC). Before each micro-kernel the C
block it will update is prefetched for writing, so that where C does not fit in the caches its
lines arrive while the micro-kernel computes (dw at 64 x 4096 x 4096 float32: ~20% faster than
without).

A read in place (``a_in_place``): the micro-kernel broadcasts A's values one at a time, so a
full MR-row panel of a row-major A can be read where it lies, MR runs of KC steps, instead of
being packed first; only B and a partial last panel of A are packed. The forward at small batches
uses it with C = y.T, A = w and B = x.T, so that the weights, the large operand there, are never
copied (``_api.W_IN_PLACE_ROWS``); each element is the same sum in the same order as with A
packed, so the bits do not change.

B packed in the tiles (``b_in_tile``): packed whole, B's k-block (KC x N) is shared by all the
tiles but, at 4096 columns, is 16 MiB: written out to memory and read back by the tiles. Where
C has few rows, each tile instead spans all the row panels and `NC_IN_TILE` columns and packs its
own KC x NC_IN_TILE block of B into its thread's part of ``bpack``, where it stays in L2 while
every row panel uses it; each B panel is still packed once per k-block. The input gradient, and
the forward above the batches at which it reads w in place, use it up to ``_api.W_IN_TILE_ROWS``
batch rows; the same sums in the same order, so the same bits.

Store modes: the first k-block writes C (or adds to it when ``accumulate``), later k-blocks add;
after the last k-block, bias and activation are applied to the block just stored (no second pass).
"""

from __future__ import annotations

import numpy as np
from numba import get_thread_id, njit, prange

from ..._config import PARALLEL, PLAIN, SERIAL
from ._act import apply_act
from ._micro import micro, micro_in_place
from .._sums import INDEX0, LEAF, TASKS, combine_block_into
from ._pack import GROUP_BYTES, pack_col_panels, pack_cols_scaled_sum, pack_rows
from ._prefetch import prefetch_write

_U = np.uintp


@njit(**SERIAL)
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


@njit(**SERIAL)
def _store_transposed(c, i0, mr, j0, nr, t, tw, add, last, bias, with_bias, act):
    """`_store` into the transpose of ``c``: c[j0 + j, i0 + i] (+)= t[i * tw + j] for i < mr,
    j < nr; when ``last``, then add bias[i0 + i] (if ``with_bias``) and apply ``act``. The same
    operations on each element as `_store`, so the same bits."""
    for j in range(nr):
        row = c[j0 + j]
        if add:
            for i in range(mr):
                row[i0 + i] += t[i * tw + j]
        else:
            for i in range(mr):
                row[i0 + i] = t[i * tw + j]
        if last:
            if with_bias:
                for i in range(mr):
                    row[i0 + i] += bias[i0 + i]
            apply_act(row, i0, mr, act)


@njit(**PLAIN)
def _prefetch_tile(c, i0, mr, j0, nr):
    """Prefetch (for writing) the cache lines of c[i0:i0 + mr, j0:j0 + nr]."""
    step = _U(64 // c.itemsize)
    last = j0 + nr - _U(1)
    for i in range(mr):
        row = c[i0 + i]
        for j in range(j0, last, step):
            prefetch_write(row, j)
        prefetch_write(row, last)


#: steps of the reduction per packing task; equal to the leaf of the db sums, so that each task
#: packing dy for the weight gradient sums exactly one leaf
PACK_STEPS = LEAF
#: columns of the widest tile (the column block one thread handled when tasks were column blocks)
_NC = 256


@njit(**PLAIN)
def tile_shape(mpanels, npanels, mr, nr):
    """(row panels, column panels) per tile of C: start from all row panels by `_NC` columns and
    halve the side longer in elements until there are `TASKS` tiles or a tile is one panel of each.
    Depends on the shape of C only."""
    tr = max(mpanels, 1)
    tc = max(min(npanels, _NC // nr), 1)
    while ((mpanels + tr - 1) // tr) * ((npanels + tc - 1) // tc) < TASKS and (tr > 1 or tc > 1):
        if tc == 1 or (tr > 1 and tr * mr >= tc * nr):
            tr = (tr + 1) // 2
        else:
            tc = (tc + 1) // 2
    return tr, tc


#: columns of a tile that packs its own B panels (`gemm`'s ``b_in_tile``): the widest tile's
NC_IN_TILE = _NC


@njit(**PLAIN)
def tile_shape_b_in_tile(mpanels, npanels, mr, nr):
    """(row panels, column panels) per tile of C when each tile packs its own B panels: all the
    row panels (so that each B panel is packed once) by `NC_IN_TILE` columns."""
    return max(mpanels, 1), max(min(npanels, NC_IN_TILE // nr), 1)


def b_in_tile_balanced(cols: int, threads: int) -> bool:
    """Whether the ceil(cols / NC_IN_TILE) tiles of a ``b_in_tile`` call keep ``threads`` threads
    busy: at least one tile per thread, and the threads at work for at least 3/4 of the rounds of
    tiles, tiles >= 3/4 x rounds x threads (17 tiles on 16 threads would leave 15 threads idle
    for half the call). Reasoned, not measured: the machine behind these kernels' figures has 2
    cores. Packing B in the tiles or whole gives the same bits, so this choice, unlike the block
    sizes, may depend on the thread count."""
    tiles = -(-cols // NC_IN_TILE)
    rounds = -(-tiles // threads)
    return tiles >= threads and 4 * tiles >= 3 * rounds * threads


@njit(**PLAIN)
def _pack_task(t, chunks, na, a_first, group, bsteps, bchunks, apack, asrc, a_by_rows, bpack,
               bsrc, b_by_rows, m, n, mr, nr, p0, kc, scale, leaves, with_db):
    """Packing task t of a k-block. Tasks below ``na`` pack a run of PACK_STEPS steps of one A
    panel, from panel ``a_first`` on, into ``apack`` from its start (summing the panel's db
    leaf when ``with_db``); the others pack B: when ``b_by_rows`` a run of
    PACK_STEPS steps of one panel, otherwise ``bsteps`` steps of ``group`` neighbouring panels
    (the same number of elements, read in longer pieces of each row: see `_pack`). ``bchunks``
    is the number of such runs in the k-block."""
    steps = _U(PACK_STEPS)
    if t < na:
        ip = a_first + t // chunks
        q0 = (t % chunks) * steps
        qn = min(steps, kc - q0)
        i0 = ip * mr
        rows = min(mr, m - i0)
        off = (ip - a_first) * mr * kc + q0 * mr
        if a_by_rows:
            pack_rows(apack, off, asrc, i0, rows, p0 + q0, qn, mr)
        else:
            pack_cols_scaled_sum(apack, off, asrc, p0 + q0, qn, i0, rows, mr, scale, leaves,
                                 (p0 + q0) // steps, with_db)
    elif b_by_rows:
        jp = (t - na) // chunks
        q0 = ((t - na) % chunks) * steps
        qn = min(steps, kc - q0)
        jj = jp * nr
        pack_rows(bpack, jp * nr * kc + q0 * nr, bsrc, jj, min(nr, n - jj), p0 + q0, qn, nr)
    else:
        g = (t - na) // bchunks
        q0 = ((t - na) % bchunks) * bsteps
        jp0 = g * group
        npanels = (n + nr - _U(1)) // nr
        pack_col_panels(bpack, jp0 * nr * kc, bsrc, p0, q0, min(bsteps, kc - q0), kc, jp0,
                        min(jp0 + group, npanels), n, nr)


@njit(**PARALLEL)
def gemm(c, transposed, asrc, a_by_rows, a_in_place, bsrc, b_by_rows, b_in_tile, k, scale, db,
         leaves, with_db, bias, with_bias, act, accumulate, mr_, nr_, kc_, apack, bpack, tiles):
    """C (+)= A @ B (see the module docstring); the three public products call this.

    C is ``c``, or its transpose when ``transposed`` (``bias`` runs along c's columns either way:
    C's columns, or C's rows when transposed). When ``a_in_place`` (with ``a_by_rows``), A's full
    MR-row panels are read by the micro-kernel straight from ``asrc`` (row-major, rows of A are
    rows of asrc) and only a last, partial panel is packed, into the start of ``apack`` (MR * KC
    elements suffice).

    ``asrc`` is read by `pack_rows` when ``a_by_rows`` (A = asrc) and otherwise by
    `pack_cols_scaled_sum` (A = asrc.T, scaled by ``scale``; when ``with_db``, db (+)= the column
    sums of the scaled values, through ``leaves``). ``bsrc`` likewise: B = bsrc.T when
    ``b_by_rows``, else B = bsrc. When ``b_in_tile``, each tile packs its own B panels (see the
    module docstring). Scratch, all from the caller: ``apack`` holds ceil(M / MR) * MR * KC
    elements, ``bpack`` ceil(N / NR) * NR * KC (shared by all threads) or, when ``b_in_tile``,
    at most NC_IN_TILE * KC per thread of the call (get_num_threads(): thread ids stay below
    it), ``tiles`` one MR * NR row per Numba thread, ``leaves`` (ceil(k / LEAF), M) when
    ``with_db``.
    """
    # C is (M, N); A is (M, k) and B is (k, N) read through asrc / bsrc as described above
    m_ = c.shape[1] if transposed else c.shape[0]
    n_ = c.shape[0] if transposed else c.shape[1]
    m = _U(m_)
    n = _U(n_)
    kk = _U(k)
    mr = _U(mr_)
    nr = _U(nr_)
    kcb = _U(kc_)
    one = _U(1)
    zero = c.dtype.type(0)
    mpanels = (m + mr - one) // mr
    npanels = (n + nr - one) // nr
    if kk == 0:
        # empty reduction: C = 0 (or unchanged when accumulating), then bias and activation; on
        # one thread (a rare case, and each prange is another function for Numba to compile)
        for i in range(c.shape[0]):
            row = c[i]
            if not accumulate:
                for j in range(c.shape[1]):
                    row[j] = zero
            if with_bias:
                for j in range(c.shape[1]):
                    row[j] += bias[j]
            apply_act(row, _U(0), _U(c.shape[1]), act)
        if with_db and not accumulate:
            for j in range(m):
                db[j] = zero
        return
    # signed arguments: uint64 mixed with the int64 literals inside would compute in float64
    if b_in_tile:
        tr_, tc_ = tile_shape_b_in_tile((m_ + mr_ - 1) // mr_, (n_ + nr_ - 1) // nr_, mr_, nr_)
    else:
        tr_, tc_ = tile_shape((m_ + mr_ - 1) // mr_, (n_ + nr_ - 1) // nr_, mr_, nr_)
    tr = _U(tr_)
    tc = _U(tc_)
    trows = (mpanels + tr - one) // tr
    tcols = (npanels + tc - one) // tc
    steps = _U(PACK_STEPS)
    # B by columns: `group` panels a task, over PACK_STEPS / group steps (as many elements as a
    # task of one panel), so that each row of B is read in pieces of GROUP_BYTES
    group = max(_U(GROUP_BYTES) // (nr * _U(c.itemsize)), one)
    bsteps = max(steps // group, one)
    nkb = (kk + kcb - one) // kcb
    # A read in place: the micro-kernel reads row i of a panel as a run of asrc's row i0 + i
    # (stride lda between the rows, 1 between steps); only a partial last panel is packed
    aflat = asrc.reshape(asrc.size)
    lda = _U(asrc.shape[1])
    afull = m // mr if a_in_place else _U(0)
    for kb in range(nkb):
        p0 = kb * kcb
        kc = min(kcb, kk - p0)
        add = accumulate or kb > 0
        last = kb == nkb - one
        chunks = (kc + steps - one) // steps
        na = (mpanels - afull) * chunks
        if b_in_tile:
            nb = _U(0)
        elif b_by_rows:
            nb = npanels * chunks
        else:
            nb = ((npanels + group - one) // group) * ((kc + bsteps - one) // bsteps)
        for ti in prange(na + nb):
            # prange's index is signed; int64 * uint64 would be float64 in Numba
            _pack_task(_U(ti), chunks, na, afull, group, bsteps, (kc + bsteps - one) // bsteps,
                       apack, asrc, a_by_rows, bpack, bsrc, b_by_rows, m, n, mr, nr, p0, kc,
                       scale, leaves, with_db)
        for ti in prange(trows * tcols):
            tid = get_thread_id()
            t = tiles[tid]
            r0 = (_U(ti) // tcols) * tr
            c0 = (_U(ti) % tcols) * tc
            c1 = min(c0 + tc, npanels)
            # B panel jp of the k-block lies at boff + (jp - bfirst) * nr * kc of bpack
            boff = _U(0)
            bfirst = _U(0)
            if b_in_tile:
                # this tile's own B panels, in this thread's part of bpack
                boff = _U(tid) * tc * nr * kcb
                bfirst = c0
                if b_by_rows:
                    for jp in range(c0, c1):
                        jj = jp * nr
                        pack_rows(bpack, boff + (jp - c0) * nr * kc, bsrc, jj, min(nr, n - jj),
                                  p0, kc, nr)
                else:
                    pack_col_panels(bpack, boff, bsrc, p0, _U(0), kc, kc, c0, c1, n, nr)
            for ip in range(r0, min(r0 + tr, mpanels)):
                i0 = ip * mr
                rows = min(mr, m - i0)
                for jp in range(c0, c1):
                    jj = jp * nr
                    cols = min(nr, n - jj)
                    # C's lines start arriving while the micro-kernel runs (see _prefetch)
                    if transposed:
                        _prefetch_tile(c, jj, cols, i0, rows)
                    else:
                        _prefetch_tile(c, i0, rows, jj, cols)
                    bo = boff + (jp - bfirst) * nr * kc
                    if ip < afull:
                        micro_in_place(kc, aflat, i0 * lda + p0, lda, one, bpack, bo, nr, t)
                    else:
                        micro(kc, apack, (ip - afull) * mr * kc, one, mr, bpack, bo, nr, t)
                    if transposed:
                        _store_transposed(c, i0, rows, jj, cols, t, nr, add, last, bias,
                                          with_bias, act)
                    else:
                        _store(c, i0, rows, jj, cols, t, nr, add, last, bias, with_bias, act)
    if with_db:
        # one pass across the leaves' rows on one thread (vectorized; O(M * k / LEAF) additions,
        # small beside the GEMM); the same tree per column as every other bias gradient
        nleaves = (k + PACK_STEPS - 1) // PACK_STEPS  # signed, as `combine_block_into` expects
        combine_block_into(db, leaves, nleaves, INDEX0, c.shape[0], c.dtype.type(1), accumulate)
