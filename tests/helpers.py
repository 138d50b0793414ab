"""Shared test helpers: parameter grids, random data, layouts and honest tolerances.

Imported by the test modules (``from helpers import ...``); pytest puts this folder on sys.path.
Fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import numpy as np

import fastlinear as fl

# The rounding-error allowance (TOL_FACTOR) and the elementwise `tolerance` are defined once, in
# fastlinear/cli/problems.py, beside the shape classes and FLOP counts that `fastlinear compare`
# and the asv suite use.
from fastlinear.cli.problems import TOL_FACTOR, tolerance  # noqa: F401

BACKENDS = fl.available_backends()
DTYPES = (np.float32, np.float64)
DTYPE_IDS = ("float32", "float64")
REDUCTIONS = ("sum", "mean")

def randn(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Standard normal values, drawn in float64 and rounded once to ``dtype``."""
    return rng.standard_normal(shape).astype(dtype)


def assert_close(got, ref, mag, k: int, dtype, what: str = "result") -> None:
    """Assert ``got`` has ``ref``'s shape, the given dtype, and matches ``ref`` (float64) within
    `tolerance` elementwise. NaN in ``got`` always fails; an element whose terms are all zero
    (mag == 0) must be exactly zero."""
    assert isinstance(got, np.ndarray), f"{what}: expected ndarray, got {type(got).__name__}"
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    err = np.abs(got.astype(np.float64) - ref)
    tol = tolerance(dtype, k, mag)
    bad = ~(err <= tol)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements off (dtype {np.dtype(dtype)}, k={k}); "
            f"first at {idx}: got {got[idx]!r}, expected {ref[idx]!r}, |err| {err[idx]:.3g} > "
            f"tol {tol[idx]:.3g}"
        )


# --- layouts: the same values in differently laid-out memory ------------------------------------

LAYOUTS = ("C", "F", "strided", "reversed")


def with_layout(a: np.ndarray, kind: str) -> np.ndarray:
    """Return an array equal to ``a`` (same shape, dtype and values) laid out as ``kind``:

    * "C": a fresh C-contiguous copy;
    * "F": a transposed view of a C-contiguous transpose, i.e. Fortran order;
    * "strided": every other element of a buffer twice as large along every axis, whose skipped
      elements are NaN, so reading one of them shows up in the result;
    * "reversed": a view with negative strides on every axis.
    """
    a = np.asarray(a)
    if kind == "C":
        out = np.ascontiguousarray(a).copy()
    elif kind == "F":
        out = np.ascontiguousarray(a.T).T
    elif kind == "strided":
        buf = np.full(tuple(2 * s for s in a.shape), np.nan, dtype=a.dtype)
        out = buf[(slice(None, None, 2),) * a.ndim]
        out[...] = a
    elif kind == "reversed":
        flip = (slice(None, None, -1),) * a.ndim
        out = np.ascontiguousarray(a[flip])[flip]
    else:
        raise ValueError(kind)
    assert out.shape == a.shape and out.dtype == a.dtype and np.array_equal(out, a, equal_nan=True)
    return out


def with_steps(a: np.ndarray, steps, fortran: bool = False) -> np.ndarray:
    """An array equal to ``a`` viewed with the given step (e.g. 1, 2, -1, -3) along each axis,
    optionally Fortran-ordered underneath. Skipped buffer elements are NaN."""
    a = np.asarray(a)
    buf = np.full(
        tuple(max(s, 1) * abs(st) for s, st in zip(a.shape, steps)),
        np.nan,
        dtype=a.dtype,
        order="F" if fortran else "C",
    )
    out = buf[tuple(slice(None, None, st) for st in steps)][tuple(slice(0, s) for s in a.shape)]
    out[...] = a
    assert out.shape == a.shape and np.array_equal(out, a)
    return out


def shape_id(n, k: int, m: int) -> str:
    """Readable id for a (rows-or-leading-shape, in_features, out_features) case."""
    lead = "x".join(map(str, n)) if isinstance(n, tuple) else str(n)
    return f"n{lead}-in{k}-out{m}"


def is_cached(layer, x) -> bool:
    """Whether ``layer`` holds ``x`` for backward: the layer keeps its own view of x (same memory,
    shape, strides and dtype), so that reshaping x in place cannot change what backward reads."""
    c = layer._x
    return (
        c is not None
        and c is not x
        and c.__array_interface__["data"] == x.__array_interface__["data"]
        and (c.shape, c.strides, c.dtype) == (x.shape, x.strides, x.dtype)
    )


def numeric_grad(f, a: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function f() with respect to every element of a
    (changed in place and restored)."""
    g = np.zeros(a.shape, dtype=np.float64)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + h
        up = f()
        a[i] = old - h
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * h)
    return g
