"""Saving and loading whole models: round trip, and clear errors for missing, truncated,
damaged, edited or foreign files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from nn_helpers import small_mlp

from fastlinear import nn


@pytest.fixture
def saved(tmp_path, rng):
    model = small_mlp((5, 7, 6, 4), "tanh", dtype=np.float32)
    path = tmp_path / "model.npz"
    nn.save(model, path)
    return model, path, rng.standard_normal((3, 5)).astype(np.float32)


def test_round_trip_rebuilds_the_same_model(saved):
    model, path, x = saved
    loaded = nn.load(path, backend="blas")
    assert [type(m).__name__ for m in loaded] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    assert loaded.dtype == np.float32 and loaded[0].backend == "blas"
    for (n1, p1, _), (n2, p2, _) in zip(model.named_parameters(), loaded.named_parameters()):
        assert n1 == n2
        np.testing.assert_array_equal(p1, p2)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-5, atol=1e-6)  # blas vs loops sums


def test_round_trip_keeps_a_layers_own_activation(tmp_path, rng):
    import fastlinear as fl

    model = nn.Sequential(fl.Linear(3, 4, activation="sigmoid", seed=0), fl.Linear(4, 2, seed=1))
    nn.save(model, tmp_path / "m.npz")
    loaded = nn.load(tmp_path / "m.npz")
    assert loaded[0].activation == "sigmoid"
    x = rng.standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_load_into_existing_model_and_architecture_mismatch(saved, tmp_path):
    model, path, x = saved
    other = small_mlp((5, 7, 6, 4), "tanh", dtype=np.float32, seed=9)
    nn.load_into(other, path)
    np.testing.assert_array_equal(other(x), model(x))
    with pytest.raises(ValueError, match="different architecture"):
        nn.load_into(small_mlp((5, 7, 4), "tanh", dtype=np.float32), path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "nope.npz")


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.9, 0.99])
def test_truncated_file_is_refused(saved, keep):
    _, path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="not a readable fastlinear model file|truncated"):
        nn.load(path)


def test_flipped_byte_never_gives_wrong_weights(saved):
    """A flipped byte anywhere is either refused with ValueError or lands in a field that does not
    affect the data (a zip header's timestamp, say), in which case the weights load unchanged."""
    model, path, _ = saved
    data = bytearray(path.read_bytes())
    refused = 0
    positions = range(0, len(data), max(1, len(data) // 60))
    for pos in positions:
        damaged = data.copy()
        damaged[pos] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = nn.load(path)
        except ValueError:
            refused += 1
            continue
        for (_, p1, _), (_, p2, _) in zip(model.named_parameters(), loaded.named_parameters()):
            np.testing.assert_array_equal(p1, p2)
    assert refused > len(positions) // 2  # most bytes are compressed data, covered by CRCs


def test_edited_parameters_with_valid_zip_are_detected(saved, tmp_path):
    _, path, _ = saved
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["2.weight"] = arrays["2.weight"] + np.float32(0.5)
    edited = tmp_path / "edited.npz"
    np.savez_compressed(edited, **arrays)
    with pytest.raises(ValueError, match="modified or damaged"):
        nn.load(edited)


def test_foreign_npz_and_non_zip_are_refused(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weight=np.zeros(3))
    with pytest.raises(ValueError, match="no __model__"):
        nn.load(foreign)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        nn.load(text)


def test_saved_file_holds_no_pickles(saved):
    _, path, _ = saved
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    assert "__model__.npy" in names
    with np.load(path, allow_pickle=False) as f:  # would raise on an object array
        assert all(f[k].dtype != object for k in f.files)
