"""Save a whole `Sequential` model (architecture and parameters) to .npz and load it back.

The file holds one array per parameter under its `state_dict` name and a ``__model__`` array with
a JSON description of the layers and a SHA-256 digest of every parameter's bytes. Loading checks
the zip's own CRCs, the description and the digest, so a truncated, damaged or edited file raises
ValueError instead of giving a model with wrong weights. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..layer import Linear
from .activations import MODULES
from .sequential import Sequential

FORMAT = "fastlinear.nn.Sequential"
VERSION = 1


def _digest(state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        a = np.ascontiguousarray(state[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _describe(model: Sequential) -> list[dict]:
    layers = []
    for m in model.modules:
        if isinstance(m, Linear):
            layers.append({"type": "Linear", "in_features": m.in_features, "out_features": m.out_features,
                           "bias": m.bias is not None, "dtype": str(m.dtype), "reduction": m.reduction,
                           "activation": m.activation})
        elif type(m) in MODULES.values():
            layers.append({"type": type(m).__name__})
        else:
            raise TypeError(f"cannot save a model containing {type(m).__name__}")
    return layers


def save(model: Sequential, path: str | os.PathLike) -> None:
    """Write the model's layers and parameters to ``path`` (a compressed .npz)."""
    state = model.state_dict()
    meta = {"format": FORMAT, "version": VERSION, "layers": _describe(model), "sha256": _digest(state)}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, __model__=blob, **state)


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    bad = f"{path!r} is not a readable fastlinear model file"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many kinds (zlib.error,
        # BadZipFile, NotImplementedError for a garbled compression method, EOFError, ...)
        raise ValueError(f"{bad} (truncated or damaged?): {type(exc).__name__}: {exc}") from None
    blob = arrays.pop("__model__", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"{bad}: no __model__ description (was it written by fastlinear.nn.save?)")
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{bad}: damaged __model__ description: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{bad}: unknown format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    if meta.get("sha256") != _digest(arrays):
        raise ValueError(f"{path!r}: the parameters do not match the digest stored with them; "
                         f"the file was modified or damaged after it was saved")
    return meta, arrays


def load(path: str | os.PathLike, *, backend: str = "auto") -> Sequential:
    """Rebuild a model saved by `save`, on ``backend``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, damaged, edited, or not a fastlinear model.
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    modules: list = []
    try:
        for spec in meta["layers"]:
            if spec["type"] == "Linear":
                modules.append(Linear(spec["in_features"], spec["out_features"], bias=spec["bias"],
                                      dtype=spec["dtype"], backend=backend, reduction=spec["reduction"],
                                      activation=spec["activation"], seed=0))
            else:
                modules.append({cls.__name__: cls for cls in MODULES.values()}[spec["type"]]())
        model = Sequential(*modules)
        model.load_state_dict(arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path!r}: the model description does not fit its parameters: {exc}") from None
    return model


def load_into(model: Sequential, path: str | os.PathLike) -> None:
    """Copy parameters saved by `save` into an existing model of the same architecture."""
    meta, arrays = _read(os.fspath(path))
    if meta["layers"] != _describe(model):
        raise ValueError(f"{os.fspath(path)!r} holds a different architecture: {meta['layers']}")
    model.load_state_dict(arrays)
