"""Packing: copy a block of an operand into the contiguous panel order the micro-kernel reads.

A packed panel of width R (MR rows of A or NR columns of B) over kc steps of the reduction is
stored step-major: element (p, r) at ``off + p * R + r``, so each step of the micro-kernel reads
R consecutive values. Panels narrower than R (the edge of the matrix) are padded with zeros, so
the micro-kernel always runs full size and the caller stores only the valid part.

Two source orientations cover every operand of the three products:
* `pack_rows`: the panel runs across rows of ``src`` and the reduction along a row (x and dy as A
  of the forward and input-gradient products; w as B of the forward product). Reads are
  contiguous along each row, writes stride R.
* `pack_cols`: the panel runs along a row of ``src`` and the reduction down its rows (dy as A of
  the weight gradient; x and w as B of the weight- and input-gradient products). Both reads and
  writes are contiguous.
All offsets and sizes are np.uintp (unsigned indices vectorize; signed ones made packing 4x
slower in the measurements behind this package).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..._config import ORDERED, SERIAL
from ._prefetch import prefetch_read

_U = np.uintp
_CHUNK = np.uintp(64)
#: Prefetch distances: elements ahead along a row (pack_rows), rows ahead (pack_cols). Measured
#: on 64 x 4096 x 4096 float32: packing took 3.9x as long as copying w with no prefetch, 2.4x with
#: 16 rows ahead (4 rows: 3.5x; 32 rows: same as 16).
_AHEAD = np.uintp(256)
_ROWS_AHEAD = np.uintp(16)


@njit(**SERIAL)
def pack_rows(dst, off, src, r0, rows, c0, kc, width):
    """dst[off + p * width + r] = src[r0 + r, c0 + p] for r < rows, 0 for rows <= r < width."""
    # src is (R, K); the panel covers rows r0 .. r0 + rows and columns c0 .. c0 + kc
    zero = dst.dtype.type(0)
    line = _U(64 // dst.itemsize)  # elements per 64-byte cache line
    # A transpose. Done in chunks of _CHUNK steps so the chunk's part of dst (width x _CHUNK
    # elements) stays in L1 while every row writes into it: whole rows at once wrote 128 KB with
    # a 128-byte stride and ran 2.3x slower (205 vs 89 us per 1024 x 256 float32 block).
    for q0 in range(_U(0), kc, _CHUNK):
        q1 = min(kc, q0 + _CHUNK)
        for r in range(rows):
            row = src[r0 + r]
            d = off + r
            for p in range(q0, q1):
                dst[d + p * width] = row[c0 + p]
            # fetch this row's part of a later chunk: the rows stream from memory in 256-byte
            # pieces, which the hardware prefetcher alone served at a third of copy speed
            for q in range(q1 + _AHEAD, q1 + _AHEAD + _CHUNK, line):
                prefetch_read(row, c0 + q)
        for r in range(rows, width):
            d = off + r
            for p in range(q0, q1):
                dst[d + p * width] = zero


@njit(**SERIAL)
def pack_cols(dst, off, src, r0, kc, c0, cols, width):
    """dst[off + p * width + j] = src[r0 + p, c0 + j] for j < cols, 0 for cols <= j < width."""
    # src is (K, C); the panel covers rows r0 .. r0 + kc and columns c0 .. c0 + cols
    zero = dst.dtype.type(0)
    line = _U(64 // dst.itemsize)  # elements per 64-byte cache line
    for p in range(kc):
        row = src[r0 + p]
        d = off + p * width
        for j in range(cols):
            dst[d + j] = row[c0 + j]
        for j in range(cols, width):
            dst[d + j] = zero
        # the row _ROWS_AHEAD further down: short pieces of many rows defeat the hardware prefetcher
        ahead = src[min(r0 + p + _ROWS_AHEAD, _U(src.shape[0]) - _U(1))]
        for j in range(_U(0), cols, line):
            prefetch_read(ahead, c0 + j)


@njit(**SERIAL)
def pack_cols_scaled_sum(dst, off, src, r0, kc, c0, cols, width, scale, leaves, leaf, with_db):
    """`pack_cols` of ``scale * src``; when ``with_db``, also leaves[leaf, c0 + j] = the sum over
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
