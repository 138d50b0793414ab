"""``fastlinear train`` sizes everything from the data: the batch is at most the training set,
labels far beyond the number of samples are refused before anything is allocated, an empty
--hidden is an error and "none" is the explicit way to ask for no hidden layer; and the epoch that
compiled kernels says so and is left out of the summary."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear import cli
from fastlinear.cli.train import Epoch, _Reporter, fit, summary_rate


def _csv(path, X, y) -> str:
    rows = "\n".join(",".join(f"{v:.6f}" for v in r) + f",{c}" for r, c in zip(X, y))
    path.write_text(rows + "\n")
    return str(path)


def test_batch_larger_than_the_data_is_capped_at_the_training_set(tmp_path, rng, restore_threads):
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] > 0).astype(int)
    data = _csv(tmp_path / "d.csv", X, y)
    # 1e9 samples per batch would be a 12 GB buffer if sized from the option.
    huge = fit(data=data, epochs=2, hidden=[4], batch_size=10**9, threads=1)
    whole = fit(data=data, epochs=2, hidden=[4], batch_size=32, threads=1)  # 32 training rows
    assert [e.loss for e in huge.history] == [e.loss for e in whole.history]


@pytest.mark.parametrize("label", [10**9, 61])
def test_label_values_do_not_size_the_output_layer(tmp_path, rng, label, restore_threads):
    """Labels are mapped to class indices in sorted order: a stray label of 1e9 in a 60-row file is
    one more class (3 outputs), not a 1e9-wide output layer."""
    X = rng.standard_normal((60, 3))
    y = np.zeros(60, dtype=np.int64)
    y[::2] = 1
    y[5] = label
    result = fit(data=_csv(tmp_path / "d.csv", X, y), epochs=1, hidden=[4], threads=1)
    assert result.model.out_features == 3
    assert list(result.classes) == [0, 1, label]


def test_hidden_none_trains_a_linear_classifier_and_empty_is_an_error(capsys, restore_threads):
    assert cli.main(["train", "--hidden", "none", "--epochs", "1", "--no-progress",
                     "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "hidden none, " in out and "relu" not in out.splitlines()[0]  # no layer to activate
    model = fit(hidden=[], epochs=1, threads=1).model
    assert [m.out_features for m in model if hasattr(m, "out_features")] == [10]
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--hidden", ""])
    assert exc.value.code == 2
    assert "--hidden is empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    "settings, fragment",
    [
        (dict(epochs=0), "epochs must be an integer >= 1"),
        (dict(batch_size=2.5), "batch_size must be an integer >= 1"),
        (dict(lr=float("nan")), "the learning rate\\) must be finite"),
        (dict(momentum=-1.0), "momentum must be finite and >= 0"),
        (dict(test_fraction=1.0), "test_fraction must be between 0 and 1"),
        (dict(hidden=[0]), "hidden layer sizes"),
        (dict(backend="fortran"), "unknown backend 'fortran'"),
        (dict(optimizer="lbfgs"), "unknown optimizer 'lbfgs'"),
    ],
)
def test_fit_checks_its_keyword_settings(settings, fragment):
    with pytest.raises(ValueError, match=fragment):
        fit(**settings)


def test_an_epoch_that_compiled_says_so_and_is_left_out_of_the_summary(capsys):
    report = _Reporter(epochs=3, progress=False)
    history = [Epoch(1, 1.0, 0.5, 25.0, compiled=True), Epoch(2, 0.5, 0.6, 900.0, compiled=True),
               Epoch(3, 0.4, 0.7, 1000.0), Epoch(4, 0.3, 0.8, 1100.0)]
    for e in history[:2]:
        report(e)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("25 samples/s  (includes compiling)")
    assert lines[1].endswith("(includes compiling)")
    assert summary_rate(history) == (1050.0, "epochs 2+, 1 that compiled left out")
    assert summary_rate(history[2:]) == (1100.0, "epochs 2+")
    assert summary_rate(history[:1]) == (25.0, "epoch 1, includes compiling")  # nothing else


def test_compiling_is_detected_from_the_compile_counter(monkeypatch, restore_threads):
    import fastlinear._compile as compile_module

    calls = iter(range(1000))
    # Every call of the counter returns a larger number: each epoch looks as if it compiled.
    monkeypatch.setattr(compile_module, "compile_count", lambda: next(calls))
    result = fit(epochs=2, hidden=[8], threads=1)
    assert all(e.compiled for e in result.history)
    monkeypatch.setattr(compile_module, "compile_count", lambda: 7)
    result = fit(epochs=2, hidden=[8], threads=1)
    assert not any(e.compiled for e in result.history)
