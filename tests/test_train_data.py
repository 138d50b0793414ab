"""The embedded digits data, the seeded split, and loading a user's .npz/.csv with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear.datasets import load_arrays, load_digits, split_and_scale, train_test_split


def test_digits_shapes_ranges_and_classes():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.uint8
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0 and X.max() == 16
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.min() >= 170
    # the first image of the set is a zero: a ring of ink around an empty middle
    assert y[0] == 0 and X[0].reshape(8, 8)[3:5, 3:5].sum() == 0


def test_digits_notice_is_shipped_with_the_data():
    from importlib import resources

    text = resources.files("fastlinear.datasets").joinpath("DIGITS.md").read_text()
    assert "CC BY 4.0" in text and "Alpaydin" in text and "Kaynak" in text


def test_split_is_seeded_disjoint_and_complete():
    X, y = np.arange(20).reshape(10, 2), np.arange(10)
    a = train_test_split(X, y, 0.3, seed=1)
    b = train_test_split(X, y, 0.3, seed=1)
    c = train_test_split(X, y, 0.3, seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[3], c[3])
    assert len(a[1]) == 7 and len(a[3]) == 3
    assert sorted(np.concatenate([a[1], a[3]])) == list(range(10))


def test_split_and_scale_standardises_with_training_statistics():
    s = split_and_scale(*load_digits(), dtype=np.float64)
    assert s.X_train.flags.c_contiguous and s.X_train.dtype == np.float64
    np.testing.assert_allclose(s.X_train.mean(axis=0), 0, atol=1e-12)
    assert (s.X_train.std(axis=0)[s.X_train.std(axis=0) > 0] == pytest.approx(1.0))


def test_user_npz_and_csv_round_trip(tmp_path):
    X = np.array([[0.5, 1.0], [2.0, 3.5], [1.0, 0.0]])
    y = np.array([1, 0, 2])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    for got in (load_arrays(tmp_path / "d.npz"),):
        np.testing.assert_array_equal(got[0], X)
        np.testing.assert_array_equal(got[1], y)
    (tmp_path / "d.csv").write_text("a,b,label\n0.5,1,1\n2,3.5,0\n1,0,2\n")
    Xc, yc = load_arrays(tmp_path / "d.csv")
    np.testing.assert_array_equal(Xc, X)
    np.testing.assert_array_equal(yc, y)
    (tmp_path / "nohead.csv").write_text("0.5,1,1\n2,3.5,0\n1,0,2\n")
    np.testing.assert_array_equal(load_arrays(tmp_path / "nohead.csv")[0], X)


@pytest.mark.parametrize(
    "name, write, fragment",
    [
        ("a.npz", lambda p: np.savez(p, X=np.zeros((3, 2))), "no array named 'y'"),
        ("a.npz", lambda p: np.savez(p, features=np.zeros((3, 2)), y=np.zeros(3)), "no array named 'X'"),
        ("a.npz", lambda p: np.savez(p, X=np.zeros((3, 2)), y=np.zeros(4)), "X has 3 rows"),
        ("a.npz", lambda p: np.savez(p, X=np.array([["a", "b"]]), y=np.zeros(1)), "non-numeric"),
        ("a.npz", lambda p: np.savez(p, X=np.zeros(3), y=np.zeros(3)), "2-D"),
        ("a.npz", lambda p: np.savez(p, X=np.zeros((2, 2)), y=np.array([0.5, 1])), "non-negative integers"),
        ("a.npz", lambda p: np.savez(p, X=np.full((2, 2), np.nan), y=np.zeros(2)), "NaN"),
        ("a.npz", lambda p: p.write_bytes(b"PK\x03\x04garbage"), "not a readable .npz"),
        ("a.csv", lambda p: p.write_text("1,2,0\n3,x,1\n"), "non-numeric"),
        ("a.csv", lambda p: p.write_text("1,2,0\n3,1\n"), "non-numeric or ragged"),
        ("a.csv", lambda p: p.write_text("1\n2\n"), "at least one feature"),
        ("a.csv", lambda p: p.write_text("h1,h2\n"), "no data rows"),
        ("a.txt", lambda p: p.write_text("1,2\n"), "unknown extension"),
    ],
)
def test_user_file_errors_are_clear(tmp_path, name, write, fragment):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError) as info:
        load_arrays(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_user_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_arrays(tmp_path / "none.npz")


def test_pyproject_ships_the_data_files_with_the_package():
    tomllib = pytest.importorskip("tomllib")
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["package-data"]["fastlinear.datasets"]
    for name in ("digits.npz", "DIGITS.md"):
        assert name in shipped
        assert (root / "fastlinear" / "datasets" / name).is_file()
