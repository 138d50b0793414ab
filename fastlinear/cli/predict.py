"""``fastlinear predict``: apply a model saved by ``fastlinear train --save`` (or `nn.save`) to raw
features, with the preprocessing and labels saved in the model file.

Reads ``--data`` (.npz with an array ``X`` and optionally ``y``, or .csv with one row per sample:
the model's number of feature columns, optionally followed by a label column), standardises the
features as the training run did, and prints one predicted label per line, or, when the data hold
labels, the accuracy. Exit status: 0 on success, 2 for a usage, model-file or data problem (one
line on standard error), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ._common import HelpFormatter

BACKENDS = ("loops", "blas", "naive", "auto")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid int") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def add_parser(sub) -> None:
    """Register the ``predict`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("predict", formatter_class=HelpFormatter,
                       help="apply a saved model to raw features (.npz or .csv)",
                       description="Apply a model saved by `fastlinear train --save` to raw features, "
                                   "with the preprocessing and labels saved in the model file.")
    p.add_argument("--model", required=True, metavar="PATH", help="a model saved by train --save")
    p.add_argument("--data", required=True, metavar="PATH",
                   help=".npz (array X, optional y) or .csv (features, optional label last)")
    p.add_argument("--backend", choices=BACKENDS, default="auto", help="kernels to run the model on")
    p.add_argument("--batch-size", type=_positive_int, default=1024,
                   help="rows per forward pass (bounds memory, not the result)")
    p.add_argument("--print-predictions", action="store_true",
                   help="print every predicted label even when the data hold labels")
    p.set_defaults(run=run)


def predict_raw(model, X: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Labels predicted by a model from `fastlinear.nn.load` for raw features X (samples,
    features): its ``preprocess`` applied (if any), then ``predict``, then its ``classes``."""
    prep = getattr(model, "preprocess", None)
    x = prep(X, model.dtype) if prep is not None else np.ascontiguousarray(X, dtype=model.dtype)
    indices = model.predict(x, batch_size=batch_size)
    classes = getattr(model, "classes", None)
    return indices if classes is None else classes[indices]


def run(args: argparse.Namespace) -> int:
    """``fastlinear predict``; returns 0 (failures reach `fastlinear.cli.main` as exceptions)."""
    from .. import nn
    from ..datasets import load_features

    model = nn.load(args.model, backend=args.backend)
    X, y = load_features(args.data, model.in_features)
    predicted = predict_raw(model, X, args.batch_size)
    if y is None or args.print_predictions:
        sys.stdout.write("".join(f"{label}\n" for label in predicted.tolist()))
    if y is not None:
        accuracy = float(np.mean(predicted == y))
        known = model.classes if model.classes is not None else np.arange(model.out_features)
        unknown = int(np.count_nonzero(~np.isin(y, known)))
        note = f"; {unknown} labels the model never saw" if unknown else ""
        print(f"accuracy {100 * accuracy:.2f}% ({len(y)} samples{note})", flush=True)
    return 0
