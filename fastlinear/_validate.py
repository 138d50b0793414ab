"""Every input check of the package: the functional API, `Linear`, the `nn` layers and the
optimizers all call these, so a given mistake raises the same error type and message everywhere.

Everything is checked here, in Python, before any kernel runs: a kernel never sees an array of the
wrong dtype, rank or shape, and an error leaves every array it was given untouched.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
REDUCTIONS = ("sum", "mean")


def require_array(name: str, a: object) -> np.ndarray:
    """Return ``a`` if it is a numpy array; raise TypeError otherwise (no silent conversion)."""
    if isinstance(a, (np.ma.MaskedArray, np.matrix)):
        raise TypeError(
            f"{name} is a {type(a).__name__}; pass a plain numpy.ndarray (a mask or matrix "
            f"semantics would be silently ignored)"
        )
    if not isinstance(a, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy.ndarray, got {type(a).__name__}; "
            f"convert it explicitly, e.g. np.asarray({name}, dtype=np.float32)"
        )
    return a


def float_dtype(name: str, a: np.ndarray) -> np.dtype:
    """Return the dtype of ``a`` if it is float32 or float64; raise TypeError otherwise."""
    if a.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} has unsupported dtype {a.dtype}; fastlinear computes in float32 or float64 "
            f"and never casts silently"
        )
    return a.dtype


def resolve_dtype(dtype: object) -> np.dtype:
    """Turn a dtype-like argument into float32 or float64; raise TypeError otherwise."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def same_dtype(name: str, a: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    """Raise TypeError naming both dtypes unless ``a`` and ``ref`` have the same float dtype."""
    if a.dtype not in SUPPORTED_DTYPES:
        raise TypeError(
            f"{name} has unsupported dtype {a.dtype} ({ref_name} has dtype {ref.dtype}); "
            f"fastlinear computes in float32 or float64 and never casts silently"
        )
    if a.dtype != ref.dtype:
        raise TypeError(
            f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}; cast one explicitly "
            f"(e.g. {name}.astype(np.{ref.dtype})), fastlinear never casts silently"
        )


def features(name: str, value: object) -> int:
    """Check a feature count: an integer (not a bool) of at least 0.

    Zero is allowed, as in ``torch.nn.Linear``: a layer with no inputs returns its bias for every
    row, and one with no outputs returns an empty array."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be at least 0, got {value}")
    return int(value)


def flag(name: str, value: object) -> bool:
    """Check a True/False argument; anything else (a string such as "no", 0, None) is refused
    rather than read by its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def reduction(value: object) -> str:
    """Check a gradient reduction name."""
    if not isinstance(value, str) or value not in REDUCTIONS:
        raise ValueError(f"unknown reduction {value!r}; valid reductions are 'sum', 'mean'")
    return value  # type: ignore[return-value]


def learning_rate(lr: object, dtype: np.dtype) -> np.generic:
    """Check a learning rate and return it as a ``dtype`` scalar: any real number that is finite
    in that dtype (zero and negative are the user's choice)."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a real number, got {type(lr).__name__} {lr!r}")
    if not math.isfinite(lr):
        raise ValueError(f"lr must be finite, got {lr}")
    with np.errstate(over="ignore"):
        value = dtype.type(lr)
    if not np.isfinite(value):
        raise ValueError(f"lr {lr} overflows {dtype}")
    return value


def input_matches_weight(x_name: str, x: np.ndarray, w: np.ndarray) -> None:
    """Check that ``x`` is (..., in_features) for a weight of shape (out_features, in_features)."""
    if x.ndim < 1:
        raise ValueError(f"{x_name} must have at least 1 dimension (..., in_features), got a 0-d array")
    if x.shape[-1] != w.shape[1]:
        rows = math.prod(x.shape[:-1])
        raise ValueError(
            f"{x_name} of shape {x.shape} does not fit weight of shape {w.shape}: last dimension "
            f"{x.shape[-1]} != in_features {w.shape[1]} (mat1 and mat2 shapes cannot be multiplied "
            f"({rows}x{x.shape[-1]} and {w.shape[1]}x{w.shape[0]}))"
        )


def grad_output(dy: object, lead: tuple[int, ...], w: np.ndarray) -> np.ndarray:
    """Check that dy, the gradient with respect to a forward output, is an array of the weight's
    dtype with the output's shape ``(*lead, out_features)``; return it."""
    if type(dy) is np.ndarray and dy.dtype == w.dtype and dy.shape == (*lead, w.shape[0]):
        return dy  # the common case, in one test
    dy = require_array("dy", dy)
    same_dtype("dy", dy, "w", w)
    expected = tuple(lead) + (w.shape[0],)
    if dy.shape != expected:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward output has shape {expected} (the input's "
            f"leading dimensions {tuple(lead)} by out_features {w.shape[0]}); dy must match it"
        )
    return dy


def weight_and_bias(w: object, b: object) -> tuple[np.ndarray, np.ndarray | None]:
    """Check a weight (out_features, in_features) and an optional bias (out_features,)."""
    w = require_array("w", w)
    float_dtype("w", w)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {w.shape}")
    if b is not None:
        b = require_array("b", b)
        same_dtype("b", b, "w", w)
        if b.shape != (w.shape[0],):
            raise ValueError(
                f"b must have shape ({w.shape[0]},) to match w of shape {w.shape}, got {b.shape}"
            )
    return w, b


def output_array(out: object, shape: tuple[int, ...], dtype: np.dtype, inputs: dict) -> np.ndarray:
    """Check a user-supplied ``out=``: right shape and dtype, writeable, C-contiguous, and not
    sharing memory with any input (the kernels read inputs while writing the output)."""
    out = require_array("out", out)
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    for name, a in inputs.items():
        if a is not None and np.shares_memory(out, a):
            raise ValueError(f"out overlaps {name}; pass a separate output array")
    return out
