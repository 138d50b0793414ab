"""A model file is trusted no further than it can be checked: the digest covers everything that
defines the model (architecture, activations, reduction, dtypes, shapes, preprocessing, labels),
sizes are checked against the file's own arrays before anything is allocated, every bad file gives
ValueError naming the file and the problem, and saving is atomic."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from fastlinear.datasets import Standardize


def _model():
    return nn.Sequential(fl.Linear(6, 5, seed=0), nn.ReLU(), fl.Linear(5, 3, activation="sigmoid", seed=1))


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    prep = Standardize(np.arange(6.0), np.full(6, 2.0))
    nn.save(_model(), path, preprocess=prep, classes=np.array([1, 2, 7]))
    return path


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _write(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _edit_description(path, edit) -> None:
    """Change the JSON description, keeping its stored digest."""
    members = _members(path)
    meta = json.loads(np.load(io.BytesIO(members["__model__.npy"])).tobytes())
    edit(meta)
    members["__model__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    _write(path, members)


def _refused(path, *fragments) -> str:
    with pytest.raises(ValueError) as info:
        nn.load(path)
    message = str(info.value)
    assert repr(os.fspath(path)) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_round_trip_keeps_preprocessing_and_classes(saved):
    model = nn.load(saved)
    np.testing.assert_array_equal(model.preprocess.mean, np.arange(6.0))
    np.testing.assert_array_equal(model.preprocess.scale, np.full(6, 2.0))
    np.testing.assert_array_equal(model.classes, [1, 2, 7])
    again = saved.parent / "again.npz"
    nn.save(model, again)  # a loaded model saves with its preprocessing and classes
    np.testing.assert_array_equal(nn.load(again).classes, [1, 2, 7])


EDITS = {
    "relu_to_tanh": lambda m: m["layers"].__setitem__(1, {"type": "Tanh"}),
    "appended_relu": lambda m: m["layers"].append({"type": "ReLU"}),
    "reduction_sum_to_mean": lambda m: m["layers"][0].__setitem__("reduction", "mean"),
    "fused_activation": lambda m: m["layers"][2].__setitem__("activation", "tanh"),
    "fused_activation_removed": lambda m: m["layers"][2].__setitem__("activation", None),
    "classes": lambda m: m.__setitem__("classes", [0, 1, 2]),
    "preprocessing_dropped": lambda m: m.__setitem__("preprocess", None),
    "extra_metadata": lambda m: m.__setitem__("note", "x"),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_model_file_edited_description_is_refused(saved, edit):
    _edit_description(saved, EDITS[edit])
    # dropping the preprocessing leaves its arrays unaccounted for, which is found first
    _refused(saved, "unexpected" if edit == "preprocessing_dropped" else "digest")


@pytest.mark.parametrize("name", ["1.weight", "2.bias", "preprocess.mean", "preprocess.scale"])
def test_model_file_edited_array_is_refused(saved, name):
    members = _members(saved)
    key = "2.weight" if name == "1.weight" else name  # module 1 is the ReLU: no parameters
    a = np.load(io.BytesIO(members[f"{key}.npy"]))
    a.flat[0] += 1
    members[f"{key}.npy"] = _npy(a)
    _write(saved, members)
    _refused(saved, "digest")


def _peak_while_loading(path) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(ValueError):
            nn.load(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("size", [20_000, 40_000, 1 << 30])
def test_model_file_absurd_sizes_refused_before_allocating(saved, size):
    """The description claims a huge first layer: refused with a few MB of memory at most."""
    def edit(m):
        m["layers"][0]["in_features"] = size
        m["layers"][0]["out_features"] = size

    _edit_description(saved, edit)
    assert _peak_while_loading(saved) < 4 << 20
    _refused(saved)


def test_model_file_absurd_sizes_in_description_and_header_refused_before_allocating(saved):
    """Description and the array's own .npy header agree on 40,000 x 40,000, but the data are
    not there: refused from the sizes alone."""
    members = _members(saved)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (40_000, 40_000)})
    members["0.weight.npy"] = header.getvalue() + b"\0" * 64
    meta = json.loads(np.load(io.BytesIO(members["__model__.npy"])).tobytes())
    meta["layers"][0]["in_features"] = meta["layers"][0]["out_features"] = 40_000
    members["__model__.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    _write(saved, members)
    assert _peak_while_loading(saved) < 4 << 20
    _refused(saved, "bytes")


def test_model_file_zip_size_claim_beyond_deflate_refused(saved):
    """A zip directory edited to claim a member far larger than its compressed bytes expand to."""
    data = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as zf:
        info = zf.getinfo("0.weight.npy")
    # the central directory entry: signature, then file_size at offset 24 (4 bytes, little-endian)
    name = b"0.weight.npy"
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    data[at + 24 : at + 28] = (info.compress_size * 5000).to_bytes(4, "little")
    saved.write_bytes(bytes(data))
    assert _peak_while_loading(saved) < 4 << 20
    _refused(saved)


@pytest.mark.parametrize("version", [1, 3, "2", None])
def test_model_file_wrong_version_refused(saved, version):
    _edit_description(saved, lambda m: m.__setitem__("version", version))
    _refused(saved, "version")


def test_model_file_not_a_regular_file_refused(tmp_path):
    _refused(tmp_path, "directory")
    for device in ("/dev/null", "/dev/zero"):
        if os.path.exists(device):
            _refused(device, "not a regular file")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    _refused(fifo, "not a regular file")  # refused without opening it (which would block)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + b"\0" * 40],
                         ids=["empty", "text", "zip_magic_only"])
def test_model_file_garbage_refused(tmp_path, content):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    _refused(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_model_file_truncated_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    _refused(saved)


def test_model_file_foreign_or_extra_members_refused(saved, tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, X=np.zeros(3))
    _refused(plain, "__model__")
    members = _members(saved)
    members["extra.npy"] = _npy(np.zeros(2))
    _write(saved, members)
    _refused(saved, "unexpected")


def test_model_file_object_array_never_unpickled(saved):
    members = _members(saved)
    buf = io.BytesIO()
    np.save(buf, np.array(["a"] * 5, dtype=object), allow_pickle=True)
    members["0.bias.npy"] = buf.getvalue()
    _write(saved, members)
    _refused(saved, "0.bias")


def test_save_is_atomic_when_interrupted(saved, monkeypatch):
    """An exception or Ctrl-C while writing leaves the old file as it was, and no temporary file."""
    before = saved.read_bytes()
    real = np.savez_compressed

    def interrupted(fh, **arrays):
        fh.write(b"PK partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nn.save(_model(), saved)
    monkeypatch.setattr(np, "savez_compressed", real)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.npz"]
    nn.load(saved)


def test_save_into_missing_directory_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        nn.save(_model(), tmp_path / "no" / "m.npz")
