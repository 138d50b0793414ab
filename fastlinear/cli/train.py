"""``fastlinear train``: train a multi-layer perceptron on the embedded digits data (or a user's
.npz/.csv) with the loop kernels, numpy's BLAS, or PyTorch, and report loss, accuracy and speed.

The same seed gives the same split, initial weights and batch order on every backend, so the
backends can be compared on identical work; with the loop kernels the same seed and thread count
also give a bit-identical loss curve.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .._memory import empty_aligned
from .._threads import adapt
from ._common import HelpFormatter, require

BACKENDS = ("loops", "blas", "naive", "auto", "torch")
OPTIMIZERS = ("adam", "adamw", "sgd")
ACTIVATIONS = ("relu", "sigmoid", "tanh")


@dataclass
class Epoch:
    """What one epoch reports."""

    epoch: int
    loss: float  # mean training loss over the epoch's samples
    accuracy: float  # on the test split, after the epoch
    samples_per_s: float  # training steps only (evaluation not counted)
    compiled: bool = False  # kernels were compiled during the epoch's steps (its rate includes that)


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
    """``"256,256"`` -> [256, 256]; ``"none"`` -> [] (no hidden layer: a linear classifier)."""
    if text.strip().lower() == "none":
        return []
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "--hidden is empty; give layer sizes (e.g. 256,256), or 'none' for no hidden layer")
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden {text!r} is not a comma-separated list of integers (e.g. 256,256)") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--hidden {text!r}: every layer size must be >= 1")
    return sizes


def _number(kind, low: float, high: float = np.inf, low_open: bool = True, high_open: bool = True):
    """An argparse type: ``kind`` within (low, high), ends open or closed as given."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):
            if high == np.inf:
                raise argparse.ArgumentTypeError(f"{text!r} must be {'>' if low_open else '>='} {low:g}")
            raise argparse.ArgumentTypeError(f"{text!r} must be between {low:g} and {high:g}, exclusive")
        return value
    return parse


def _positive(kind):
    return _number(kind, 0)


def add_parser(sub) -> argparse.ArgumentParser:
    """Register ``fastlinear train`` on an argparse subparsers object."""
    p = sub.add_parser(
        "train", formatter_class=HelpFormatter,
        help="train an MLP on the embedded digits data (or --data)",
        description="Train a multi-layer perceptron on the embedded 8x8 digits (or your own data) "
                    "with the loop kernels, numpy's BLAS or PyTorch, and print each epoch's loss, "
                    "test accuracy and speed.")
    p.add_argument("--data", default=None, metavar="PATH",
                   help=".npz (arrays X, y) or .csv (label in the last column); "
                        "without it, the embedded 8x8 digits")
    p.add_argument("--hidden", type=_hidden, default="256,256", metavar="SIZES",
                   help="hidden layer sizes, comma-separated; 'none' for no hidden layer")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="activation after each hidden layer")
    p.add_argument("--epochs", type=_positive(int), default=20, help="passes over the training data")
    p.add_argument("--batch-size", type=_positive(int), default=64,
                   help="samples per step (at most the training set)")
    p.add_argument("--lr", type=_positive(float), default=1e-3, help="learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer")
    p.add_argument("--momentum", type=_number(float, 0, low_open=False), default=0.9, help="momentum of --optimizer sgd")
    p.add_argument("--weight-decay", type=_number(float, 0, low_open=False), default=0.0,
                   help="L2 penalty (adam, sgd) or decoupled decay (adamw)")
    p.add_argument("--backend", choices=BACKENDS, default="loops",
                   help="fastlinear backend, or torch: the same network and initial weights in PyTorch")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="floating-point type of the data and parameters")
    p.add_argument("--threads", type=_positive(int), default=None,
                   help="threads for Numba, BLAS and torch alike (without it: the cores this process "
                        "may use, less those other processes keep busy, re-checked as it runs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, initial weights and batch order")
    p.add_argument("--test-fraction", type=_number(float, 0, 1), default=0.2,
                   help="share of the samples held out for the test accuracy")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="save the trained model (.npz); the path is checked before training")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal when rich is installed)")
    from ..distributed.cli import add_options

    add_options(p)
    return p


def _load(data: str | None, dtype: str, test_fraction: float, seed: int) -> tuple:
    """Read and split the data: (split, number of classes, standardisation, labels of the classes).

    Labels are mapped to class indices in sorted order, so labels 1..10 make 10 classes (not 11
    with an empty one) and a stray label of 1e9 is one more class, not a 1e9-wide output layer."""
    from ..datasets import encode_labels, load_arrays, load_digits, split_and_standardize

    X, y = load_digits() if data is None else load_arrays(data)
    where = "the digits data" if data is None else f"data file {data!r}"
    classes, y = encode_labels(y)
    if len(classes) < 2:
        raise ValueError(f"{where}: the labels hold a single class ({classes[0]}); need at least 2")
    s, prep = split_and_standardize(X, y, dtype=dtype, test_fraction=test_fraction, seed=seed)
    return s, len(classes), prep, classes


def _optimizer(name: str, model, lr: float, momentum: float, weight_decay: float):
    from .. import nn

    if name == "sgd":
        return nn.SGD(model, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return nn.AdamW(model, lr=lr, weight_decay=weight_decay)
    return nn.Adam(model, lr=lr, weight_decay=weight_decay)


class _NumpySteps:
    """Training step and evaluation with a fastlinear model; batches gathered into a buffer."""

    def __init__(self, model, opt, batch_size: int, n_features: int, dtype) -> None:
        from .. import nn

        self.model, self.opt, self.loss_fn = model, opt, nn.CrossEntropyLoss()
        self.xb = empty_aligned((batch_size, n_features), dtype)  # read as vectors by the kernels
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
        # in batches of the training batch size: the kernels the steps compiled already. Batches
        # of a few hundred rows reach the packed kernels, whose compilation (about 12 s per dtype
        # on 2 cores) a first run would pay for the evaluation alone.
        return self.model.predict(X, batch_size=len(self.xb))


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
        adapt()  # without --threads, torch's count follows other processes' load too
        xb, yb = torch.from_numpy(X[idx]), torch.from_numpy(y[idx])
        self.opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
        loss.backward()
        self.opt.step()
        return loss.item()

    def predict(self, X) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(X)).argmax(1).numpy()


def fit(
    *,
    data: str | None = None,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    backend: str = "loops",
    dtype: str = "float32",
    threads: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    report: Callable[[Epoch], None] | None = None,
    comm=None,
) -> Result:
    """Train an MLP classifier and return its per-epoch history and the trained model.

    Args:
        data: path of a .npz (arrays X, y) or .csv (label in the last column); None for the
            embedded 8x8 digits. Labels are class indices 0..C-1.
        hidden: hidden layer sizes; empty for a linear classifier.
        activation, optimizer, backend, dtype: see ``fastlinear train --help`` for the choices.
        epochs, batch_size, lr, momentum, weight_decay, seed, test_fraction: as their options.
            The batch is at most the training set (buffers are sized from the data).
        threads: thread count for Numba, BLAS and torch; None leaves the count as it is (by
            default it adapts to other processes' load, see `fastlinear.set_num_threads`).
        report: called with each finished `Epoch`; if it has ``begin(n_train)`` and
            ``advance(k)`` methods, those are called before the first epoch and after each step.
        comm: for one rank of a data-parallel run, its `fastlinear.distributed` communicator:
            the rank trains on its slice of every batch (see `fastlinear.distributed.cli`).

    Raises:
        ValueError: a bad setting or bad data (the message names which).
        FileNotFoundError: ``data`` does not exist.
        FloatingPointError: the training loss became NaN or infinite (lower ``lr``).
        MissingDependency: ``backend="torch"`` without PyTorch installed.
    """
    from .. import nn
    from .._compile import compile_count
    from .._threads import get_num_threads, set_num_threads

    _check_settings(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                    weight_decay=weight_decay, test_fraction=test_fraction, hidden=hidden,
                    backend=backend, optimizer=optimizer, activation=activation)
    if backend == "torch":
        require("torch", "--backend torch", "torch")
    split, n_classes, prep, classes = _load(data, dtype, test_fraction, seed)
    if comm is not None:
        from ..distributed.cli import set_threads

        set_threads(comm, threads)
    elif threads is not None:
        set_num_threads(threads)
    n, n_features = split.X_train.shape
    batch_size = min(batch_size, n)
    sizes = [n_features, *hidden, n_classes]
    model = nn.mlp(sizes, activation, dtype=dtype, backend="loops" if backend == "torch" else backend,
                   seed=seed)
    opt = _optimizer(optimizer, model, lr, momentum, weight_decay)
    if backend == "torch":
        import torch

        torch.set_num_threads(get_num_threads())
        steps = _TorchSteps(model, opt)
    elif comm is not None:
        from ..distributed.cli import DistributedSteps

        steps = DistributedSteps(comm, model, opt, batch_size, split.X_train, split.y_train,
                                 split.X_test)
    else:
        steps = _NumpySteps(model, opt, batch_size, n_features, model.dtype)
        # on a cold cache, the layers' kernels compile here and in other processes at once
        # (one per thread) before the first step; with a warm one this only loads them
        rows = {batch_size, n % batch_size, split.X_test.shape[0] % batch_size} - {0}
        model.warmup(sorted(rows), need_input_grad=False)
    batches = range(0, n, batch_size)
    order_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    result = Result(model=None if backend == "torch" else model, n_train=n,
                    n_test=split.X_test.shape[0], preprocess=prep, classes=classes)
    if hasattr(report, "begin"):
        report.begin(n)
    start = time.perf_counter()
    # A diverging run overflows to inf and NaN; that is reported once, as FloatingPointError at
    # the end of the epoch, rather than as a numpy warning per operation.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(1, epochs + 1):
            order = order_rng.permutation(n)
            total = 0.0
            compiled_before = compile_count()
            t0 = time.perf_counter()
            for i in batches:
                idx = order[i : i + batch_size]
                total += steps.step(split.X_train, split.y_train, idx) * len(idx)
                if hasattr(report, "advance"):
                    report.advance(len(idx))
            elapsed = time.perf_counter() - t0
            compiled = compile_count() > compiled_before
            if not np.isfinite(total):
                raise FloatingPointError(
                    f"the training loss became {total} in epoch {epoch}; lower the learning rate "
                    f"(now {lr:g})")
            accuracy = float(np.mean(steps.predict(split.X_test) == split.y_test))
            record = Epoch(epoch, total / n, accuracy, n / elapsed, compiled)
            result.history.append(record)
            if report is not None:
                report(record)
    result.seconds = time.perf_counter() - start
    return result


def _check_settings(*, epochs, batch_size, lr, momentum, weight_decay, test_fraction, hidden,
                    backend, optimizer, activation) -> None:
    """Raise ValueError naming the first setting out of range, before any data is read."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr (the learning rate) must be finite and > 0, got {lr!r}")
    for name, value in (("momentum", momentum), ("weight_decay", weight_decay)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
        raise ValueError(f"hidden layer sizes must be integers >= 1, got {list(hidden)!r}")
    for name, value, valid in (("backend", backend, BACKENDS), ("optimizer", optimizer, OPTIMIZERS),
                               ("activation", activation, ACTIVATIONS)):
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(valid)}")


class _Reporter:
    """Per-epoch lines, with a rich progress bar over each epoch's samples when stdout is a
    terminal and rich is installed."""

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
                f"{100 * e.accuracy:6.2f}%  {e.samples_per_s:10,.0f} samples/s"
                + ("  (includes compiling)" if e.compiled else ""))
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
            if e.epoch < self.epochs:
                self.bar.reset(self.task, description=f"epoch {e.epoch + 1}")
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def summary_rate(history: list[Epoch]) -> tuple[float, str]:
    """The run's speed for the summary line, and which epochs it covers: the median samples/s of
    the epochs after the first (which also starts the thread pools) that compiled nothing; the
    last epoch's rate if there is no such epoch."""
    steady = [e for e in history[1:] if not e.compiled]
    if not steady:
        last = history[-1]
        return last.samples_per_s, f"epoch {last.epoch}" + (", includes compiling" if last.compiled else "")
    skipped = len(history) - 1 - len(steady)
    return (float(np.median([e.samples_per_s for e in steady])),
            "epochs 2+" + (f", {skipped} that compiled left out" if skipped else ""))


def run(args: argparse.Namespace) -> int:
    """``fastlinear train``: check the options and the --save path, train, report, save."""
    from .. import nn
    from .._io import check_writable
    from .._threads import get_num_threads

    if args.processes is not None or (args.distributed and getattr(args, "comm", None) is None):
        from ..distributed.cli import run_train

        return run_train(args, run)
    if args.backend == "torch":
        require("torch", "--backend torch", "torch")
    if args.save:
        if args.backend == "torch":
            raise ValueError("--save needs a fastlinear backend (loops, blas, naive, auto), not torch")
        check_writable(args.save)
    # no hidden layer, no activation to name
    layers = f"{','.join(map(str, args.hidden))} {args.activation}" if args.hidden else "none"
    print(f"fastlinear train: data {args.data or 'digits (embedded)'}, hidden {layers}, "
          f"{args.optimizer} lr {args.lr:g}, batch {args.batch_size}, "
          f"{args.dtype}, backend {args.backend}, seed {args.seed}", flush=True)
    reporter = _Reporter(args.epochs, not args.no_progress)
    try:
        result = fit(data=args.data, hidden=args.hidden, activation=args.activation,
                     epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                     optimizer=args.optimizer, momentum=args.momentum,
                     weight_decay=args.weight_decay, backend=args.backend, dtype=args.dtype,
                     threads=args.threads, seed=args.seed, test_fraction=args.test_fraction,
                     report=reporter, comm=getattr(args, "comm", None))
    finally:
        reporter.close()
    last = result.history[-1]
    rate, which = summary_rate(result.history)
    threads = get_num_threads()
    print(f"done: test accuracy {100 * last.accuracy:.2f}% ({result.n_test} test / {result.n_train} "
          f"train samples), final loss {last.loss:.4f}, {args.epochs} epoch{'s' if args.epochs != 1 else ''} in {result.seconds:.2f} s, "
          f"median {rate:,.0f} samples/s ({which}), "
          f"backend {args.backend}, {f'{args.comm.size} processes x ' if getattr(args, 'comm', None) else ''}"
          f"{threads} thread{'s' if threads != 1 else ''}", flush=True)
    if args.save:
        nn.save(result.model, args.save, preprocess=result.preprocess, classes=result.classes)
        print(f"saved model to {args.save}")
    return 0
