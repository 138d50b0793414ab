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
import operator
from typing import Iterable, Union

import numpy as np
import numpy.typing as npt

#: Bytes of alignment: one cache line, and the width of an AVX-512 vector.
ALIGN = 64

Shape = Union[int, Iterable[int]]


def _dims(shape: Shape) -> tuple[int, ...]:
    """``shape`` as a tuple of Python ints; ValueError naming it when a dimension is not an
    integer >= 0."""
    bad = ValueError(f"shape {shape!r}: every dimension must be a non-negative int")
    try:
        items = [shape] if np.ndim(shape) == 0 else list(shape)
    except (TypeError, ValueError):
        raise bad from None
    dims = []
    for d in items:
        if isinstance(d, (bool, np.bool_)):  # operator.index takes them; no dimension is a bool
            raise bad
        try:
            d = operator.index(d)
        except TypeError:
            raise bad from None
        if d < 0:
            raise bad
        dims.append(d)
    return tuple(dims)


def _dtype(dtype: npt.DTypeLike) -> np.dtype:
    dt = np.dtype(np.float32 if dtype is None else dtype)
    if dt.hasobject or dt.itemsize == 0:
        raise TypeError(f"dtype {dt} has no fixed-size numeric storage; empty_aligned makes "
                        f"arrays of numbers (float32, float64, ints, ...)")
    return dt


def _raw(nbytes: int, zeroed: bool) -> np.ndarray:
    """A byte buffer ``ALIGN`` bytes longer than ``nbytes``, so that ``nbytes`` fit from the first
    `ALIGN`-byte boundary in it; zeroed by calloc (np.zeros), which leaves large pages untouched
    until they are written."""
    return (np.zeros if zeroed else np.empty)(nbytes + ALIGN, dtype=np.uint8)


def _on_a_line(shape: Shape, dtype: npt.DTypeLike, zeroed: bool) -> np.ndarray:
    if type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape):
        dims = shape  # the common case, without the general checks' cost
    else:
        dims = _dims(shape)
    dt = dtype if type(dtype) is np.dtype and dtype.kind in "fiuc" else _dtype(dtype)
    nbytes = math.prod(dims) * dt.itemsize
    raw = _raw(nbytes, zeroed)
    return np.ndarray(dims, dt, raw, -raw.ctypes.data % ALIGN)


#: Bytes from which an array that fastlinear allocates on every call, and that a kernel may read
#: next (a layer's output, which the next layer takes as x), is placed on a line (`empty_output`).
#: On the 2-core Intel Xeon (one thread, float32), an x 16 bytes off a line cost the forward
#: about 1.1 us at 32x128 (16 KiB; ``alignment.py offsets``, 1.06x) and 5-6 us at 8x784 (25 KiB;
#: ``alignment.py processes --shape 8x784x128``), while placing an array costs 1-2 us more than
#: np.empty (timeit). Smaller arrays stay numpy's.
PLACE_MIN_BYTES = 32768


def empty_aligned(shape: Shape, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """A new uninitialised C-contiguous array whose first element starts on a 64-byte boundary.

    Args:
        shape: an int or a sequence of ints (Python or numpy), each >= 0.
        dtype: a numpy dtype of fixed-size numbers (default, and for None, float32).

    Returns:
        An array of ``shape`` and ``dtype``, writeable, of the Numba type of ``np.empty``'s; a
        view of a slightly larger byte buffer (``.base`` is that buffer). It costs about 2 us to
        make against numpy's 0.2 us: meant for arrays that are made once and used many times
        (weights, reused buffers, a batch buffer).

    Raises:
        ValueError: a dimension that is negative, or not an integer (a float, a bool, None).
        TypeError: ``dtype`` is not a numpy dtype, or one without fixed-size numeric storage
            (object, a zero-size string).
    """
    return _on_a_line(shape, dtype, zeroed=False)


def zeros_aligned(shape: Shape, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """`empty_aligned` filled with zeros (from calloc, like ``np.zeros``: large pages stay
    untouched until written). Same arguments, same errors."""
    return _on_a_line(shape, dtype, zeroed=True)


def aligned_copy(values: npt.ArrayLike, dtype: npt.DTypeLike = None) -> np.ndarray:
    """A new C-contiguous array on a 64-byte line holding ``values``, in ``dtype`` (default:
    ``values``' own), rounded once as ``np.asarray(values).astype(dtype)`` would round."""
    values = np.asarray(values)
    out = empty_aligned(values.shape, values.dtype if dtype is None else dtype)
    out[...] = values
    return out


def empty_output(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array for a per-call output that a kernel may read next: on a
    64-byte line from `PLACE_MIN_BYTES`, numpy's own below (where placing costs more than it
    saves). ``shape`` a tuple of ints >= 0, ``dtype`` a np.dtype."""
    if math.prod(shape) * dtype.itemsize < PLACE_MIN_BYTES:
        return np.empty(shape, dtype)
    return _on_a_line(shape, dtype, zeroed=False)
