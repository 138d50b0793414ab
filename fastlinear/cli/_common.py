"""What the subcommands share: the help formatter, and the error an option raises when an optional
package it needs is missing."""

from __future__ import annotations

import argparse
import importlib


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter that appends "(default: X)" to an option's help, except where there is
    nothing to show (a flag, or an option that is off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text + " (default: %(default)s)"
        return text


class MissingDependency(Exception):
    """An optional package that a requested option needs is not installed (exit status 2)."""


def require(module: str, option: str, extra: str) -> None:
    """Import ``module`` or raise MissingDependency naming ``option`` and the extra to install."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"{option} needs {module}, which is not installed; install it with: "
            f"pip install 'fastlinear[{extra}]'"
        ) from None
