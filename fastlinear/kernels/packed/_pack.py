"""Packing: copy a block of an operand into the contiguous panel order the micro-kernel reads.

A packed panel of width R (MR rows of A or NR columns of B) over kc steps of the reduction is
stored step-major: element (p, r) at ``off + p * R + r``, so each step of the micro-kernel reads
R consecutive values. Panels narrower than R (the edge of the matrix) are padded with zeros, so
the micro-kernel always runs full size and the caller stores only the valid part.

Two source orientations cover every operand of the three products:
* `pack_rows`: the panel runs across rows of ``src`` and the reduction along a row (x and dy as A
  of the forward and input-gradient products; w as B of the forward product). A transpose:
  it writes each step's R values in turn, reading one value from each of R rows.
* `pack_col_panels`: the panel runs along a row of ``src`` and the reduction down its rows (x and
  w as B of the weight- and input-gradient products). Both reads and writes are contiguous; one
  call packs several neighbouring panels, so that each source row is read in pieces of
  `GROUP_BYTES`. `pack_cols_scaled_sum` packs one panel of dy, scaled, as A of the weight
  gradient and sums its bias-gradient leaf.
All offsets and sizes are np.uintp (unsigned indices vectorize; signed ones made packing 4x
slower in the measurements behind this package).

Measured packing all of w (4096 x 4096, in k-blocks of KC, the driver's tasks), 2-core Intel
Xeon (KVM guest, LLVM ``rocketlake``), milliseconds at 1 / 2 threads, a plain copy of w 8-10 /
8 (float32) and 16-17 / 16 (float64):

====================================================  ===================  ===================
packing                                                float32              float64
====================================================  ===================  ===================
`pack_rows`, each row's run of steps written in turn   40-43 / 21-22        46-59 / 24-30
`pack_rows`, step by step (this module)                23-25 / 10-11        29-42 / 14
one panel per call (128-byte pieces of each row)       34-41 / 17-20        61-76 / 34-37
`pack_col_panels`, 8 panels (1 KiB pieces)             16-21 / 9.4-10       35-38 / 17-18
`pack_col_panels`, 4 / 16 panels                       23-25 / 11-13        38-48 / 20-24
====================================================  ===================  ===================
"""

from __future__ import annotations

from numba import njit

from ..._config import ORDERED, SERIAL


@njit(**SERIAL)
def pack_rows(dst, off, src, r0, rows, c0, kc, width):
    """dst[off + p * width + r] = src[r0 + r, c0 + p] for r < rows, 0 for rows <= r < width."""
    # src is (R, K); the panel covers rows r0 .. r0 + rows and columns c0 .. c0 + kc.
    # Step by step: each step's `width` values are written together (one cache line or two)
    # while the `rows` source lines stay in L1 for the next steps; writing each row's run of
    # steps in turn stored every value to another line and ran 1.5-2x slower (module docstring).
    zero = dst.dtype.type(0)
    for p in range(kc):
        d = off + p * width
        col = c0 + p
        for r in range(rows):
            dst[d + r] = src[r0 + r, col]
        for r in range(rows, width):
            dst[d + r] = zero


#: bytes of each source row that one task of `pack_col_panels` copies (8 panels of NR = 32 float32
#: or 16 float64 values); see the module docstring for 4 and 16 panels
GROUP_BYTES = 1024


@njit(**SERIAL)
def pack_col_panels(dst, off, src, r0, q0, qn, kc, jp0, jp1, n, width):
    """Steps q0 .. q0 + qn of panels jp0 .. jp1 of a k-block that starts at row r0 of ``src``:
    dst[off + (jp - jp0) * width * kc + p * width + j] = src[r0 + p, jp * width + j] for
    j < width while jp * width + j < n, else 0. A k-block of kc steps keeps each panel's
    width * kc elements together, as the micro-kernel reads them."""
    # src is (K, n): a panel is `width` columns of it, over the kc rows of the k-block
    zero = dst.dtype.type(0)
    for p in range(q0, q0 + qn):
        row = src[r0 + p]
        for jp in range(jp0, jp1):
            c0 = jp * width
            cols = min(width, n - c0)
            d = off + (jp - jp0) * width * kc + p * width
            for j in range(cols):
                dst[d + j] = row[c0 + j]
            for j in range(cols, width):
                dst[d + j] = zero


@njit(**SERIAL)
def pack_cols_scaled_sum(dst, off, src, r0, kc, c0, cols, width, scale, leaves, leaf, with_db):
    """dst[off + p * width + j] = scale * src[r0 + p, c0 + j] for j < cols, 0 for cols <= j <
    width (one panel, p < kc); when ``with_db``, also leaves[leaf, c0 + j] = the sum over
    the kc rows of scale * src[., c0 + j], added in row order (one leaf of the weight gradient's
    fused bias gradient, see `fastlinear.kernels._sums`)."""
    # src is dy (n, out): the panel is `width` output features over kc batch rows
    zero = dst.dtype.type(0)
    for p in range(kc):
        row = src[r0 + p]
        d = off + p * width
        for j in range(cols):
            dst[d + j] = scale * row[c0 + j]
        for j in range(cols, width):
            dst[d + j] = zero
    if with_db:
        _leaf_sum(leaves[leaf], c0, dst, off, kc, cols, width)


@njit(**ORDERED)
def _leaf_sum(acc, c0, dst, off, kc, cols, width):
    """acc[c0 + j] = sum over p < kc of dst[off + p * width + j], in order of p (no reassociation:
    see `fastlinear._config.ORDERED`)."""
    for j in range(cols):
        acc[c0 + j] = 0
    for p in range(kc):
        d = off + p * width
        for j in range(cols):
            acc[c0 + j] += dst[d + j]
