"""`Sequential`: layers run one after another, with each linear layer and the activation after it
fused into one step, and every intermediate array kept in a buffer reused across batches."""

from __future__ import annotations

import threading

import numpy as np

from .. import _dispatch
from .. import _validate as check
from .._memory import empty_output
from ..activations import apply_numpy
from ..activations import code as activation_code
from ..backends import get_backend
from ..layer import Linear
from .activations import _Activation
from .dense import Dense
from .module import Module


class Sequential(Module):
    r"""A chain of `fastlinear.Linear` layers and activation modules.

    A Linear directly followed by `ReLU`, `Sigmoid` or `Tanh` runs as one fused step, exactly like
    ``Linear(..., activation=...)``: the backend's forward applies the activation as it stores
    the output, and its backward multiplies the incoming gradient by the derivative in the same
    pass that computes the bias gradient. The pair needs no buffers of its own.

    Args:
        *modules: `fastlinear.Linear` layers (one dtype, each ``in_features`` equal to the previous
            layer's ``out_features``) and `Module` instances (activations).

    Shape:
        - Input: (batch, in_features) of the first Linear, in its dtype.
        - Output: (batch, out_features) of the last Linear.

    Buffers: the array returned by `forward` (and by `backward`) belongs to the model and is
    overwritten by the next call; copy it to keep it. Buffers are allocated the first time a batch
    size is seen and reused for every batch of that size or smaller, so a training step in steady
    state allocates no large arrays.

    Threads: inference (`predict`, or `forward` in evaluation mode) allocates its own arrays and
    touches no shared state, so one model may serve several threads at once. Training calls
    (`forward` in training mode, `backward`) belong to one thread at a time: a second thread
    entering while one is inside, or a `backward` from another thread than its forward, raises
    RuntimeError instead of mixing the two threads' buffers and gradients.

    Gradients accumulate in the layers' ``grad_weight``/``grad_bias`` until `zero_grad`. With the
    layers' default ``reduction="sum"`` they are gradients of a loss whose own gradient already
    includes the 1/batch of a mean (as `CrossEntropyLoss` and `MSELoss` return by default).

    Examples:
        >>> import numpy as np, fastlinear as fl
        >>> from fastlinear import nn
        >>> model = nn.Sequential(fl.Linear(4, 8, seed=0), nn.ReLU(), fl.Linear(8, 3, seed=1))
        >>> logits = model(np.ones((2, 4), dtype=np.float32))
        >>> loss, dlogits = nn.CrossEntropyLoss()(logits, np.array([0, 2]))
        >>> _ = model.backward(dlogits, need_input_grad=False)
    """

    def __init__(self, *modules: Linear | Module) -> None:
        if not modules:
            raise ValueError("Sequential needs at least one module")
        linears = [m for m in modules if isinstance(m, Linear)]
        for i, m in enumerate(modules):
            if not isinstance(m, (Linear, Module)):
                raise TypeError(f"module {i} is a {type(m).__name__}; expected fastlinear.Linear "
                                f"or a fastlinear.nn.Module")
        if not linears:
            raise ValueError("Sequential needs at least one fastlinear.Linear layer")
        if len({id(m) for m in modules}) != len(modules):
            raise ValueError("a module appears twice in Sequential; use separate instances")
        self.modules = list(modules)
        self._first = linears[0]
        self.dtype = linears[0].dtype
        self.in_features = linears[0].in_features
        self.out_features = linears[-1].out_features
        prev: tuple[int, Linear] | None = None
        for i, m in enumerate(modules):
            if not isinstance(m, Linear):
                continue
            if m.dtype != self.dtype:
                raise TypeError(f"module {i} has dtype {m.dtype} but module "
                                f"{modules.index(linears[0])} has {self.dtype}; use one dtype")
            if prev is not None and m.in_features != prev[1].out_features:
                raise ValueError(
                    f"module {i} has in_features={m.in_features} but module {prev[0]} has "
                    f"out_features={prev[1].out_features}; they must be equal"
                )
            prev = (i, m)
        self._stages = self._fuse()
        self.training = True
        self._busy = threading.Lock()  # held by a training forward or a backward
        self._owner: int | None = None  # thread of the last training forward

    def _fuse(self) -> list[tuple[Dense | Module, list[int]]]:
        """Run plan: (step, indices of the modules it covers); Linear + activation -> one Dense."""
        stages: list[tuple[Dense | Module, list[int]]] = []
        i = 0
        while i < len(self.modules):
            m = self.modules[i]
            nxt = self.modules[i + 1] if i + 1 < len(self.modules) else None
            own = getattr(m, "activation", None)
            if isinstance(m, Linear) and own is None and isinstance(nxt, _Activation):
                stages.append((Dense(m, nxt.name), [i, i + 1]))
                i += 2
            elif isinstance(m, Linear):
                stages.append((Dense(m, own), [i]))
                i += 1
            else:
                stages.append((m, [i]))
                i += 1
        return stages

    def __len__(self) -> int:
        return len(self.modules)

    def __getitem__(self, i: int) -> Linear | Module:
        return self.modules[i]

    def __iter__(self):
        return iter(self.modules)

    @property
    def linears(self) -> list[Linear]:
        """The Linear layers, in order."""
        return [m for m in self.modules if isinstance(m, Linear)]

    def _check_input(self, x: object) -> np.ndarray:
        x = check.require_array("x", x)
        first = self._first.weight
        check.same_dtype("x", x, "weight", first)
        check.input_matches_weight("x", x, first)
        if x.ndim != 2:
            raise ValueError(f"x has shape {x.shape}; the model expects (batch, {self.in_features})")
        return x

    def _enter(self, what: str) -> None:
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{what} while another thread is training this model; training calls belong to "
                f"one thread at a time (inference in eval mode or through predict() may be shared)"
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run every step on x of shape (batch, in_features); return the last output.

        In training mode the output is a buffer that the next call overwrites; in evaluation
        mode it is a new array and nothing shared is written (see "Threads" above)."""
        x = self._check_input(x)
        if not self.training:
            return self._infer(x)
        self._enter("forward() in training mode")
        try:
            x = _dispatch.kernel_input(x)
            for step, _ in self._stages:
                if isinstance(step, Dense):
                    x = step.forward(x, cache=True)
                else:
                    x = step.forward(x)
            self._owner = threading.get_ident()
            return x
        finally:
            self._busy.release()

    def _infer(self, x: np.ndarray) -> np.ndarray:
        """The forward pass into fresh arrays, reading only the parameters."""
        x = _dispatch.kernel_input(x)
        for step, _ in self._stages:
            if isinstance(step, Dense):
                layer = step.layer
                ready = layer._check_parameters()
                w, b = (layer.weight, layer.bias) if ready else layer._kernel_parameters()
                y = empty_output((x.shape[0], layer.out_features), self.dtype)  # next layer's x
                _dispatch.run_forward(get_backend(layer.backend), y, x, w, b, step._act)
                x = y
            elif isinstance(step, _Activation):
                x = x.copy()
                apply_numpy(x, activation_code(step.name))
            else:
                x = step.forward(x)
        return x

    def backward(self, dy: np.ndarray, *, need_input_grad: bool = True) -> np.ndarray | None:
        """Add every layer's gradients for the last forward and return dx (a buffer) or None.

        Args:
            dy: gradient of the loss with respect to the last forward's output.
            need_input_grad: False skips the first layer's input gradient (training needs none).

        Raises:
            RuntimeError: no training forward to differentiate, or another thread's.
        """
        dy = check.require_array("dy", dy)
        need_input_grad = check.flag("need_input_grad", need_input_grad)
        self._enter("backward()")
        try:
            if self._owner is not None and self._owner != threading.get_ident():
                raise RuntimeError(
                    "backward() was called from another thread than the forward() it belongs "
                    "to; training calls belong to one thread at a time"
                )
            last = len(self._stages) - 1
            for k in range(last, -1, -1):
                step, _ = self._stages[k]
                want_dx = need_input_grad or k > 0
                if isinstance(step, Dense):
                    dy = step.backward(dy, want_dx)
                else:
                    dy = step.backward(dy, need_input_grad=want_dx)
            return dy
        finally:
            self._busy.release()

    def named_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """("<index>.weight", weight, grad_weight), ("<index>.bias", ...), as torch names them."""
        named = []
        for i, m in enumerate(self.modules):
            named.extend((f"{i}.{name}", p, g) for name, p, g in m.named_parameters())
        return named

    def zero_grad(self) -> None:
        """Set every gradient to zero; the next `backward` then writes the gradients directly
        (identical values, one pass less), so do not change them by hand in between."""
        for m in self.modules:
            m.zero_grad()
        for step, _ in self._stages:
            if isinstance(step, Dense):
                step.grads_zero = True

    def train(self, mode: bool = True) -> "Sequential":
        self.training = bool(mode)
        for m in self.modules:
            m.train(mode)
        if not self.training:
            self._drop_cache()
        return self

    def _drop_cache(self) -> None:
        for step, _ in self._stages:
            if isinstance(step, Dense):
                step.drop_cache()

    def warmup(self, batch_sizes, *, need_input_grad: bool = True,
               jobs: int | None = None) -> None:
        """Compile (or load from the disk cache) the kernels that training steps of this model
        call at each of ``batch_sizes`` (forward, activation, weight, bias and input gradients
        of every layer), so that the first steps run at full speed. On a cold cache this
        compiles in this process and ``jobs`` - 1 others at once (see "Compile time and
        start-up" in the README); `fastlinear train` does this before its first step. The
        optimizer's kernels still compile at its first step. Reads no parameter and changes
        nothing in the model.

        The kernels are those that steps run at this thread's thread count reach
        (`fastlinear.get_num_threads`; Numba keeps a count per thread): steps in a thread with
        another count may still compile a serial or parallel variant on first use.

        Args:
            batch_sizes: the numbers of rows the steps will see (an int or an iterable of ints
                >= 1), e.g. the batch size and the size of the last, smaller batch.
            need_input_grad: as the ``backward`` calls will pass it (whether they compute the
                first layer's input gradient; training passes False).
            jobs: processes at once (default: the current thread count); 1 compiles everything
                here.

        Raises:
            ValueError: no batch size, a batch size below 1, or ``jobs`` below 1.
            TypeError: batch sizes that are not ints, ``jobs`` not an int, or
                ``need_input_grad`` not a bool.
        """
        from .. import _compile, _threads

        if isinstance(batch_sizes, (int, np.integer)):
            sizes = [batch_sizes]
        elif (isinstance(batch_sizes, (str, bytes)) or not hasattr(batch_sizes, "__iter__")
              or isinstance(batch_sizes, np.ndarray) and batch_sizes.ndim == 0):
            raise TypeError(f"batch_sizes must be an int or an iterable of ints, got "
                            f"{batch_sizes!r}")
        else:
            sizes = list(batch_sizes)
        if not sizes:
            raise ValueError("batch_sizes is empty: name at least one batch size")
        for n in sizes:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"batch sizes must be ints, got {n!r} in {batch_sizes!r}")
            if n < 1:
                raise ValueError(f"batch sizes must be >= 1, got {n}")
        jobs = _threads.get_num_threads() if jobs is None else _compile._jobs(jobs)
        need_input_grad = check.flag("need_input_grad", need_input_grad)
        _compile.compile_steps(_compile.step_layers(self, need_input_grad), sizes, jobs)

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Class indices (argmax of the output) for every row of x (batch, in_features).

        Runs the inference path (fresh arrays, no mode change, no cache touched), so it may be
        called from several threads at once and leaves a pending training forward intact.

        Raises:
            TypeError, ValueError: as `forward`; ValueError for a batch_size below 1.
        """
        x = self._check_input(x)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        out = np.empty(x.shape[0], dtype=np.int64)
        for i in range(0, x.shape[0], batch_size):
            logits = self._infer(x[i : i + batch_size])
            if logits.shape[1] == 0:
                raise ValueError("the model has no outputs, so there is no class to predict")
            np.argmax(logits, axis=1, out=out[i : i + batch_size])
        return out

    def __repr__(self) -> str:
        lines = [f"  ({i}): {m!r}" for i, m in enumerate(self.modules)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
