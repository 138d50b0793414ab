"""The kernels' scratch buffers (`fastlinear.kernels._scratch`): one view per name and shape reused
call after call, a grown buffer never shadowed by a stale smaller view, the dtype accepted as a
type or a dtype, 64-byte alignment, one set of buffers per Python thread, and the in-kernel stack
row (one aligned ``alloca`` in the function's entry block)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from numba import carray, njit, types

from fastlinear._config import BLOCKED_SERIAL
from fastlinear.kernels import _scratch
from fastlinear.kernels import grad_weight as weight_kernels


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


@njit(cache=False)
def _sums_on_the_stack(x):
    acc = carray(_scratch.stack_row(x, 32), 32)
    total = x.dtype.type(0)
    for i in range(x.shape[0]):  # fills the row afresh for every row of x: reserved once
        for q in range(32):
            acc[q] = x[i, q] * 2
        for q in range(32):
            total += acc[q]
    return total


def test_stack_row_holds_what_is_written():
    x = np.arange(3 * 32, dtype=np.float32).reshape(3, 32)
    assert _sums_on_the_stack(x) == 2 * x.sum()


@pytest.mark.parametrize("sfx, nr, elem", [("f32", 32, "float"), ("f64", 16, "double")])
def test_the_edge_kernel_sums_in_one_aligned_stack_row(sfx, nr, elem):
    # a copy that is never cached: Numba shows no LLVM IR for code loaded from its cache
    edge = njit(**dict(BLOCKED_SERIAL, cache=False))(getattr(weight_kernels, f"_dw_edge_{sfx}").py_func)
    a = (types.float32 if sfx == "f32" else types.float64)[:, ::1]
    sig = (a, a, a, types.intp, types.intp, a.dtype, types.boolean, types.intp, types.intp)
    edge.compile(sig)
    rows = [line for line in edge.inspect_llvm(sig).splitlines() if " alloca [" in line
            and f"x {elem}]" in line]
    assert rows == [rows[0]] and f"alloca [{nr} x {elem}], align {_scratch.ALIGN}" in rows[0]


def test_each_python_thread_has_its_own_buffers():
    mine = _scratch.shaped("test_threads", np.float32, (4, 16))
    theirs = []
    t = threading.Thread(target=lambda: theirs.append(_scratch.shaped("test_threads", np.float32,
                                                                      (4, 16))))
    t.start()
    t.join()
    assert theirs[0].ctypes.data != mine.ctypes.data
    assert _scratch.shaped("test_threads", np.float32, (4, 16)) is mine
