"""The ``fastlinear`` command.

Each subcommand is a module with ``add_parser(subparsers)``, which registers its options, and
``run(args) -> int``, which turns the parsed options into plain arguments for library functions and
returns the exit status. `main` parses, calls ``run``, and turns every expected failure into one
line on standard error and one of these exit statuses:

====  ==========================================================================================
0     success
1     ``compare`` or ``tune``: a backend gave a wrong result (reported, never timed or chosen)
2     a usage or data problem: a bad option, a bad data file, an output path that cannot be
      written (checked before long work starts), training that diverged, a shape too large for
      memory, or an optional package an option needs (matplotlib, torch) not installed
3     an internal error (a bug): the traceback is printed so that it can be reported
130   interrupted (Ctrl-C)
141   standard output was closed early (``fastlinear train | head``); nothing more is printed
====  ==========================================================================================

No output file is ever left half-written: files are written through `fastlinear._io.atomic_write`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback

from .. import _compile
from . import compare, info, predict, train, tune
from ._common import HelpFormatter, MissingDependency

#: name -> module with add_parser(subparsers) and run(args) -> int.
COMMANDS = {"train": train, "predict": predict, "compare": compare, "tune": tune, "info": info}

EXIT_OK, EXIT_WRONG, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPT, EXIT_PIPE = 0, 1, 2, 3, 130, 141

#: Exceptions that mean the user's input, data, environment or options are at fault.
USER_ERRORS = (ValueError, TypeError, OSError, FloatingPointError, MemoryError, MissingDependency)


def _version() -> str:
    from .. import __version__

    return __version__


def parser() -> argparse.ArgumentParser:
    """The ``fastlinear`` argument parser with every subcommand registered."""
    p = argparse.ArgumentParser(
        prog="fastlinear", formatter_class=HelpFormatter,
        description="The neural-network linear layer as Numba loop kernels: train a small model, "
                    "compare the backends, inspect the set-up.",
        epilog="exit status: 0 success, 1 compare or tune found a wrong result, 2 usage or data problem, "
               "3 internal error, 130 interrupted, 141 output closed early")
    p.add_argument("--version", action="version", version=f"fastlinear {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return p


def _message(exc: BaseException) -> str:
    """One line: the exception's text, or its type where the text is empty."""
    if isinstance(exc, MemoryError):
        return f"not enough memory{': ' + str(exc) if str(exc) else ''}"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so that the interpreter's final flush of the
    buffered output does not raise a second BrokenPipeError at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _on_interrupt(signum, frame) -> None:
    """Ctrl-C: the run is ending. Where the interrupt lands inside a ctypes callback of llvmlite
    (during a compile) Python prints it as "Exception ignored ... Traceback" and goes on; such
    messages explain nothing here and are dropped, and `_compile.interrupt_handler` raises the
    interrupt again at the next compile."""
    sys.unraisablehook = lambda unraisable: None
    _compile.interrupt_handler(signum, frame)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastlinear`` console script; returns the exit status (see the module
    docstring). Argument errors exit through argparse with status 2."""
    try:  # an interrupt swallowed inside a compile is raised again (see the handler)
        previous = signal.signal(signal.SIGINT, _on_interrupt)
    except ValueError:  # not the main thread: signals are not ours to handle
        previous = None
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str] | None) -> int:
    name = "fastlinear"
    try:
        args = parser().parse_args(argv)
        name = f"fastlinear {args.command}"
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted", file=sys.stderr)
        # An interrupt that lands inside llvmlite (during a compile) can leave a half-built object
        # whose __del__ then fails at exit and prints "Exception ignored ... Traceback"; the run
        # is over and that line explains nothing, so such messages are dropped from here on.
        sys.unraisablehook = lambda unraisable: None
        return EXIT_INTERRUPT
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_PIPE
    except USER_ERRORS as exc:
        print(f"{name}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # noqa: BLE001 - a bug: show where, then exit with its own status
        traceback.print_exc()
        print(f"{name}: internal error (a bug in fastlinear; please report it with the traceback "
              "above)", file=sys.stderr)
        return EXIT_BUG
