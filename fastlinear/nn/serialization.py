"""Save a whole `Sequential` model (architecture, parameters, and the preprocessing and labels that
go with it) to .npz, and load it back.

File format (version 2): a zip of .npy arrays, as `numpy.savez_compressed` writes it, holding

* one array per parameter under its `state_dict` name (``"0.weight"``, ``"0.bias"``, ...);
* optionally ``preprocess.mean`` and ``preprocess.scale``, (in_features,) float64: the
  standardisation the model's inputs need (`fastlinear.datasets.Standardize`);
* ``__model__``: uint8 bytes of a JSON object with ``format``, ``version``, ``layers`` (type,
  sizes, bias, dtype, reduction and activation of each module), ``preprocess`` (null or
  ``"standardize"``), ``classes`` (null or the list of original labels, one per output) and
  ``sha256``.

The SHA-256 digest covers everything else in the JSON and every array's name, dtype, shape and
bytes, so any change to the architecture, the parameters, the preprocessing or the labels is
detected. It is a check against damage and edits, not a signature: whoever can write the file can
also write a matching digest, so load files only from sources you trust with the model's
predictions (loading never runs code: nothing is unpickled).

Loading checks, in this order and before any array's data is read: that the path is a regular
file; the zip's directory; the JSON's size and fields; that every array the description implies is
present with the shape and dtype it implies (read from the array's own header), that no other
array is present, and that each array's stored size equals its header's (and is at most what
deflate can expand the member's compressed bytes to). Memory use is therefore bounded by what the
file really holds. Any failure raises ValueError naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import zipfile
from typing import NoReturn

import numpy as np

from .._io import atomic_write
from ..datasets.split import Standardize
from ..layer import Linear
from .activations import MODULES
from .sequential import Sequential

FORMAT = "fastlinear.nn.Sequential"
VERSION = 2

#: Largest JSON description accepted, in bytes (a 1,000-layer model needs about 150 KB).
MAX_DESCRIPTION = 1 << 20
#: Deflate expands its input at most about 1032-fold; a member claiming more is refused unread.
_DEFLATE_RATIO = 1100
_PREPROCESS = ("preprocess.mean", "preprocess.scale")
_DTYPES = ("float32", "float64")


def _canonical(meta: dict) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True,
                      separators=(",", ":")).encode()


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the description (all but the digest itself) and every array."""
    h = hashlib.sha256(_canonical(meta))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\n{name}:{a.dtype.str}:{a.shape}\n".encode())
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


def save(model: Sequential, path: str | os.PathLike, *, preprocess: Standardize | None = None,
         classes: np.ndarray | None = None) -> None:
    """Write the model to ``path`` (a compressed .npz), atomically: the file at ``path`` is either
    the old one or the complete new one, even if writing is interrupted or the disk fills.

    Args:
        model: the model.
        path: the target file; its directory must exist.
        preprocess: the standardisation the model's inputs need, or None; defaults to the model's
            own ``preprocess`` attribute (which `load` sets), so a loaded model saves as it was.
        classes: the original label of each output (C,) integers, or None (outputs are the
            labels); defaults to the model's ``classes`` attribute.

    Raises:
        TypeError: a module that cannot be saved, or ``preprocess`` not a `Standardize`.
        ValueError: ``preprocess`` or ``classes`` do not fit the model's input or output width.
        OSError: the file cannot be written (the target is then unchanged).
    """
    preprocess = getattr(model, "preprocess", None) if preprocess is None else preprocess
    classes = getattr(model, "classes", None) if classes is None else classes
    state = model.state_dict()
    if preprocess is not None:
        if not isinstance(preprocess, Standardize):
            raise TypeError(f"preprocess must be a fastlinear.datasets.Standardize, "
                            f"got {type(preprocess).__name__}")
        if preprocess.n_features != model.in_features:
            raise ValueError(f"preprocess is for {preprocess.n_features} features; the model takes "
                             f"{model.in_features}")
        state.update(zip(_PREPROCESS, (preprocess.mean, preprocess.scale)))
    if classes is not None:
        labels = np.asarray(classes)
        if (labels.shape != (model.out_features,) or not np.issubdtype(labels.dtype, np.integer)
                or len(np.unique(labels)) != labels.size):
            raise ValueError(f"classes must be {model.out_features} distinct integers (one per output), "
                             f"got {labels.dtype} of shape {labels.shape}")
        classes = [int(c) for c in labels]
    meta = {"format": FORMAT, "version": VERSION, "layers": _describe(model),
            "preprocess": None if preprocess is None else "standardize", "classes": classes}
    meta["sha256"] = _digest(meta, state)
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_write(path, "wb") as fh:
        np.savez_compressed(fh, __model__=blob, **state)


class _BadFile(ValueError):
    """A problem found and described by the checks (other errors get wrapped into one)."""


class _File:
    """One model file being checked; ``fail`` raises ValueError naming it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, problem: str) -> NoReturn:
        raise _BadFile(f"model file {self.path!r}: {problem}")


def _regular_file(f: _File) -> None:
    try:
        st = os.stat(f.path)
    except FileNotFoundError:
        raise FileNotFoundError(f"model file {f.path!r} does not exist") from None
    except OSError as exc:
        f.fail(f"cannot be read: {exc.strerror or exc}")
    if stat.S_ISDIR(st.st_mode):
        f.fail("is a directory, not a model file")
    if not stat.S_ISREG(st.st_mode):
        f.fail("is not a regular file (a device, pipe or socket); save models with fastlinear.nn.save")


def _expected(f: _File, meta: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """The arrays the description implies: name -> (shape, dtype); checks every field's type."""
    layers = meta.get("layers")
    if not isinstance(layers, list) or not layers:
        f.fail("the description lists no layers")
    expected: dict[str, tuple[tuple[int, ...], str]] = {}
    first = None
    for i, spec in enumerate(layers):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            f.fail(f"layer {i} of the description is not a {{'type': ...}} object")
        if spec["type"] == "Linear":
            for key in ("in_features", "out_features"):
                v = spec.get(key)
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 1 << 31:
                    f.fail(f"layer {i}: {key} must be an integer in 0..2**31, got {v!r}")
            if spec.get("dtype") not in _DTYPES:
                f.fail(f"layer {i}: dtype must be one of {_DTYPES}, got {spec.get('dtype')!r}")
            if not isinstance(spec.get("bias"), bool):
                f.fail(f"layer {i}: bias must be true or false, got {spec.get('bias')!r}")
            shape = (spec["out_features"], spec["in_features"])
            expected[f"{i}.weight"] = (shape, spec["dtype"])
            if spec["bias"]:
                expected[f"{i}.bias"] = ((spec["out_features"],), spec["dtype"])
            first = first or spec
        elif spec["type"] not in {cls.__name__ for cls in MODULES.values()}:
            f.fail(f"layer {i}: unknown module type {spec['type']!r}")
    if first is None:
        f.fail("the description has no Linear layer")
    if meta.get("preprocess") not in (None, "standardize"):
        f.fail(f"unknown preprocessing {meta.get('preprocess')!r}")
    if meta.get("preprocess") == "standardize":
        for name in _PREPROCESS:
            expected[name] = ((first["in_features"],), "float64")
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in classes)):
        f.fail("classes must be null or a list of integers")
    return expected


def _read(path: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked description and arrays of a model file (see the module docstring)."""
    f = _File(path)
    _regular_file(f)
    try:
        with zipfile.ZipFile(path) as zf:
            return _read_zip(f, zf, os.path.getsize(path))
    except _BadFile:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged bytes raise many kinds: BadZipFile (a CRC
        # error), zlib.error, EOFError, struct.error, NotImplementedError (a garbled compression
        # method), ValueError from numpy's header parser
        f.fail(f"not a readable fastlinear model file (truncated or damaged?): {type(exc).__name__}: {exc}")


def _check_header(f: _File, fp, name: str, shape, dtype) -> None:
    """Read a .npy header from ``fp`` and check it is ``shape`` ``dtype`` in C order."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        f.fail(f"array {name!r} has an unsupported .npy version {version}")
    if got_dtype != np.dtype(dtype) or tuple(got_shape) != tuple(shape) or fortran:
        f.fail(f"array {name!r} is {tuple(got_shape)} {got_dtype}{' Fortran-ordered' if fortran else ''} "
               f"but the description says {tuple(shape)} {np.dtype(dtype)}")


def _member(f: _File, zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype, file_size: int) -> np.ndarray:
    """Read one .npy member after checking its header and sizes against what is expected."""
    name = info.filename[:-4]
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            f.fail(f"array {name!r}: stored size {info.file_size} differs from its compressed size")
    elif info.file_size > _DEFLATE_RATIO * info.compress_size + 1024:
        f.fail(f"array {name!r} claims {info.file_size} bytes from {info.compress_size} compressed ones")
    if info.compress_size > file_size:
        f.fail(f"array {name!r} claims {info.compress_size} compressed bytes in a {file_size}-byte file")
    with zf.open(info) as fp:
        _check_header(f, fp, name, shape, dtype)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if info.file_size != fp.tell() + nbytes:
            f.fail(f"array {name!r} holds {info.file_size - fp.tell()} bytes of data; its header "
                   f"{tuple(shape)} {np.dtype(dtype)} needs {nbytes}")
        data = fp.read(nbytes)
    if len(data) != nbytes:
        f.fail(f"array {name!r} is truncated: {len(data)} of {nbytes} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape)  # read-only; load copies it into the model


def _read_zip(f: _File, zf: zipfile.ZipFile, file_size: int) -> tuple[dict, dict[str, np.ndarray]]:
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        f.fail("the zip holds two members of one name")
    by_name = {i.filename: i for i in infos}
    info = by_name.get("__model__.npy")
    if info is None:
        f.fail("no __model__ description; not a file written by fastlinear.nn.save")
    if info.file_size > MAX_DESCRIPTION:
        f.fail(f"the __model__ description claims {info.file_size} bytes (at most {MAX_DESCRIPTION})")
    with zf.open(info) as fp:
        try:
            blob = np.lib.format.read_array(fp, allow_pickle=False)
        except ValueError as exc:
            f.fail(f"damaged __model__ description: {exc}")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        f.fail("the __model__ description is not a byte string")
    try:
        meta = json.loads(blob.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        f.fail(f"damaged __model__ description: {exc}")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        f.fail(f"not a fastlinear model (format {meta.get('format') if isinstance(meta, dict) else meta!r})")
    version = meta.get("version")
    if version != VERSION:
        f.fail(f"format version {version!r}; this fastlinear reads version {VERSION}"
               + (" (version 1's digest did not cover the architecture, so such files are not trusted)"
                  if version == 1 else " (written by a newer fastlinear?)"))
    if not isinstance(meta.get("sha256"), str):
        f.fail("the description has no digest")
    expected = _expected(f, meta)
    files = {n[:-4] for n in names if n.endswith(".npy")} - {"__model__"}
    if set(names) - {f"{n}.npy" for n in files} - {"__model__.npy"}:
        f.fail(f"unexpected zip members {sorted(set(names) - {n + '.npy' for n in files} - {'__model__.npy'})}")
    if files != set(expected):
        f.fail(f"the arrays do not match the description: missing {sorted(set(expected) - files)}, "
               f"unexpected {sorted(files - set(expected))}")
    total = sum(math.prod(s) * np.dtype(d).itemsize for s, d in expected.values())
    if total > sum(i.file_size for i in infos):
        f.fail(f"the description needs {total} bytes of arrays; the file holds fewer")
    # Every header first, then the data: a wrong size anywhere is found before anything is read.
    for name, (shape, dtype) in expected.items():
        with zf.open(by_name[f"{name}.npy"]) as fp:
            _check_header(f, fp, name, shape, dtype)
    arrays = {name: _member(f, zf, by_name[f"{name}.npy"], shape, dtype, file_size)
              for name, (shape, dtype) in expected.items()}
    if meta["sha256"] != _digest(meta, arrays):
        f.fail("its contents do not match the digest stored with them; the file was modified or "
               "damaged after it was saved")
    return meta, arrays


def load(path: str | os.PathLike, *, backend: str = "auto") -> Sequential:
    """Rebuild a model saved by `save`, on ``backend``.

    The returned `Sequential` has two more attributes: ``preprocess``, the `Standardize` its
    inputs need (None if it was saved without one), and ``classes``, an int64 array with the
    original label of each output (None if the outputs are the labels). Predictions on raw
    features ``X`` are then ``model.classes[model.predict(model.preprocess(X, model.dtype))]``
    (skip either step where it is None); ``fastlinear predict`` does exactly this.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the path is a directory or a device; the file is truncated, damaged, edited,
            of another format version, or not a fastlinear model; the message names the file.
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
        model.load_state_dict({k: v for k, v in arrays.items() if k not in _PREPROCESS})
        classes = meta.get("classes")
        if classes is not None and len(classes) != model.out_features:
            raise ValueError(f"{len(classes)} classes for {model.out_features} outputs")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model file {path!r}: the model description does not fit its parameters: "
                         f"{exc}") from None
    model.preprocess = (Standardize(arrays["preprocess.mean"], arrays["preprocess.scale"])
                        if meta.get("preprocess") else None)
    model.classes = None if classes is None else np.array(classes, dtype=np.int64)
    return model


def load_into(model: Sequential, path: str | os.PathLike) -> None:
    """Copy parameters saved by `save` into an existing model of the same architecture (its
    ``preprocess`` and ``classes`` attributes are not changed)."""
    meta, arrays = _read(os.fspath(path))
    if meta["layers"] != _describe(model):
        raise ValueError(f"model file {os.fspath(path)!r} holds a different architecture: {meta['layers']}")
    model.load_state_dict({k: v for k, v in arrays.items() if k not in _PREPROCESS})
