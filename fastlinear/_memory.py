"""Arrays that start on a 64-byte boundary (one cache line), for inputs and weights that the
kernels read many times.

The loop kernels load a row of ``w`` (and of ``x`` in the forward and weight gradient) as whole
SIMD vectors, up to 64 bytes at a time. numpy's buffers start wherever malloc puts them: 16 bytes
past a line for large arrays (glibc's mmap chunks) and anywhere on a 16-byte step for small ones,
different from process to process. Off a line, every 64-byte load of such a row spans two cache
lines. ``python asv_benchmarks/scripts/alignment.py processes --op grad_input`` (32x128x128
float32, one thread, 14 fresh processes, 2-core Intel Xeon KVM guest, LLVM ``rocketlake``): with
numpy's buffers 9.2-9.4 us where ``w`` happened to start on a line and 10.3-11.1 us elsewhere; with
every array on a line 9.2-9.9 us in every process. `Linear`, the training library and the CLI
therefore keep their weights, gradients and reused buffers in arrays from `empty_aligned`.
"""

from __future__ import annotations

import math

import numpy as np

#: Bytes of alignment: one cache line, and the width of an AVX-512 vector.
ALIGN = 64


def empty_aligned(shape: int | tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A new uninitialised C-contiguous array whose first element starts on a 64-byte boundary.

    Args:
        shape: int or tuple of non-negative ints.
        dtype: any numpy dtype (default float32).

    Returns:
        An array of ``shape`` and ``dtype``, writeable; a view of a slightly larger byte buffer
        (``.base`` is that buffer), so it costs about 2 us to make against numpy's 0.2 us: meant for
        arrays that are made once and used many times (weights, reused buffers, a batch buffer).

    Raises:
        ValueError: a negative or non-integer dimension.
        TypeError: ``dtype`` is not a numpy dtype.
    """
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    for d in dims:
        if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 0:
            raise ValueError(f"shape {shape!r}: every dimension must be a non-negative int")
    dt = np.dtype(dtype)
    nbytes = math.prod(dims) * dt.itemsize
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start:start + nbytes].view(dt).reshape(dims)


def zeros_aligned(shape: int | tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """`empty_aligned` filled with zeros: same arguments, same errors."""
    a = empty_aligned(shape, dtype)
    a.fill(0)
    return a
