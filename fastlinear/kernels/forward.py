"""Forward kernels for tiny, small and skinny shapes, serial and parallel (the packed GEMM in
``packed/`` takes the large ones): y = act(x @ w.T + b).

Each output element is a dot product of a row of x with a row of w, both contiguous, so the kernel
computes 4 x 4 blocks of outputs at a time (16 dot products sharing 8 row loads per step) and
leaves the reduction loop to LLVM's loop vectorizer, which may reorder it because ``FASTMATH``
allows reassociation. No packing: at these sizes x and w sit in cache and w.T never has to be
formed. The bias and the activation are applied when the block is stored. The bias comes in as an
array in every call, empty for none, so that one compiled kernel serves both (a None bias compiled
this module's functions a second time, seconds per dtype on 2 cores); each block takes its columns'
biases (0 for none) as numbers, not the array. Against the earlier kernels, which had a None twin
and passed the bias array to each block, with the same bits (but for the sign of a NaN result,
which no kernel promises): calls with a bias take 0.84x-1.01x the time, calls without one
0.96x-1.13x (the most at 4096x256x10, serial, both dtypes; 1 thread, one process, 7 shapes x 2
dtypes, 2-core AMD EPYC, znver5). Output columns left over at the right edge use 4 x 2 and 4 x 1
blocks, rows left over at the bottom 1 x 4 and 1 x 1 blocks; every block is computed by one thread,
so the summation order of an element depends only on the shape, never on the thread count.

``forward_serial`` has no parallel region: a Numba parallel region costs about 1.4 us to enter,
several times the whole computation at batch 1, 16 x 16.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import INLINE as _INLINE
from .._config import PARALLEL as _PARALLEL
from .._config import SERIAL as _SERIAL
from ..activations import apply

#: rows and columns of a forward block
_R = 4
_C = 4


@njit(**_INLINE)
def _bias(b, j):
    """The bias of output column j: b[j], or 0 where the bias is empty.
    Inlined into each caller: compiled on its own it would also get a Python wrapper, which turns
    a float32 result into a Python float (a widening that tests/kernels/test_float32_ir.py flags
    in any compiled function)."""
    return b[j] if b.shape[0] else b.dtype.type(0)


@njit(**_INLINE)
def _bias2(b, j0):
    """`_bias` of columns j0 and j0 + 1."""
    return _bias(b, j0), _bias(b, j0 + 1)


@njit(**_INLINE)
def _bias4(b, j0):
    """`_bias` of columns j0 to j0 + 3."""
    return _bias(b, j0), _bias(b, j0 + 1), _bias(b, j0 + 2), _bias(b, j0 + 3)


@njit(**_SERIAL)
def _store(y, i, j, v, act):
    """y[i, j] = act(v)."""
    y[i, j] = apply(v, act, y.dtype.type(1))


@njit(**_SERIAL)
def _block4x4(y, x, w, s, act, i0, j0):
    """y[i0:i0+4, j0:j0+4] from four rows of x and four rows of w; ``s`` holds the four columns'
    biases (`_bias4`)."""
    x0, x1, x2, x3 = x[i0], x[i0 + 1], x[i0 + 2], x[i0 + 3]
    w0, w1, w2, w3 = w[j0], w[j0 + 1], w[j0 + 2], w[j0 + 3]
    z = y.dtype.type(0)
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = z
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = z
    for p in range(x.shape[1]):
        u0, u1, u2, u3 = x0[p], x1[p], x2[p], x3[p]
        v0, v1, v2, v3 = w0[p], w1[p], w2[p], w3[p]
        a00 += u0 * v0
        a01 += u0 * v1
        a02 += u0 * v2
        a03 += u0 * v3
        a10 += u1 * v0
        a11 += u1 * v1
        a12 += u1 * v2
        a13 += u1 * v3
        a20 += u2 * v0
        a21 += u2 * v1
        a22 += u2 * v2
        a23 += u2 * v3
        a30 += u3 * v0
        a31 += u3 * v1
        a32 += u3 * v2
        a33 += u3 * v3
    _store(y, i0, j0, a00 + s[0], act)
    _store(y, i0, j0 + 1, a01 + s[1], act)
    _store(y, i0, j0 + 2, a02 + s[2], act)
    _store(y, i0, j0 + 3, a03 + s[3], act)
    _store(y, i0 + 1, j0, a10 + s[0], act)
    _store(y, i0 + 1, j0 + 1, a11 + s[1], act)
    _store(y, i0 + 1, j0 + 2, a12 + s[2], act)
    _store(y, i0 + 1, j0 + 3, a13 + s[3], act)
    _store(y, i0 + 2, j0, a20 + s[0], act)
    _store(y, i0 + 2, j0 + 1, a21 + s[1], act)
    _store(y, i0 + 2, j0 + 2, a22 + s[2], act)
    _store(y, i0 + 2, j0 + 3, a23 + s[3], act)
    _store(y, i0 + 3, j0, a30 + s[0], act)
    _store(y, i0 + 3, j0 + 1, a31 + s[1], act)
    _store(y, i0 + 3, j0 + 2, a32 + s[2], act)
    _store(y, i0 + 3, j0 + 3, a33 + s[3], act)


@njit(**_SERIAL)
def _block4x2(y, x, w, s, act, i0, j0):
    """y[i0:i0+4, j0:j0+2]; ``s`` as `_bias2`."""
    x0, x1, x2, x3 = x[i0], x[i0 + 1], x[i0 + 2], x[i0 + 3]
    w0, w1 = w[j0], w[j0 + 1]
    z = y.dtype.type(0)
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = z
    for p in range(x.shape[1]):
        u0, u1, u2, u3 = x0[p], x1[p], x2[p], x3[p]
        v0, v1 = w0[p], w1[p]
        a00 += u0 * v0
        a01 += u0 * v1
        a10 += u1 * v0
        a11 += u1 * v1
        a20 += u2 * v0
        a21 += u2 * v1
        a30 += u3 * v0
        a31 += u3 * v1
    _store(y, i0, j0, a00 + s[0], act)
    _store(y, i0, j0 + 1, a01 + s[1], act)
    _store(y, i0 + 1, j0, a10 + s[0], act)
    _store(y, i0 + 1, j0 + 1, a11 + s[1], act)
    _store(y, i0 + 2, j0, a20 + s[0], act)
    _store(y, i0 + 2, j0 + 1, a21 + s[1], act)
    _store(y, i0 + 3, j0, a30 + s[0], act)
    _store(y, i0 + 3, j0 + 1, a31 + s[1], act)


@njit(**_SERIAL)
def _block4x1(y, x, w, s0, act, i0, j):
    """y[i0:i0+4, j], ``s0`` the column's bias."""
    x0, x1, x2, x3 = x[i0], x[i0 + 1], x[i0 + 2], x[i0 + 3]
    w0 = w[j]
    z = y.dtype.type(0)
    a0 = a1 = a2 = a3 = z
    for p in range(x.shape[1]):
        v = w0[p]
        a0 += x0[p] * v
        a1 += x1[p] * v
        a2 += x2[p] * v
        a3 += x3[p] * v
    _store(y, i0, j, a0 + s0, act)
    _store(y, i0 + 1, j, a1 + s0, act)
    _store(y, i0 + 2, j, a2 + s0, act)
    _store(y, i0 + 3, j, a3 + s0, act)


@njit(**_SERIAL)
def _block1x4(y, x, w, s, act, i, j0):
    """y[i, j0:j0+4]; ``s`` as `_bias4`."""
    x0 = x[i]
    w0, w1, w2, w3 = w[j0], w[j0 + 1], w[j0 + 2], w[j0 + 3]
    z = y.dtype.type(0)
    a0 = a1 = a2 = a3 = z
    for p in range(x.shape[1]):
        u = x0[p]
        a0 += u * w0[p]
        a1 += u * w1[p]
        a2 += u * w2[p]
        a3 += u * w3[p]
    _store(y, i, j0, a0 + s[0], act)
    _store(y, i, j0 + 1, a1 + s[1], act)
    _store(y, i, j0 + 2, a2 + s[2], act)
    _store(y, i, j0 + 3, a3 + s[3], act)


@njit(**_SERIAL)
def _block1x1(y, x, w, s0, act, i, j):
    """y[i, j], ``s0`` the column's bias."""
    x0 = x[i]
    w0 = w[j]
    a = y.dtype.type(0)
    for p in range(x.shape[1]):
        a += x0[p] * w0[p]
    _store(y, i, j, a + s0, act)


@njit(**_SERIAL)
def _forward_tile(y, x, w, b, act, t, col_tiles):
    """Tile number t (row-major) of _R x _C outputs, or the part of it inside y."""
    n, m = y.shape
    i0 = (t // col_tiles) * _R
    j0 = (t % col_tiles) * _C
    cols = min(m - j0, _C)
    if i0 + _R <= n:
        if cols == _C:
            _block4x4(y, x, w, _bias4(b, j0), act, i0, j0)
        else:
            if cols & 2:
                _block4x2(y, x, w, _bias2(b, j0), act, i0, j0)
            if cols & 1:
                _block4x1(y, x, w, _bias(b, j0 + cols - 1), act, i0, j0 + cols - 1)
    else:
        for i in range(i0, n):
            if cols == _C:
                _block1x4(y, x, w, _bias4(b, j0), act, i, j0)
            else:
                for j in range(j0, j0 + cols):
                    _block1x1(y, x, w, _bias(b, j), act, i, j)


@njit(**_SERIAL)
def _forward_row(y, x, w, b, act, i0):
    """Row of tiles i0 (a multiple of _R): full tiles called from this loop directly. Each call
    of a function that takes arrays and branches costs a few reference-count updates (atomic);
    one more level of calls per tile made the 32x128x128 forward ~20% slower."""
    n, m = y.shape
    col_tiles = (m + _C - 1) // _C
    full_rows = i0 + _R <= n
    for c in range(col_tiles):
        j0 = c * _C
        if full_rows and j0 + _C <= m:
            _block4x4(y, x, w, _bias4(b, j0), act, i0, j0)
        else:
            _forward_tile(y, x, w, b, act, (i0 // _R) * col_tiles + c, col_tiles)


@njit(**_SERIAL)
def forward_serial(y, x, w, b, act):
    """y = act(x @ w.T + b) on one thread; an empty b stands for no bias."""
    # x is (n, in), w is (out, in), b is (out,) or (0,), y is (n, out)
    for i0 in range(0, y.shape[0], _R):
        _forward_row(y, x, w, b, act, i0)


@njit(**_PARALLEL)
def forward_parallel(y, x, w, b, act):
    """y = act(x @ w.T + b), tiles of outputs spread over threads; an empty b stands for no
    bias."""
    # x is (n, in), w is (out, in), b is (out,) or (0,), y is (n, out)
    n, m = y.shape
    col_tiles = (m + _C - 1) // _C
    tiles = ((n + _R - 1) // _R) * col_tiles
    for t in prange(tiles):
        i0 = (t // col_tiles) * _R
        j0 = (t % col_tiles) * _C
        if i0 + _R <= n and j0 + _C <= m:  # a full tile, called directly (see _forward_row)
            _block4x4(y, x, w, _bias4(b, j0), act, i0, j0)
        else:
            # prange's index is unsigned here: as it is, it would compile _forward_tile a second
            # time, for uint64, besides the int64 version the serial kernel uses
            _forward_tile(y, x, w, b, act, np.intp(t), col_tiles)
