"""Load a user's own data set: a .npz with arrays ``X`` and ``y``, or a .csv whose last column is
the label. Every problem is reported as a ValueError (or FileNotFoundError) naming the file."""

from __future__ import annotations

import os
import warnings

import numpy as np


def load_arrays(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(X, y)``: float64 features (n, features) and int64 labels (n,) from ``path``.

    ``.npz``: arrays named ``X`` (2-D, numeric) and ``y`` (1-D, integer-valued).
    ``.csv``: comma-separated numbers, one sample per line, the label in the last column; a first
    line with no number in it is taken as a header and skipped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown extension, unreadable file, missing arrays, non-numeric values, NaN or
            Inf in X, labels that are not non-negative integers, or a different number of rows in
            X and y.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        X, y = _read_npz(path)
    elif ext == ".csv":
        X, y = _read_csv(path)
    else:
        raise ValueError(f"data file {path!r}: unknown extension {ext!r}; use .npz (arrays X, y) or .csv")
    return _checked(path, X, y)


def load_features(path: str | os.PathLike, n_features: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(X, y)`` for prediction: float64 features (n, n_features) and int64 labels (n,), or
    None for ``y`` when the file holds none.

    ``.npz``: an array ``X`` and optionally ``y``. ``.csv``: ``n_features`` columns (no labels) or
    ``n_features + 1`` (the label in the last column), with an optional header line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: as `load_arrays`, or a number of features other than ``n_features``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        X, y = _read_npz(path, need_y=False)
    elif ext == ".csv":
        table = _read_table(path)
        if table.shape[1] == n_features:
            X, y = table, None
        elif table.shape[1] == n_features + 1:
            X, y = table[:, :-1], table[:, -1]
        else:
            raise ValueError(f"data file {path!r} has {table.shape[1]} columns; the model takes "
                             f"{n_features} features (and optionally a label in one more column)")
    else:
        raise ValueError(f"data file {path!r}: unknown extension {ext!r}; use .npz (array X, optional y) or .csv")
    if y is None:
        X = _checked_features(path, X)
    else:
        X, y = _checked(path, X, y)
    if X.shape[1] != n_features:
        raise ValueError(f"data file {path!r}: X has {X.shape[1]} features; the model takes {n_features}")
    return X, y


def _read_npz(path: str, need_y: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (("X", "y") if need_y else ("X",)) if k not in data.files]
            if missing:
                raise ValueError(
                    f"data file {path!r} has no array named {' or '.join(map(repr, missing))} "
                    f"(it has {sorted(data.files)}); save with np.savez(path, X=features, y=labels)"
                )
            return data["X"], data["y"] if "y" in data.files else None
    except ValueError as exc:
        if "no array named" in str(exc):
            raise
        if "allow_pickle" in str(exc):  # np.load refuses object arrays: non-numeric data
            raise ValueError(f"data file {path!r} holds non-numeric (object) arrays: {exc}") from None
        raise ValueError(f"data file {path!r} is not a readable .npz file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many kinds (zlib.error, ...)
        raise ValueError(f"data file {path!r} is not a readable .npz file: {type(exc).__name__}: {exc}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = _read_table(path)
    if table.shape[1] < 2:
        raise ValueError(
            f"data file {path!r} has {table.shape[1]} column(s); need at least one feature column "
            f"and the label in the last column"
        )
    return table[:, :-1], table[:, -1]


def _read_table(path: str) -> np.ndarray:
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    header = bool(first.strip()) and not any(_is_number(f) for f in first.split(","))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": checked below
            table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2, skiprows=int(header))
    except ValueError as exc:
        raise ValueError(f"data file {path!r}: non-numeric or ragged data: {exc}") from None
    if table.shape[0] == 0:
        raise ValueError(f"data file {path!r} has no data rows")
    return table


def _checked_features(path: str, X: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
        raise ValueError(f"data file {path!r}: X has non-numeric dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"data file {path!r}: X must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"data file {path!r}: X of shape {X.shape} is empty")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"data file {path!r}: X contains NaN or Inf")
    return X


def _checked(path: str, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    for name, a in (("X", X), ("y", y)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
            raise ValueError(f"data file {path!r}: {name} has non-numeric dtype {a.dtype}")
    if X.ndim != 2:
        raise ValueError(f"data file {path!r}: X must be 2-D (samples, features), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"data file {path!r}: y must be 1-D (samples,), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(
            f"data file {path!r}: X has {X.shape[0]} rows (shape {X.shape}) but y has "
            f"{y.shape[0]} labels; they must match"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"data file {path!r}: X of shape {X.shape} is empty")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError(f"data file {path!r}: X contains NaN or Inf")
    yf = y.astype(np.float64)
    if not (np.isfinite(yf).all() and (yf == np.round(yf)).all() and (yf >= 0).all()):
        raise ValueError(f"data file {path!r}: labels in y must be non-negative integers (class indices)")
    return X, yf.astype(np.int64)
