"""What ``fastlinear train --save`` writes reproduces the trained model's predictions on raw
inputs: the standardisation and the label mapping travel with the model, and ``fastlinear
predict`` applies them. Errors end with one line and exit status 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastlinear import nn
from fastlinear.cli import main
from fastlinear.cli.predict import predict_raw
from fastlinear.datasets import encode_labels, load_digits, split_and_standardize

TRAIN = ["train", "--hidden", "32", "--epochs", "4", "--lr", "0.01", "--no-progress", "--seed", "3"]


def _csv(path, X, y=None):
    table = X if y is None else np.column_stack([X, y])
    np.savetxt(path, table, delimiter=",", fmt="%g")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on the digits written as a CSV whose labels are 1..10."""
    tmp = tmp_path_factory.mktemp("predict")
    X, y = load_digits()
    data = _csv(tmp / "digits1.csv", X, y + 1)
    model_path = tmp / "m.npz"
    assert main([*TRAIN, "--data", str(data), "--save", str(model_path)]) == 0
    return tmp, X, y + 1, model_path


def test_saved_model_reproduces_training_labels_and_preprocessing(trained):
    tmp, X, labels, model_path = trained
    model = nn.load(model_path)
    assert model.out_features == 10  # labels 1..10: no empty class 0
    np.testing.assert_array_equal(model.classes, np.arange(1, 11))
    # the standardisation the training run applied, recomputed from the same split
    classes, idx = encode_labels(labels)
    split, prep = split_and_standardize(X.astype(np.float64), idx, dtype=np.float32, seed=3)
    np.testing.assert_array_equal(model.preprocess.mean, prep.mean)
    np.testing.assert_array_equal(model.preprocess.scale, prep.scale)
    expected = classes[model.predict(prep(X, np.float32))]
    np.testing.assert_array_equal(predict_raw(model, X), expected)


def test_predict_command_prints_the_trained_models_labels(trained, capsys):
    tmp, X, labels, model_path = trained
    capsys.readouterr()
    raw = _csv(tmp / "raw.csv", X)  # features only
    assert main(["predict", "--model", str(model_path), "--data", str(raw)]) == 0
    printed = np.array(capsys.readouterr().out.split(), dtype=np.int64)
    model = nn.load(model_path)
    classes, _ = encode_labels(labels)
    prep = model.preprocess
    np.testing.assert_array_equal(printed, classes[model.predict(prep(X, np.float32))])
    assert printed.min() >= 1 and printed.max() <= 10


@pytest.mark.parametrize("fmt", ["csv", "npz"])
def test_predict_command_reports_accuracy_when_labels_present(trained, capsys, fmt):
    tmp, X, labels, model_path = trained
    if fmt == "csv":
        data = _csv(tmp / "labelled.csv", X, labels)
    else:
        data = tmp / "labelled.npz"
        np.savez(data, X=X, y=labels)
    capsys.readouterr()
    assert main(["predict", "--model", str(model_path), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    accuracy = np.mean(predict_raw(nn.load(model_path), X.astype(np.float64)) == labels)
    assert out == f"accuracy {100 * accuracy:.2f}% ({len(labels)} samples)\n"
    assert accuracy > 0.8  # the raw digits, standardised as in training: far above chance


def test_digits_model_scores_on_raw_digits_as_on_standardised(tmp_path, capsys):
    """The default data: the saved model scores on raw pixels what the trained one scores on
    the standardised test split."""
    path = tmp_path / "digits.npz"
    assert main([*TRAIN, "--save", str(path)]) == 0
    model = nn.load(path)
    X, y = load_digits()
    split, _ = split_and_standardize(X, y, dtype=np.float32, seed=3)
    order = np.random.default_rng(3).permutation(len(X))  # train_test_split's shuffle
    test_rows = order[len(X) - len(split.y_test):]
    np.testing.assert_array_equal(predict_raw(model, X[test_rows]), model.predict(split.X_test))


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing_model", "does not exist"),
        ("model_is_directory", "is a directory"),
        ("damaged_model", "not a readable fastlinear model file"),
        ("missing_data", "does not exist"),
        ("wrong_columns", "columns; the model takes 64 features"),
        ("nan_data", "NaN or Inf"),
        ("bad_extension", "unknown extension"),
    ],
)
def test_predict_command_errors_one_line_exit_2(trained, tmp_path, capsys, case, fragment):
    _, X, _, model_path = trained
    model, data = str(model_path), str(_csv(tmp_path / "ok.csv", X[:5]))
    if case == "missing_model":
        model = str(tmp_path / "none.npz")
    elif case == "model_is_directory":
        model = str(tmp_path)
    elif case == "damaged_model":
        bad = tmp_path / "bad.npz"
        bad.write_bytes(model_path.read_bytes()[:200])
        model = str(bad)
    elif case == "missing_data":
        data = str(tmp_path / "none.csv")
    elif case == "wrong_columns":
        data = str(_csv(tmp_path / "narrow.csv", X[:5, :10]))
    elif case == "nan_data":
        bad = X[:5].astype(float)
        bad[0, 0] = np.nan
        data = str(_csv(tmp_path / "nan.csv", bad))
    elif case == "bad_extension":
        data = str(tmp_path / "x.txt")
        open(data, "w").close()
    capsys.readouterr()
    assert main(["predict", "--model", model, "--data", data]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastlinear predict: error: ") and err.count("\n") == 1, err
    assert fragment in err, err


def test_train_save_path_checked_before_training(tmp_path, capsys):
    """An unwritable --save target is refused before the first epoch, not after the last."""
    assert main([*TRAIN, "--epochs", "50", "--save", str(tmp_path)]) == 2  # a directory
    captured = capsys.readouterr()
    assert "epoch" not in captured.out and "is a directory" in captured.err
    if os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert main([*TRAIN, "--epochs", "50", "--save", str(ro / "m.npz")]) == 2
            captured = capsys.readouterr()
            assert "epoch" not in captured.out and "not writable" in captured.err
        finally:
            ro.chmod(0o700)
