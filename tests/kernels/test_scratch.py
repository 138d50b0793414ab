"""The kernels' scratch buffers (`fastlinear.kernels._scratch`): one view per name and shape reused
call after call, a grown buffer never shadowed by a stale smaller view, the dtype accepted as a
type or a dtype, 64-byte alignment, and one set of buffers per Python thread."""

from __future__ import annotations

import threading

import numpy as np

from fastlinear.kernels import _scratch


def test_the_same_shape_gives_the_same_view():
    a = _scratch.shaped("test_same", np.float32, (3, 40))
    assert _scratch.shaped("test_same", np.float32, (3, 40)) is a
    assert a.shape == (3, 40) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.ctypes.data % _scratch.ALIGN == 0


def test_a_type_and_a_dtype_name_the_same_buffer():
    a = _scratch.shaped("test_kind", np.float64, (2, 8))
    b = _scratch.shaped("test_kind", np.dtype("float64"), (2, 8))
    assert a.base is b.base and a.ctypes.data == b.ctypes.data
    grown = _scratch.shaped("test_kind", np.dtype("float64"), (100, 128))  # replaces the buffer
    again = _scratch.shaped("test_kind", np.float64, (2, 8))
    assert again.base is grown.base, "the other spelling kept a view of the replaced buffer"


def test_a_larger_shape_grows_the_buffer_and_smaller_shapes_then_use_it():
    small = _scratch.shaped("test_grow", np.float32, (2, 4))
    large = _scratch.shaped("test_grow", np.float32, (64, 1000))
    assert large.size == 64_000 and large.base is not small.base
    again = _scratch.shaped("test_grow", np.float32, (2, 4))
    assert again.base is large.base, "the small view still points at the old, smaller buffer"
    assert again.shape == (2, 4)


def test_a_buffer_too_large_to_keep_is_not_remembered():
    rows = _scratch.KEEP_BYTES // (4 * 256) + 1
    big = _scratch.shaped("test_big", np.float32, (rows, 256))
    assert big.shape == (rows, 256)
    assert _scratch.shaped("test_big", np.float32, (rows, 256)) is not big
    kept = _scratch.shaped("test_big", np.float32, (2, 2))
    assert _scratch.shaped("test_big", np.float32, (2, 2)) is kept


def test_per_thread_rows_are_aligned_and_reused():
    rows = _scratch.per_thread(np.dtype(np.float32))
    assert rows.shape[1] == _scratch.THREAD_SLOT
    assert rows.ctypes.data % _scratch.ALIGN == 0
    assert (rows.strides[0] % _scratch.ALIGN) == 0
    assert _scratch.per_thread(np.dtype(np.float32)) is rows


def test_each_python_thread_has_its_own_buffers():
    mine = _scratch.shaped("test_threads", np.float32, (4, 16))
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(_scratch.shaped("test_threads", np.float32,
                                                                      (4, 16))))
    t.start()
    t.join()
    assert theirs[0].ctypes.data != mine.ctypes.data
    assert _scratch.shaped("test_threads", np.float32, (4, 16)) is mine
