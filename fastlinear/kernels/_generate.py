"""Writes ``grad_input.py`` and ``grad_weight.py``, the register-blocked input- and weight-gradient
kernels for small and skinny shapes.

A register block sums its MR x NR part of the output into an MR x NR array on its own stack
(``_scratch.stack_row``) through loops with constant trip counts. With LLVM's loop vectorizer off
and its SLP vectorizer on (``VECTORIZE["register_block"]`` in `fastlinear._config`), LLVM unrolls
those loops, promotes the array to vector registers and vectorizes across the NR columns, giving
the same reduction loop in machine code (for the full blocks; the edge blocks' differ a little),
the same bits and the same speed as accumulators spelt out as MR * NR scalar locals. The spelt-out form took Numba 5-10 s to compile for the 8 x 32 float32
weight-gradient block alone (its typing, SSA and lowering passes run over every statement), the
loops 0.5 s; ``tests/kernels/test_register_blocks.py`` checks that no block's accumulators are left
in memory. What stays generated is one copy of the blocks and drivers per dtype and block shape,
with MR, NR and the half width written in as constants. Numba caches compiled code only for
functions defined in a real source file, so the kernels are generated once into those two files
and committed; a test checks that the files match this generator. Run
``python -m fastlinear.kernels._generate`` after editing the templates below.

Offsets: each block tells LLVM that its row and column offsets are non-negative
(``_scratch.nonnegative``), and the weight-gradient blocks slice their run of batch rows once
(``dy[r0:r1]``) so that the step counter starts at 0. Without that, Numba's negative-index fix-up
and slice clamping ran on every step of the reduction loop (a dozen scalar instructions beside the
16 FMAs of an 8 x 32 float32 step). Figures here and below: the serial weight-gradient kernel on one
thread, the code before these changes and after them, two runs each (``python
asv_benchmarks/scripts/serial_parallel.py --shapes`` with the shapes named), 2-core Intel Xeon,
``rocketlake``: float32 32x128x128 8.4-9.4 -> 8.2 us, 64x256x256 69.1-70.5 -> 59.9-60.1, float64
64x256x256 144.1-144.2 -> 116.0-116.6. The input-gradient blocks take the promise for the column
offset only: with the row offset too, LLVM rebuilt the eight dy row addresses on every step instead
of keeping them in registers.

Narrow column edges: the weight gradient's edge narrower than a half block was a plain loop
over each of its rows, with a slice and a short variable-length loop per batch row; the column
block (``_dw_cols8_*``) makes it one vector FMA per batch row and column: float32 32x129x128
24.8-25.2 -> 10.8 us, 32x136x128 25.6-26.3 -> 13.2-13.3, float64 32x129x128 35.6-35.7 ->
17.6-19.2. A half block or edge with no columns left is no longer called (its loop over the batch
ran anyway): float32 32x144x128 17.0-17.9 -> 9.7-9.9 us, 8x784x128 19.4-20.3 -> 15.3-15.5 (with
the offsets above). The input gradient's narrow edge (float32 32x136x128: 24.1-27.3 us against
6.7-7.3 at 32x128x128 in the same runs) is left as it was: its reduction runs along dy's rows, so
a vector down its 8 rows would gather.

Block sizes: MR = 8 rows by NR = 32 float32 columns or NR = 16 float64 columns, that is 16 vector
registers of accumulators (512-bit), two loads and eight broadcasts per step. 12x32 and 14x32
spilled; 4x64 and 16x16 were slower. The same block size is used for every thread count.
"""

from __future__ import annotations

import pathlib

MR = 8
#: row counts of the register blocks: MR, and 2 and 1 for the rows left over at the edge (out = 10
#: leaves 2: with 1-row blocks alone grad_weight at 4096 x 256 x 10 fell from 1.5x to 1.0x BLAS on
#: one thread; 4-row blocks as well cost ~8 s more compile time per dtype)
ROW_BLOCKS = (MR, 2, 1)
#: columns per block, by dtype name
NR = {"f32": 32, "f64": 16}

COMMON = '''
The input- and weight-gradient kernels (``grad_input.py``, ``grad_weight.py``) are both outer-
product kernels: each 8 x NR block of the output is summed over the whole reduction axis by one
thread, reading the operands' rows directly (no packing: at these shapes the operands fit in cache
and packing cost more than it saved). Blocks are the same for every thread count, so results do not
depend on it. A block cut by the last column uses a half-width block and then a plain loop (the
weight gradient's 8-row blocks: a column block, each column summed in a vector of 8 down the
rows); rows left over at the bottom use 2- and 1-row blocks. Each output element is summed in the
same order (fused multiply-adds along the reduction axis) whichever of these computes it. Every
block sums into an array on its own stack (``_scratch.stack_row``): the register blocks into an
MR x NR array that LLVM unrolls into vector registers (see ``_generate``), the edge blocks
narrower than that into a row in memory. Nothing is allocated on the heap, and the kernels take
no scratch argument.

Several blocks in a row form one parallel task when there are more than TASKS, or when a block is
too little work to be a task on its own (a short reduction; ``_sums.strip_length``), which saves
index arithmetic and calls; it depends only on the shape, and leaves at least TASKS tasks (4 per
thread at 64 threads) whenever there are that many blocks of at least ``MIN_TASK_WORK``.

Variants: ``_f32`` (NR = 32) and ``_f64`` (NR = 16), each serial (``_serial``) and parallel over
output blocks (``_parallel``).
"""

from __future__ import annotations

from numba import carray, prange

from ._scratch import nonnegative, stack_row
from ._slp import PARALLEL, SERIAL, slp_njit
'''

#: the first lines of each generated module, before `COMMON`
HEADERS = {
    "grad_input": '''"""Input-gradient kernels for small and skinny shapes (GENERATED by ``_generate.py``; do not
edit by hand, edit the generator and rerun ``python -m fastlinear.kernels._generate``):
dx = dy @ w ("NN"). The packed GEMM in ``packed/`` takes the large shapes.
''',
    "grad_weight": '''"""Weight-gradient kernels for small and skinny shapes (GENERATED by ``_generate.py``; do not
edit by hand, edit the generator and rerun ``python -m fastlinear.kernels._generate``):
dw (+)= scale * dy.T @ x ("TN"), with db (+)= scale * dy.sum(0) fused unless db is None or empty.
The packed GEMM in ``packed/`` takes the large shapes.

The weight gradient sums the batch in runs of DW_ROWS rows, adding each run's sum to dw in batch
order: at 2**20 float32 rows that keeps dw near OpenBLAS's error (about 1e-6 relative) where one
run over the whole batch was 20-200x worse, and it changes nothing for batches of DW_ROWS or
fewer. The fused db is summed in the fixed tree of ``_sums``. The rows of dw left below the last
full 8-row block (out % 8 of them, out > 8) are computed in that block's task, a few columns at a
time right after it, while those columns of x are in cache (``_sums.row_tasks``): 4096x256x10,
the serial kernel on one thread (``serial_parallel.py``, see ``_generate``), float32 486-504 ->
327-329 us, float64 1125-1130 -> 734-791 us.
''',
}

#: what each module imports and defines after `COMMON`
TAILS = {
    "grad_input": '''from ._sums import INDEX0, strip_length
''',
    "grad_weight": '''from ._sums import (FAN, INDEX0, LEAF, column_sum_into, leaf_count, row_tasks,
                    strip_length)

#: batch rows summed in registers before the partial sum is added to dw (see above)
DW_ROWS = 512
#: column blocks per call of the full-row block in a task that also has rows below it, so that
#: the rows below reuse that part of x from cache (see ``row_tasks`` in ``_sums``)
DW_COLS = 4
''',
}

def _block_lines(mr: int, nr: int, step: list[str], a: str, b: str) -> list[str]:
    """The accumulator row on this call's stack, zeroed, and the reduction loop: ``step`` are the
    lines that start one step (they bind rows or columns of the operands), then acc += a[r] * b[q]
    for every r < mr and q < nr. Loops with constant trip counts: LLVM unrolls them and keeps acc
    in vector registers (see ``_slp``)."""
    return [
        f"    acc = carray(stack_row(out, {mr * nr}), ({mr}, {nr}))",
        "    z = out.dtype.type(0)",
        f"    for r in range({mr}):",
        f"        for q in range({nr}):",
        "            acc[r, q] = z",
        *step,
        f"        for r in range({mr}):",
        f"            for q in range({nr}):",
        f"                acc[r, q] += {a} * {b}",
    ]


def _dx_source(sfx: str, mr: int, nr: int, tag: str = "") -> str:
    """An mr x nr block of dx = dy @ w: a column of dy times a row of w per step. The full block
    is a run over column blocks, as in `_dw_source`."""
    run = mr == MR and not tag
    if run:
        head = (f"def _dx_run{mr}_{sfx}(out, dy, w, o0, c0, c1):",
                f'    """out[o0:o0+{mr}, c0*{nr}:c1*{nr}] = dy[o0:o0+{mr}, :] @ w[:, c0*{nr}:c1*{nr}], one '
                f'{mr} x {nr}\n    block after another (out is dx)."""')
    else:
        head = (f"def _dx_block{mr}{tag}_{sfx}(out, dy, w, o0, p0):",
                f'    """out[o0:o0+{mr}, p0:p0+{nr}] = dy[o0:o0+{mr}, :] @ w[:, p0:p0+{nr}]  '
                '(out is dx)."""')
    step = ["    for kk in range(w.shape[0]):", f"        b = w[kk, p0:p0 + {nr}]"]
    body = _block_lines(mr, nr, step, "dy[o0 + r, kk]", "b[q]")
    # "+ 0": a loop that only copies a row of acc becomes a memcpy out of it, and that row then
    # stays in memory instead of registers (1.35x slower at float64 4096x256x10). The sum is
    # never -0.0 (it starts at +0.0), so adding +0.0 changes no value, and without "nsz"
    # LLVM may not remove it.
    body += [f"    for r in range({mr}):", f"        o = out[o0 + r, p0:p0 + {nr}]",
             f"        for q in range({nr}):", "            o[q] = acc[r, q] + z"]
    if run:  # the lines after acc and z, once per column block
        body = body[:2] + ["    for c in range(c0, c1):", f"        p0 = nonnegative(c * {nr})"] + [
            "    " + line for line in body[2:]]
    else:
        body = body[:2] + ["    p0 = nonnegative(p0)"] + body[2:]
    lines = ["@slp_njit(**SERIAL, family=\"register_block\")", *head, *body]
    return "\n".join(lines) + "\n"


def _dw_source(sfx: str, mr: int, nr: int, tag: str = "") -> str:
    """An mr x nr block of dw (+)= scale * dy.T @ x: a row of dy times a row of x per step.

    One function for both ways of storing the block (``add``: dw += ..., else dw = ...), the
    reduction written once. Zeroing the block and always adding (one store loop) was slower where
    the reduction is short: 1.10-1.23x at 32x128x128 and 8x784x128, one thread (measured with the
    block's accumulators spelt as scalar locals, before LLVM unrolled them).

    The full block (``mr == MR``, no tag) is a run: it computes the column blocks c0:c1 of its
    rows one after the other, so that a task makes one call per row of blocks rather than one per
    block. Each call of a function that takes arrays costs reference-count updates (atomic); where
    the batch is short they cost as much as the block: float32 8x784x128, one thread, 22.7 us with
    a call per block against BLAS's 10.6 us."""
    run = mr == MR and not tag
    if run:
        head = (f"def _dw_run{mr}_{sfx}(out, dy, x, o0, c0, c1, scale, add, r0, r1):",
                f'    """out[o0:o0+{mr}, c0*{nr}:c1*{nr}] (+)= scale * dy[r0:r1, o0:o0+{mr}].T @ '
                f'x[r0:r1, c0*{nr}:c1*{nr}],\n    one {mr} x {nr} block after another (out is dw; '
                '+= when add)."""')
    else:
        head = (f"def _dw_block{mr}{tag}_{sfx}(out, dy, x, o0, p0, scale, add, r0, r1):",
                f'    """out[o0:o0+{mr}, p0:p0+{nr}] (+)= scale * dy[r0:r1, o0:o0+{mr}].T @ '
                f'x[r0:r1, p0:p0+{nr}]  (out is dw; += when add)."""')
    step = ["    for kk in range(dyr.shape[0]):", f"        a = dyr[kk, o0:o0 + {mr}]",
            f"        b = xr[kk, p0:p0 + {nr}]"]
    body = _block_lines(mr, nr, step, "a[r]", "b[q]")
    for op, branch in (("+=", "    if add:"), ("=", "    else:")):
        body += [branch, f"        for r in range({mr}):",
                 f"            o = out[o0 + r, p0:p0 + {nr}]",
                 f"            for q in range({nr}):",
                 f"                o[q] {op} scale * acc[r, q]"]
    if run:  # the lines after acc and z, once per column block
        body = body[:2] + ["    for c in range(c0, c1):", f"        p0 = nonnegative(c * {nr})"] + [
            "    " + line for line in body[2:]]
    else:
        body = body[:2] + ["    p0 = nonnegative(p0)"] + body[2:]
    rows = ["    o0 = nonnegative(o0)", "    dyr = dy[r0:r1]", "    xr = x[r0:r1]"]
    body = body[:2] + rows + body[2:]
    lines = ["@slp_njit(**SERIAL, family=\"register_block\")", *head, *body]
    return "\n".join(lines) + "\n"


def _db_source(sfx: str, mr: int) -> str:
    """db[o0:o0+mr] (+)= scale * dy[:, o0:o0+mr].sum(0), summed in the fixed tree of ``_sums``
    (runs of LEAF rows in order, then FAN partial sums at a time) with every sum in registers."""
    cols = range(mr)
    lines = [
        "@slp_njit(**SERIAL)",
        f"def _db_block{mr}_{sfx}(db, dy, o0, scale, accumulate):",
        f'    """db[o0:o0+{mr}] (+)= scale * dy[:, o0:o0+{mr}].sum(0), summed as `_sums.combine_into` does."""',
        "    z = db.dtype.type(0)",
        "    n = dy.shape[0]",
    ]
    for level in range(1, 5):
        lines.append("    " + " = ".join(f"s{level}_{r}" for r in cols) + " = z")
    lines += [
        "    for c in range(leaf_count(n)):",
        "        " + " = ".join(f"s0_{r}" for r in cols) + " = z",
        "        for i in range(c * LEAF, min(c * LEAF + LEAF, n)):",
        f"            a = dy[i, o0:o0 + {mr}]",
    ]
    lines += [f"            s0_{r} += a[{r}]" for r in cols]
    lines += [f"        s1_{r} += s0_{r}" for r in cols]
    indent = "        "
    for level, period in ((1, "FAN"), (2, "(FAN * FAN)"), (3, "(FAN * FAN * FAN)")):
        lines.append(f"{indent}if (c + 1) % {period} == 0:")
        indent += "    "
        for r in cols:
            lines += [f"{indent}s{level + 1}_{r} += s{level}_{r}", f"{indent}s{level}_{r} = z"]
    for level in range(1, 4):
        lines += [f"    s{level + 1}_{r} += s{level}_{r}" for r in cols]
    lines += [f"    o = db[o0:o0 + {mr}]", "    if accumulate:"]
    lines += [f"        o[{r}] += scale * s4_{r}" for r in cols]
    lines += ["    else:"]
    lines += [f"        o[{r}] = scale * s4_{r}" for r in cols]
    return "\n".join(lines) + "\n"


DX_DRIVERS = '''
@slp_njit(**SERIAL)
def _dx_rows_{sfx}(dx, dy, w, i0, rows, p0):
    """rows (< {MR}) rows of dx from i0, columns p0:p0+{NR}, as 2-row blocks and a 1-row block."""
    for i in range(i0, i0 + rows - 1, 2):
        _dx_block2_{sfx}(dx, dy, w, i, p0)
    if rows & 1:
        _dx_block1_{sfx}(dx, dy, w, i0 + rows - 1, p0)


@slp_njit(**SERIAL)
def _dx_edge_{sfx}(dx, dy, w, i0, p0):
    """The part of the {MR} x {NR} block at (i0, p0) inside dx when it is cut by the last column."""
    n, m = dy.shape
    k = w.shape[1]
    cols = k - p0
    for i in range(i0, min(i0 + {MR}, n)):
        o = dx[i, p0:k]
        o[:] = 0
        for j in range(m):
            c = dy[i, j]
            wrow = w[j, p0:k]
            for q in range(cols):
                o[q] += c * wrow[q]


@slp_njit(**SERIAL)
def _dx_tile_{sfx}(dx, dy, w, i0, p0):
    """The part inside dx of the {MR} x {NR} block at (i0, p0), a block cut by the last row or
    column (full blocks go to `_dx_run{MR}_{sfx}`)."""
    rows = min(dy.shape[0] - i0, {MR})
    if p0 + {NR} > w.shape[1]:
        if rows == {MR} and p0 + {NH} <= w.shape[1]:
            _dx_block{MR}h_{sfx}(dx, dy, w, i0, p0)
            p0 += {NH}
        if p0 < w.shape[1]:  # the edge loops over dy's columns even when it has no columns
            _dx_edge_{sfx}(dx, dy, w, i0, p0)
    else:
        _dx_rows_{sfx}(dx, dy, w, i0, rows, p0)


@slp_njit(**SERIAL)
def _dx_task_{sfx}(dx, dy, w, i0, c0, c1):
    """Row block i0 of dx, column blocks c0:c1: the full blocks in one call (`_dx_run{MR}_{sfx}`),
    the blocks cut by the edges one call each. Every call of a function that takes arrays costs a
    few reference-count updates (atomic), as much as a block where the reduction is short."""
    cf = c0  # column blocks c0:cf are full blocks
    if i0 + {MR} <= dy.shape[0]:
        cf = max(c0, min(c1, w.shape[1] // {NR}))
        _dx_run{MR}_{sfx}(dx, dy, w, i0, c0, cf)
    for c in range(cf, c1):
        _dx_tile_{sfx}(dx, dy, w, i0, c * {NR})


@slp_njit(**SERIAL)
def grad_input_serial_{sfx}(dx, dy, w):
    """dx = dy @ w on one thread."""
    # dy is (n, out), w is (out, in), dx is (n, in)
    col_blocks = (w.shape[1] + {NR} - 1) // {NR}
    for i0 in range(0, dy.shape[0], {MR}):
        _dx_task_{sfx}(dx, dy, w, i0, INDEX0, col_blocks)


@slp_njit(**PARALLEL)
def grad_input_parallel_{sfx}(dx, dy, w):
    """dx = dy @ w, strips of output blocks spread over threads."""
    # dy is (n, out), w is (out, in), dx is (n, in)
    col_blocks = (w.shape[1] + {NR} - 1) // {NR}
    row_blocks = (dy.shape[0] + {MR} - 1) // {MR}
    strip = strip_length(row_blocks, col_blocks, dy.shape[1] * {MR} * {NR})
    strips = (col_blocks + strip - 1) // strip
    for t in prange(row_blocks * strips):
        c0 = (t % strips) * strip
        _dx_task_{sfx}(dx, dy, w, (t // strips) * {MR}, c0, min(c0 + strip, col_blocks))
'''

DW_DRIVERS = '''
@slp_njit(**SERIAL)
def _dw_rows_{sfx}(dw, dy, x, j0, rows, p0, scale, add, r0, r1):
    """rows (< {MR}) rows of dw from j0, columns p0:p0+{NR}, batch rows r0:r1, as 2-row blocks and
    a 1-row block."""
    for j in range(j0, j0 + rows - 1, 2):
        _dw_block2_{sfx}(dw, dy, x, j, p0, scale, add, r0, r1)
    if rows & 1:
        _dw_block1_{sfx}(dw, dy, x, j0 + rows - 1, p0, scale, add, r0, r1)


@slp_njit(**SERIAL, family="register_block")
def _dw_cols{MR}_{sfx}(out, dy, x, o0, p0, p1, scale, add, r0, r1):
    """out[o0:o0+{MR}, p0:p1] (+)= scale * dy[r0:r1, o0:o0+{MR}].T @ x[r0:r1, p0:p1], one column
    after another, each summed down the column in a vector of {MR} (a row of dy per step) (out
    is dw; += when add)."""
    acc = carray(stack_row(out, {MR}), {MR})
    z = out.dtype.type(0)
    o0 = nonnegative(o0)
    dyr = dy[r0:r1]
    xr = x[r0:r1]
    for p in range(nonnegative(p0), p1):
        for r in range({MR}):
            acc[r] = z
        for kk in range(dyr.shape[0]):
            a = dyr[kk, o0:o0 + {MR}]
            v = xr[kk, p]
            for r in range({MR}):
                acc[r] += a[r] * v
        if add:
            for r in range({MR}):
                out[o0 + r, p] += scale * acc[r]
        else:
            for r in range({MR}):
                out[o0 + r, p] = scale * acc[r]


@slp_njit(**SERIAL)
def _dw_edge_{sfx}(dw, dy, x, j0, p0, scale, add, r0, r1):
    """The part of the {MR} x {NR} block at (j0, p0) inside dw when it is cut by the last column,
    batch rows r0:r1: `_dw_cols{MR}_{sfx}` for a full {MR} rows, else each row summed in a row of
    {NR} on this call's stack."""
    k = x.shape[1]
    m = dy.shape[1]
    if j0 + {MR} <= m:
        _dw_cols{MR}_{sfx}(dw, dy, x, j0, p0, k, scale, add, r0, r1)
        return
    acc = carray(stack_row(x, {NR}), {NR})
    cols = k - p0
    for j in range(j0, m):
        for q in range(cols):
            acc[q] = 0
        for i in range(r0, r1):
            c = dy[i, j]
            xrow = x[i, p0:k]
            for q in range(cols):
                acc[q] += c * xrow[q]
        o = dw[j, p0:k]
        if add:
            for q in range(cols):
                o[q] += scale * acc[q]
        else:
            for q in range(cols):
                o[q] = scale * acc[q]


@slp_njit(**SERIAL)
def _db_rows_{sfx}(db, dy, j0, rows, scale, accumulate):
    """db[j0:j0+rows] (+)= scale * dy[:, j0:j0+rows].sum(0), each column summed in the fixed tree
    of ``_sums``."""
    if rows == {MR}:
        _db_block{MR}_{sfx}(db, dy, j0, scale, accumulate)
        return
    for j in range(j0, j0 + rows):
        column_sum_into(db, j, dy, scale, accumulate)


@slp_njit(**SERIAL)
def _dw_chunk_{sfx}(dw, dy, x, scale, add, j0, p0, r0, r1):
    """Batch rows r0:r1 of the part inside dw of the {MR} x {NR} block at (j0, p0), a block cut by
    the last row or column (full blocks go to `_dw_run{MR}_{sfx}`)."""
    rows = min(dy.shape[1] - j0, {MR})
    if p0 + {NR} > x.shape[1]:
        if rows == {MR} and p0 + {NH} <= x.shape[1]:
            _dw_block{MR}h_{sfx}(dw, dy, x, j0, p0, scale, add, r0, r1)
            p0 += {NH}
        if p0 < x.shape[1]:  # the edge loops over the batch even when it has no columns
            _dw_edge_{sfx}(dw, dy, x, j0, p0, scale, add, r0, r1)
    else:
        _dw_rows_{sfx}(dw, dy, x, j0, rows, p0, scale, add, r0, r1)


@slp_njit(**SERIAL)
def _dw_task_{sfx}(dw, db, dy, x, scale, accumulate, j0, c0, c1):
    """Row block j0 of dw, column blocks c0:c1, each summed over the batch in runs of DW_ROWS
    rows, each run's sum added to dw in batch order; the task of the first column block also
    computes its rows of db. The full blocks of a run of rows take one call (`_dw_run{MR}_{sfx}`),
    the blocks cut by the edges one call each."""
    if db is not None and c0 == 0 and db.shape[0] > 0:
        _db_rows_{sfx}(db, dy, j0, min(dy.shape[1] - j0, {MR}), scale, accumulate)
    n = dy.shape[0]
    k = x.shape[1]
    full_rows = j0 + {MR} <= dy.shape[1]
    for r0 in range(0, max(n, 1), DW_ROWS):
        r1 = min(r0 + DW_ROWS, n)
        add = accumulate or r0 > 0
        cf = c0  # column blocks c0:cf are full blocks
        if full_rows:
            cf = max(c0, min(c1, k // {NR}))
            _dw_run{MR}_{sfx}(dw, dy, x, j0, c0, cf, scale, add, r0, r1)
        for c in range(cf, c1):
            _dw_chunk_{sfx}(dw, dy, x, scale, add, j0, c * {NR}, r0, r1)


@slp_njit(**SERIAL)
def _dw_task_below_{sfx}(dw, db, dy, x, scale, accumulate, j0, c0, c1):
    """`_dw_task_{sfx}` for the last full row block j0 and the rows below it (fewer than {MR}; see
    `row_tasks`): the full blocks of a run of rows take one call per DW_COLS column blocks,
    followed by the rows below for the same columns, while that part of x is in cache. A function
    of its own, not a branch of `_dw_task_{sfx}`: with both in one function the serial kernel took
    9.2 us against 8.3 at float32 32x128x128, which has no rows below (one thread)."""
    m = dy.shape[1]
    if db is not None and c0 == 0 and db.shape[0] > 0:
        for j in range(j0, m, {MR}):  # one call site each: less code to compile than two calls
            _db_rows_{sfx}(db, dy, j, min(m - j, {MR}), scale, accumulate)
    n = dy.shape[0]
    k = x.shape[1]
    below = m - j0 - {MR}
    for r0 in range(0, max(n, 1), DW_ROWS):
        r1 = min(r0 + DW_ROWS, n)
        add = accumulate or r0 > 0
        cf = max(c0, min(c1, k // {NR}))  # column blocks c0:cf are full blocks
        for cc in range(c0, cf, DW_COLS):
            ce = min(cc + DW_COLS, cf)
            _dw_run{MR}_{sfx}(dw, dy, x, j0, cc, ce, scale, add, r0, r1)
            for c in range(cc, ce):
                _dw_rows_{sfx}(dw, dy, x, j0 + {MR}, below, c * {NR}, scale, add, r0, r1)
        for c in range(cf, c1):
            for j in range(j0, m, {MR}):
                _dw_chunk_{sfx}(dw, dy, x, scale, add, j, c * {NR}, r0, r1)


@slp_njit(**SERIAL)
def grad_weight_serial_{sfx}(dw, db, dy, x, scale, accumulate):
    """dw (+)= scale * dy.T @ x and, unless db is None or empty, db (+)= scale * dy.sum(0), on one
    thread."""
    # dy is (n, out), x is (n, in), dw is (out, in), db is (out,), or None or (0,) for no db
    col_blocks = max((x.shape[1] + {NR} - 1) // {NR}, 1)
    tasks = row_tasks(dy.shape[1], {MR}, col_blocks)
    for t in range(tasks):
        if t == tasks - 1 and dy.shape[1] > t * {MR} + {MR}:
            _dw_task_below_{sfx}(dw, db, dy, x, scale, accumulate, t * {MR}, INDEX0, col_blocks)
        else:
            _dw_task_{sfx}(dw, db, dy, x, scale, accumulate, t * {MR}, INDEX0, col_blocks)


@slp_njit(**PARALLEL)
def grad_weight_parallel_{sfx}(dw, db, dy, x, scale, accumulate):
    """dw (+)= scale * dy.T @ x and, unless db is None or empty, db (+)= scale * dy.sum(0); strips
    of output blocks spread over threads, each block summed over the whole batch by one thread."""
    # dy is (n, out), x is (n, in), dw is (out, in), db is (out,), or None or (0,) for no db
    col_blocks = max((x.shape[1] + {NR} - 1) // {NR}, 1)
    tasks = row_tasks(dy.shape[1], {MR}, col_blocks)
    strip = strip_length(tasks, col_blocks, dy.shape[0] * {MR} * {NR})
    strips = (col_blocks + strip - 1) // strip
    for t in prange(tasks * strips):
        c0 = (t % strips) * strip
        j0 = (t // strips) * {MR}
        c1 = min(c0 + strip, col_blocks)
        if t // strips == tasks - 1 and dy.shape[1] > j0 + {MR}:
            _dw_task_below_{sfx}(dw, db, dy, x, scale, accumulate, j0, c0, c1)
        else:
            _dw_task_{sfx}(dw, db, dy, x, scale, accumulate, j0, c0, c1)
'''


def _module(name: str, sfx: str, nr: int) -> str:
    """The kernels of module ``name`` for one dtype (suffix ``sfx``, NR = ``nr``)."""
    source = _dx_source if name == "grad_input" else _dw_source
    parts = ["\n\n" + source(sfx, mr, nr) for mr in ROW_BLOCKS]
    parts.append("\n\n" + source(sfx, MR, nr // 2, "h"))
    if name == "grad_weight":
        parts.append("\n\n" + _db_source(sfx, MR))
    drivers = DX_DRIVERS if name == "grad_input" else DW_DRIVERS
    parts.append("\n" + drivers.replace("{MR}", str(MR)).replace("{NR}", str(nr))
                 .replace("{NH}", str(nr // 2)).replace("{sfx}", sfx))
    return "".join(parts)


def generate() -> dict[pathlib.Path, str]:
    """The full text of each generated module, by path."""
    here = pathlib.Path(__file__).parent
    return {here / f"{name}.py": HEADERS[name] + COMMON + TAILS[name]
            + "".join(_module(name, sfx, nr) for sfx, nr in NR.items())
            for name in HEADERS}


if __name__ == "__main__":
    for path, text in generate().items():
        path.write_text(text)
        print(f"wrote {path}")
