"""``fastlinear train``: train a multi-layer perceptron on the embedded digits data (or a user's
.npz/.csv) with the loop kernels, numpy's BLAS, or PyTorch, and report loss, accuracy and speed.

The same seed gives the same split, initial weights and batch order on every backend, so the
backends can be compared on identical work; with the loop kernels the same seed and thread count
also give a bit-identical loss curve.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

BACKENDS = ("loops", "blas", "naive", "auto", "torch")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class Epoch:
    """What one epoch reports."""

    epoch: int
    loss: float  # mean training loss over the epoch's samples
    accuracy: float  # on the test split, after the epoch
    samples_per_s: float  # training steps only (evaluation not counted)


@dataclass
class Result:
    """A finished run: the per-epoch history and the trained fastlinear model (None for torch)."""

    history: list[Epoch] = field(default_factory=list)
    model: object = None
    n_train: int = 0
    n_test: int = 0
    seconds: float = 0.0
    preprocess: object = None  # the datasets.Standardize applied to the features
    classes: object = None  # (C,) int64: the data's label of each class index


def _hidden(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden {text!r} is not a comma-separated list of integers (e.g. 256,256)") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: every layer size must be >= 1")
    return sizes


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value
    return parse


def add_parser(sub) -> None:
    """Register the ``train`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("train", help="train an MLP on the embedded digits data (or --data)",
                       description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help=".npz (arrays X, y) or .csv (label in the last column); "
                   "default: the embedded 8x8 digits")
    p.add_argument("--hidden", type=_hidden, default=[256, 256], help="hidden layer sizes (default 256,256)")
    p.add_argument("--activation", choices=["relu", "sigmoid", "tanh"], default="relu")
    p.add_argument("--epochs", type=_positive(int), default=20)
    p.add_argument("--batch-size", type=_positive(int), default=64)
    p.add_argument("--lr", type=_positive(float), default=1e-3)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    p.add_argument("--momentum", type=float, default=0.9, help="for --optimizer sgd (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--backend", choices=BACKENDS, default="loops",
                   help="fastlinear backend, or torch: same network and initial weights in PyTorch")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--threads", type=_positive(int), default=None,
                   help="threads for Numba, BLAS and torch alike (default: Numba's count)")
    p.add_argument("--seed", type=int, default=0, help="split, initial weights and batch order")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--save", default=None, metavar="PATH", help="save the trained model (.npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, per-epoch lines only")
    p.set_defaults(handler=run)


def _load(args) -> tuple:
    """The split (labels as class indices 0..C-1), C, the standardisation and the C labels."""
    from ..datasets import encode_labels, load_arrays, load_digits, split_and_standardize

    X, y = load_digits() if args.data is None else load_arrays(args.data)
    classes, y = encode_labels(y)  # labels 1..10 are 10 classes, not 11 with an empty one
    if len(classes) < 2:
        raise ValueError(f"the labels hold a single class ({classes[0]}); need at least 2")
    s, prep = split_and_standardize(X, y, dtype=args.dtype, test_fraction=args.test_fraction, seed=args.seed)
    return s, len(classes), prep, classes


def _optimizer(args, model):
    from .. import nn

    if args.optimizer == "sgd":
        return nn.SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return nn.AdamW(model, lr=args.lr, weight_decay=args.weight_decay)
    return nn.Adam(model, lr=args.lr, weight_decay=args.weight_decay)


class _NumpySteps:
    """Training step and evaluation with a fastlinear model; batches gathered into a buffer."""

    def __init__(self, model, opt, batch_size: int, n_features: int, dtype) -> None:
        from .. import nn

        self.model, self.opt, self.loss_fn = model, opt, nn.CrossEntropyLoss()
        self.xb = np.empty((batch_size, n_features), dtype=dtype)
        self.yb = np.empty(batch_size, dtype=np.int64)

    def step(self, X, y, idx) -> float:
        xb, yb = self.xb[: len(idx)], self.yb[: len(idx)]
        np.take(X, idx, axis=0, out=xb)
        np.take(y, idx, out=yb)
        self.model.zero_grad()
        loss, dlogits = self.loss_fn(self.model(xb), yb)
        self.model.backward(dlogits, need_input_grad=False)
        self.opt.step()
        return loss

    def predict(self, X) -> np.ndarray:
        return self.model.predict(X)


class _TorchSteps:
    """The same steps in PyTorch, on a copy of the initial model."""

    def __init__(self, model, opt) -> None:
        import torch

        from ..nn.torch_bridge import to_torch, torch_optimizer

        self.torch = torch
        self.model = to_torch(model)
        self.opt = torch_optimizer(opt, self.model)

    def step(self, X, y, idx) -> float:
        torch = self.torch
        xb, yb = torch.from_numpy(X[idx]), torch.from_numpy(y[idx])
        self.opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
        loss.backward()
        self.opt.step()
        return loss.item()

    def predict(self, X) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(X)).argmax(1).numpy()


def fit(args, report=None) -> Result:
    """Train as the command-line arguments say; ``report(epoch: Epoch)`` is called per epoch."""
    from .. import nn
    from .._threads import get_num_threads, set_num_threads

    split, n_classes, prep, classes = _load(args)
    set_num_threads(get_num_threads() if args.threads is None else args.threads)
    sizes = [split.X_train.shape[1], *args.hidden, n_classes]
    backend = "loops" if args.backend == "torch" else args.backend
    model = nn.mlp(sizes, args.activation, dtype=args.dtype, backend=backend, seed=args.seed)
    opt = _optimizer(args, model)
    if args.backend == "torch":
        import torch

        torch.set_num_threads(get_num_threads())
        steps = _TorchSteps(model, opt)
    else:
        steps = _NumpySteps(model, opt, args.batch_size, split.X_train.shape[1], model.dtype)
    n = split.X_train.shape[0]
    batches = range(0, n, args.batch_size)
    order_rng = np.random.default_rng(np.random.SeedSequence(args.seed).spawn(1)[0])
    result = Result(model=None if args.backend == "torch" else model,
                    n_train=n, n_test=split.X_test.shape[0], preprocess=prep, classes=classes)
    if report is not None and hasattr(report, "begin"):
        report.begin(n)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = order_rng.permutation(n)
        total = 0.0
        t0 = time.perf_counter()
        for i in batches:
            idx = order[i : i + args.batch_size]
            total += steps.step(split.X_train, split.y_train, idx) * len(idx)
            if report is not None and hasattr(report, "advance"):
                report.advance(len(idx))
        elapsed = time.perf_counter() - t0
        if not np.isfinite(total):
            raise FloatingPointError(f"the training loss became {total} in epoch {epoch}; lower --lr")
        accuracy = float(np.mean(steps.predict(split.X_test) == split.y_test))
        record = Epoch(epoch, total / n, accuracy, n / elapsed)
        result.history.append(record)
        if report is not None:
            report(record)
    result.seconds = time.perf_counter() - start
    return result


class _Reporter:
    """Per-epoch lines, with a rich progress bar over each epoch's samples when stdout is a tty."""

    def __init__(self, epochs: int, progress: bool) -> None:
        self.epochs = epochs
        self.progress = progress and sys.stdout.isatty()
        self.bar = None

    def begin(self, n_train: int) -> None:
        """Called once the data are loaded (n_train samples per epoch)."""
        if not self.progress:
            return
        try:
            from rich.progress import Progress
        except ImportError:
            return
        self.bar = Progress(transient=True)
        self.bar.start()
        self.task = self.bar.add_task("epoch 1", total=n_train)

    def advance(self, k: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, k)

    def __call__(self, e: Epoch) -> None:
        line = (f"epoch {e.epoch:3d}/{self.epochs}  loss {e.loss:.4f}  test accuracy "
                f"{100 * e.accuracy:6.2f}%  {e.samples_per_s:10,.0f} samples/s")
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
            self.bar.reset(self.task, description=f"epoch {e.epoch + 1}")
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def run(args: argparse.Namespace) -> int:
    """Handler of ``fastlinear train``; returns the exit code (2 for bad input)."""
    from .. import nn
    from .._threads import get_num_threads

    if args.backend == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            print("fastlinear train: error: --backend torch needs PyTorch installed", file=sys.stderr)
            return 2
    reporter = None
    try:
        if not 0.0 < args.test_fraction < 1.0:
            raise ValueError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
        if args.weight_decay < 0 or args.momentum < 0:
            raise ValueError("--weight-decay and --momentum must be >= 0")
        sizes = ",".join(map(str, args.hidden))
        print(f"fastlinear train: data {args.data or 'digits (embedded)'}, hidden {sizes or '-'} "
              f"{args.activation}, {args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
              f"{args.dtype}, backend {args.backend}, seed {args.seed}", flush=True)
        if args.save and args.backend == "torch":
            raise ValueError("--save needs a fastlinear backend (loops, blas, naive, auto), not torch")
        if args.save and not os.path.isdir(os.path.dirname(os.path.abspath(args.save))):
            raise ValueError(f"--save {args.save!r}: directory does not exist")
        if args.save:
            from .._io import check_writable

            check_writable(args.save)  # before training, not after every epoch
        reporter = _Reporter(args.epochs, not args.no_progress)
        result = fit(args, reporter)
    except (ValueError, TypeError, OSError) as exc:
        if reporter is not None:
            reporter.close()
        print(f"fastlinear train: error: {exc}", file=sys.stderr)
        return 2
    reporter.close()
    last = result.history[-1]
    rates = [e.samples_per_s for e in result.history[1:]] or [last.samples_per_s]
    print(f"done: test accuracy {100 * last.accuracy:.2f}% ({result.n_test} test / {result.n_train} "
          f"train samples), final loss {last.loss:.4f}, {args.epochs} epochs in {result.seconds:.2f} s, "
          f"median {np.median(rates):,.0f} samples/s (epochs 2+), backend {args.backend}, "
          f"{get_num_threads()} thread{'s' if get_num_threads() != 1 else ''}", flush=True)
    if args.save:
        try:
            nn.save(result.model, args.save, preprocess=result.preprocess, classes=result.classes)
        except OSError as exc:
            print(f"fastlinear train: error: cannot save to {args.save!r}: {exc}", file=sys.stderr)
            return 2
        print(f"saved model to {args.save}")
    return 0
