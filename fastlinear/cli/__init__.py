"""The ``fastlinear`` command. Each subcommand lives in its own module, which registers its parser
(``add_parser(sub)``) and sets ``run``, the function ``main`` calls with the parsed arguments:

- ``compare``: validate, then time every backend (and PyTorch) over shapes, ops, dtypes, threads;
- ``demo``: ``compare`` with the original demo's defaults (four kernels; loops, naive, blas);
- ``info``: versions, threads, BLAS, CPU features and Numba's cache;
- ``train``: see `fastlinear.cli.train` (its parser sets ``handler`` rather than ``run``);
- ``predict``: see `fastlinear.cli.predict` (sets ``handler`` too).
"""

from __future__ import annotations

import argparse
import sys

from . import compare, info
from .plot import MissingDependency

DEMO_SHAPES = "32x128x128,8x784x128,256x512x512,4096x256x10"


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="compare with the original defaults: the four kernels of "
                       "loops, naive and blas")
    compare.add_arguments(p, shapes=DEMO_SHAPES, backends="loops,naive,blas",
                          ops="forward,grad_weight,grad_bias,grad_input")
    p.set_defaults(run=compare.run)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastlinear", description="The linear layer as Numba loop kernels: compare backends, "
        "inspect the set-up, train a small model.")
    sub = parser.add_subparsers(dest="command", required=True)
    compare.add_parser(sub)
    _add_demo(sub)
    info.add_parser(sub)
    from .train import add_parser as add_train_parser

    add_train_parser(sub)
    from .predict import add_parser as add_predict_parser

    add_predict_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastlinear`` console script: 0 on success, 1 when a compared kernel
    gave a wrong result, 2 on a usage error (with a message on stderr)."""
    args = _parser().parse_args(argv)
    if hasattr(args, "handler"):
        return args.handler(args)
    try:
        return args.run(args)
    except (ValueError, TypeError, MissingDependency) as exc:
        print(f"fastlinear {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
