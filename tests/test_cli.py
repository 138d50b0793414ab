"""The ``fastlinear`` command's structure: subcommands, ``demo`` (compare with the original
defaults), usage errors, ``python -m fastlinear`` (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastlinear import cli


def test_demo_tiny_run_validates_and_times_every_backend(capsys, restore_threads):
    code = cli.main(["demo", "--shapes", "3x5x7", "--dtype", "both", "--repeats", "1",
                     "--backends", "loops,naive,blas,auto", "--threads", "1", "--plain"])
    out = capsys.readouterr().out
    assert code == 0
    assert "WRONG" not in out
    for op in ("forward", "grad_weight", "grad_bias", "grad_input"):
        for backend in ("loops", "naive", "blas", "auto"):
            assert any(f" {op} " in line and f" {backend} " in line for line in out.splitlines())
    assert " step " not in out  # demo keeps its four kernels


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["demo", "--shapes", "3x5"], "BATCHxINxOUT"),
        (["demo", "--shapes", "3x0x4"], "must be >= 1"),
        (["demo", "--dtype", "float16"], "invalid dtype 'float16'"),
        (["nonsense"], "invalid choice"),
        ([], "required"),
    ],
)
def test_argument_errors_exit_2_with_a_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def test_unknown_backend_exits_2(capsys):
    assert cli.main(["demo", "--backends", "loops,fortran", "--shapes", "2x3x4"]) == 2
    assert "unknown backend 'fortran'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compare", "demo", "info"])
def test_python_m_fastlinear_runs(command):
    proc = subprocess.run([sys.executable, "-m", "fastlinear", command, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "usage: fastlinear " + command in proc.stdout
