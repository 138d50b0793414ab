"""The ``fastlinear`` command's structure: one convention for subcommands, help text with defaults
on every option, ``--version``, and the documented exit statuses for every way a run can end
(usage errors, internal errors, a closed pipe)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import fastlinear
from fastlinear import cli


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_subcommand_module_has_add_parser_and_run():
    subs = _subparsers(cli.parser())
    assert set(subs) == set(cli.COMMANDS)
    for name, module in cli.COMMANDS.items():
        assert callable(module.add_parser) and callable(module.run), name


def test_every_option_has_help_text_and_shows_its_default():
    for name, sub in _subparsers(cli.parser()).items():
        text = sub.format_help()
        for action in sub._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"fastlinear {name} {action.option_strings[0]} has no help text"
            shown = action.default is None or action.default is False
            assert shown or f"(default: {action.default})" in " ".join(text.split()), (
                f"fastlinear {name} {action.option_strings[0]}: default {action.default!r} not shown")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastlinear {fastlinear.__version__}"


def test_help_ends_with_whole_sentences():
    # The description was once the first line of a docstring, cut off mid-sentence.
    for sub in _subparsers(cli.parser()).values():
        assert sub.description.rstrip().endswith("."), sub.prog


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["nonsense"], "invalid choice"),
        ([], "required"),
        (["demo"], "invalid choice"),  # the old undocumented alias of compare is gone
    ],
)
def test_argument_errors_exit_2_with_a_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert fragment in capsys.readouterr().err


def _failing_run(exc: BaseException):
    def run(args):
        raise exc
    return run


@pytest.mark.parametrize(
    "exc, status, fragment",
    [
        (ValueError("bad value"), 2, "fastlinear info: error: bad value"),
        (FileNotFoundError("no such file"), 2, "error: no such file"),
        (FloatingPointError("the loss became nan"), 2, "error: the loss became nan"),
        (MemoryError(), 2, "error: not enough memory"),
        (KeyboardInterrupt(), 130, "fastlinear info: interrupted"),
        (RuntimeError("boom"), 3, "internal error"),
    ],
)
def test_each_kind_of_failure_has_its_exit_status_and_one_line(monkeypatch, capsys, exc, status,
                                                               fragment):
    monkeypatch.setattr(cli.COMMANDS["info"], "run", _failing_run(exc))
    assert cli.main(["info"]) == status
    err = capsys.readouterr().err
    assert fragment in err
    if status != 3:  # only a bug shows a traceback
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_closed_output_pipe_ends_quietly_with_status_141():
    # `fastlinear compare --help`-sized output is too small to fill a pipe; a train run prints a
    # line per epoch after the reader has gone.
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastlinear", "train", "--epochs", "200", "--hidden", "8",
         "--no-progress", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # the settings line: the run has started
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("command", ["compare", "info", "train"])
def test_python_m_fastlinear_runs(command):
    proc = subprocess.run([sys.executable, "-m", "fastlinear", command, "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "usage: fastlinear " + command in proc.stdout
