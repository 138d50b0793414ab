"""Every way a ``fastlinear`` run can fail ends with one line on standard error and a documented
exit status (2 usage or data problem, 130 interrupt), never a traceback, never a partly written
output file; output paths are checked before any long work starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fastlinear import cli


def _one_line_error(err: str, fragment: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("fastlinear: compiling")]
    assert len(lines) == 1, err
    assert fragment in lines[0], err


def test_diverging_training_exits_2_with_one_line():
    # A real process, so that numpy's floating-point warnings would show on its stderr.
    proc = subprocess.run([sys.executable, "-m", "fastlinear", "train", "--optimizer", "sgd",
                           "--lr", "1e6", "--epochs", "3", "--hidden", "8", "--no-progress",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    _one_line_error(proc.stderr, "the training loss became nan in epoch 1")


@pytest.mark.parametrize("where", ["missing_dir", "parent_is_a_file", "is_a_directory"])
def test_unwritable_save_path_fails_before_training(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    path = {"missing_dir": tmp_path / "no" / "m.npz", "parent_is_a_file": tmp_path / "file" / "m.npz",
            "is_a_directory": tmp_path}[where]
    assert cli.main(["train", "--epochs", "50", "--no-progress", "--save", str(path)]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, "cannot write")
    assert "epoch" not in captured.out  # nothing was trained


@pytest.mark.parametrize("option", ["--json", "--markdown", "--plot"])
def test_unwritable_compare_output_fails_before_measuring(tmp_path, capsys, option):
    pytest.importorskip("matplotlib")
    path = tmp_path / "missing" / "out.png"
    assert cli.main(["compare", "--quick", option, str(path)]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, "does not exist")
    assert captured.out == ""  # no table: nothing was measured


def test_plot_with_an_unknown_format_fails_before_measuring(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["compare", "--quick", "--plot", str(tmp_path / "speed.jpeg")]) == 2
    _one_line_error(capsys.readouterr().err, "must end in .png, .svg, .pdf")


def test_plot_needs_blas_among_the_backends(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert cli.main(["compare", "--quick", "--backends", "loops", "--plot", str(tmp_path / "p.png")]) == 2
    _one_line_error(capsys.readouterr().err, "include blas in --backends")


@pytest.mark.parametrize(
    "argv, module, fragment",
    [
        (["compare", "--quick", "--plot", "p.png"], "matplotlib", "--plot needs matplotlib"),
        (["train", "--backend", "torch", "--epochs", "1"], "torch", "--backend torch needs torch"),
        (["compare", "--quick", "--backends", "blas,torch"], "torch", "needs PyTorch"),
    ],
)
def test_missing_optional_dependency_exits_2(monkeypatch, tmp_path, capsys, argv, module, fragment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import <module>` fail
    assert cli.main(argv) == 2
    _one_line_error(capsys.readouterr().err, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", ["100000x100000x100000", "1x1x99999999999999"])
def test_impossible_shape_exits_2_before_anything_runs(capsys, shape):
    assert cli.main(["compare", "--shapes", shape, "--backends", "blas"]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, f"shape {shape} in float32 needs about")
    assert captured.out == ""


def test_a_failed_json_write_leaves_the_old_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.json"
    path.write_text('{"old": true}')

    def dump_then_fail(doc, f, **kwargs):
        f.write('{"results": [')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", dump_then_fail)
    code = cli.main(["compare", "--quick", "--backends", "blas", "--ops", "forward", "--plain",
                     "--json", str(path)])
    assert code == 2
    _one_line_error(capsys.readouterr().err, "No space left on device")
    assert path.read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left


# --- Ctrl-C: a real SIGINT to a real process ------------------------------------------------------

def _interrupt(argv: list[str], wait_for: str, env: dict | None = None, timeout: float = 600):
    """Start ``python -m fastlinear argv``, wait until ``wait_for`` appears on stdout or stderr
    ("stderr" for any line there), send SIGINT, and return (status, stdout, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "fastlinear", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    stream = proc.stderr if wait_for == "stderr" else proc.stdout
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if wait_for == "stderr" or wait_for in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if stream is proc.stdout:
        out = "".join(seen) + out
    else:
        err = "".join(seen) + err
    return proc.returncode, out, err


def test_ctrl_c_during_training_exits_130_without_a_traceback(tmp_path):
    save = tmp_path / "m.npz"
    code, out, err = _interrupt(["train", "--epochs", "100000", "--hidden", "16", "--no-progress",
                                 "--threads", "1", "--save", str(save)], wait_for="epoch   1/")
    assert code == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "fastlinear train: interrupted"
    assert not save.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_during_the_first_compilation_exits_130_without_a_traceback(tmp_path):
    # An empty Numba cache: the first epoch compiles the kernels, which announces itself on
    # standard error; the interrupt lands while compiling.
    code, out, err = _interrupt(["train", "--epochs", "1", "--no-progress", "--threads", "1"],
                                wait_for="stderr", env={"NUMBA_CACHE_DIR": str(tmp_path / "cache")})
    assert code == 130, err
    assert "Traceback" not in err, err
    assert "epoch" not in out  # it was still compiling
    assert err.strip().splitlines()[-1] == "fastlinear train: interrupted"


def test_an_interrupt_swallowed_during_a_compile_still_interrupts():
    """An interrupt that lands while LLVM calls back into Python (a ctypes callback) is swallowed
    there ("Exception ignored") and compiling went on, so `fastlinear train` finished instead of
    exiting 130. The command line's handler remembers it, and the next compile raises it again."""
    import numba

    from fastlinear import _compile

    try:
        _compile.interrupt_handler(signal.SIGINT, None)
    except KeyboardInterrupt:
        pass  # swallowed, as inside a ctypes callback
    assert _compile.interrupt_pending()

    def probe(a):
        return a + 1

    probe.__module__ = "fastlinear._interrupt_probe"
    with pytest.raises(KeyboardInterrupt):
        numba.njit(cache=False)(probe)(1)
    assert not _compile.interrupt_pending()
    assert numba.njit(cache=False)(probe)(1) == 2  # raised once, then compiling goes on
