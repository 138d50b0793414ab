"""``fastlinear train``: accuracy with the default settings, reproducibility, the torch backend,
--data and --save, and argument/data errors exiting with status 2."""

from __future__ import annotations

import numpy as np
import pytest

from fastlinear import cli, nn
from fastlinear.datasets import load_digits, split_and_scale
from fastlinear.cli.train import fit


def test_default_settings_reach_97_percent_on_digits(capsys):
    # Default settings; one thread only keeps the run short on a busy machine: the loss curve does
    # not depend on the thread count (test_loss_curve_does_not_depend_on_the_thread_count).
    assert cli.main(["train", "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 20
    assert "samples/s" in lines[0]
    final = [line for line in out.splitlines() if line.startswith("done:")]
    accuracy = float(final[0].split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 97.0, out


def test_same_seed_and_threads_give_identical_loss_curves(restore_threads):
    runs = [fit(epochs=3, threads=1, seed=5) for _ in range(2)]
    other = fit(epochs=3, threads=1, seed=6)
    curves = [[e.loss for e in r.history] for r in runs]
    assert curves[0] == curves[1]  # bit for bit
    assert [e.accuracy for e in runs[0].history] == [e.accuracy for e in runs[1].history]
    assert [e.loss for e in other.history] != curves[0]


def test_loss_curve_does_not_depend_on_the_thread_count(restore_threads):
    one = fit(epochs=2, threads=1, hidden=[64])
    two = fit(epochs=2, threads=2, hidden=[64])
    assert [e.loss for e in one.history] == [e.loss for e in two.history]


def test_torch_backend_starts_from_the_same_weights_and_tracks_loops(restore_threads):
    pytest.importorskip("torch")
    settings = dict(epochs=2, dtype="float64", threads=1, hidden=[32])
    ours = fit(**settings)
    theirs = fit(**settings, backend="torch")
    np.testing.assert_allclose([e.loss for e in ours.history], [e.loss for e in theirs.history], rtol=1e-6)


def test_save_then_load_gives_the_reported_accuracy(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert cli.main(["train", "--epochs", "2", "--hidden", "32", "--activation", "tanh",
                     "--optimizer", "sgd", "--lr", "0.05", "--save", str(path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    reported = float(out.split("done: test accuracy ")[1].split("%")[0])
    model = nn.load(path)
    s = split_and_scale(*load_digits(), dtype=np.float32, seed=0)
    assert 100 * np.mean(model.predict(s.X_test) == s.y_test) == pytest.approx(reported, abs=0.01)


def test_user_data_csv(tmp_path, capsys, rng):
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int)
    rows = "\n".join(",".join(f"{v:.6f}" for v in r) + f",{c}" for r, c in zip(X, y))
    (tmp_path / "d.csv").write_text(rows + "\n")
    assert cli.main(["train", "--data", str(tmp_path / "d.csv"), "--epochs", "30", "--hidden", "8",
                     "--batch-size", "16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "(12 test / 48 train samples)" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--hidden", "64,x"], "comma-separated list of integers"),
        (["--hidden", "0"], ">= 1"),
        (["--hidden", ""], "'none' for no hidden layer"),
        (["--epochs", "0"], "must be > 0"),
        (["--lr", "-1"], "must be > 0"),
        (["--test-fraction", "1.5"], "between 0 and 1"),
        (["--momentum", "-0.5"], "must be >= 0"),
        (["--batch-size", "ten"], "not a valid int"),
        (["--backend", "fortran"], "invalid choice"),
        (["--optimizer", "lbfgs"], "invalid choice"),
        (["--activation", "gelu"], "invalid choice"),
    ],
)
def test_argument_errors_exit_2(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_runtime_errors_exit_2(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", X=np.zeros((4, 2)), y=np.zeros(5))
    cases = [
        (["--data", str(tmp_path / "missing.npz")], "does not exist"),
        (["--data", str(tmp_path / "bad.npz")], "X has 4 rows"),
        (["--threads", "99999"], "threads"),
        (["--save", str(tmp_path / "no" / "dir" / "m.npz")], "does not exist"),
        (["--backend", "torch", "--save", str(tmp_path / "m.npz")], "--save needs"),
    ]
    for argv, fragment in cases:
        assert cli.main(["train", "--epochs", "1", "--no-progress", *argv]) == 2, argv
        assert fragment in capsys.readouterr().err, argv


def test_torch_backend_without_torch_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # makes `import torch` fail
    assert cli.main(["train", "--backend", "torch", "--epochs", "1"]) == 2
    assert "--backend torch needs torch, which is not installed" in capsys.readouterr().err


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(monkeypatch, capsys):
    from fastlinear.cli.train import Epoch, _Reporter

    plain = _Reporter(epochs=2, progress=True)  # pytest's stdout is not a tty
    plain.begin(10)
    assert plain.bar is None
    plain(Epoch(1, 0.5, 0.9, 1000.0))
    assert capsys.readouterr().out.startswith("epoch   1/2  loss 0.5000  test accuracy  90.00%")
    pytest.importorskip("rich")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    bar = _Reporter(epochs=2, progress=True)
    bar.begin(10)
    assert bar.bar is not None
    bar.advance(10)
    bar(Epoch(1, 0.5, 0.9, 1000.0))
    bar.close()
    assert "epoch   1/2" in capsys.readouterr().out
