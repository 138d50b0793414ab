"""The `Linear` layer: parameters, gradients and an input cache around `fastlinear._dispatch`."""

from __future__ import annotations

import math
import threading

import numpy as np
import numpy.typing as npt

from . import _dispatch
from . import _validate as check
from ._memory import empty_aligned, zeros_aligned
from .activations import code as activation_code
from .backends import get_backend
from .initializers import check_init, initial_parameters
from .module import Module


class Linear(Module):
    r"""A fully connected layer, ``y = activation(x @ weight.T + bias)``, computed by a chosen
    backend, with the activation fused into the kernels.

    Args:
        in_features: size of each input row.
        out_features: size of each output row.
        bias: if False, the layer has no bias (``bias`` and ``grad_bias`` are None).
        dtype: float32 (default; None also means float32) or float64; inputs must have this
            dtype (no silent casts).
        backend: kernel set by name, see `fastlinear.available_backends()`. Can be changed later
            by assigning ``layer.backend``.
        init: weight initialisation scheme: "he_normal" (default), "he_uniform", "lecun_normal",
            "xavier_uniform", "xavier_normal", "small_normal", "torch" or "zeros".
        activation: None (default), "relu", "sigmoid" or "tanh". It is applied as each output
            is stored, and its derivative is applied to dy in the same pass that computes the
            bias gradient; the layer keeps its output (not the pre-activation) for `backward`.
        reduction: "sum" (default) accumulates gradients summed over the rows of the batch, as
            torch does; "mean" divides ``grad_weight`` and ``grad_bias`` by the number of rows,
            for a loss written as a sum over the batch whose updates should be averages. The
            input gradient returned by `backward` is never scaled.
        seed: seed (or numpy Generator) for the initialisation; None draws fresh entropy.

    Shape:
        - Input: (..., in_features), any number of leading dimensions.
        - Output: (..., out_features).

    Attributes:
        weight: (out_features, in_features) array.
        bias: (out_features,) array or None.
        grad_weight, grad_bias: gradients of the same shapes, zero at first; every `backward`
            call adds to them until `zero_grad`.
        training: when True (the default), `forward` keeps its input for `backward`.

    The layer keeps a reference to its last input (and, with an activation, to the output it
    returned), not a copy: changing those arrays in place before `backward` changes the
    gradients.

    Examples:
        >>> import numpy as np, fastlinear as fl
        >>> layer = fl.Linear(3, 2, seed=0)
        >>> y = layer(np.ones((4, 3), dtype=np.float32))
        >>> dx = layer.backward(np.ones_like(y))
        >>> layer.step(0.1)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: npt.DTypeLike = np.float32,
        backend: str = "auto",
        init: str = "he_normal",
        activation: str | None = None,
        reduction: str = "sum",
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.in_features = check.features("in_features", in_features)
        self.out_features = check.features("out_features", out_features)
        bias = check.flag("bias", bias)
        self.dtype = check.resolve_dtype(np.float32 if dtype is None else dtype)
        get_backend(backend)
        self._backend = backend
        self.init = check_init(init)
        self._act = activation_code(activation)
        self._activation = activation
        self._reduction = check.reduction(reduction)
        self.training = True
        shape = self._wshape = (self.out_features, self.in_features)
        self._bshape = (self.out_features,)
        # on cache lines: the kernels read w in 64-byte vectors (see `fastlinear._memory`)
        self.weight = empty_aligned(shape, self.dtype)
        self.bias = empty_aligned(self.out_features, self.dtype) if bias else None
        self.grad_weight = zeros_aligned(shape, self.dtype)
        self.grad_bias = zeros_aligned(self.out_features, self.dtype) if bias else None
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._g: np.ndarray | None = None  # buffer for dy * act'(y), reused across batches
        self._owner: int | None = None  # thread that ran the cached forward
        self._busy = threading.Lock()  # held by a running backward
        self._rng = np.random.default_rng(seed)
        self.reset_parameters()

    @property
    def backend(self) -> str:
        """Name of the backend the layer runs on."""
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        get_backend(name)
        self._backend = name

    @property
    def activation(self) -> str | None:
        """The fused activation: None, "relu", "sigmoid" or "tanh" (fixed at construction)."""
        return self._activation

    @property
    def reduction(self) -> str:
        """How backward reduces parameter gradients over the batch: "sum" or "mean"."""
        return self._reduction

    @reduction.setter
    def reduction(self, value: str) -> None:
        self._reduction = check.reduction(value)

    def reset_parameters(
        self, init: str | None = None, seed: int | np.random.Generator | None = None
    ) -> None:
        """Draw new weights (and bias) in place.

        Args:
            init: scheme to use instead of the layer's own (which is then updated).
            seed: reseed the layer's generator first; None continues its stream, so two calls
                give different weights.
        """
        init = self.init if init is None else check_init(init)
        rng = self._rng if seed is None else np.random.default_rng(seed)
        w, b = initial_parameters(init, rng, self.out_features, self.in_features, self.bias is not None)
        self.weight[...] = w
        if self.bias is not None:
            self.bias[...] = b
        self._rng = rng
        self.init = init

    def forward(
        self, x: np.ndarray, *, cache: bool | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Return ``activation(x @ weight.T + bias)``.

        Args:
            x: array of shape (..., in_features) and the layer's dtype.
            cache: keep x (and, with an activation, the output) for `backward`. Defaults to
                ``self.training``; pass False (or call `eval`) for inference, so no reference is
                held. Every forward replaces the previous cache; an uncached one leaves none, so
                `backward` then raises.
            out: optional C-contiguous array of shape (..., out_features) to write into (reused
                across steps, it saves an allocation); it must not overlap x, the parameters or
                their gradients.

        Returns:
            y of shape (..., out_features) and the layer's dtype (``out`` itself when given).

        Raises:
            TypeError: x (or out) is not an ndarray, or its dtype is not the layer's.
            ValueError: x's last dimension is not in_features, or ``out`` is unusable.
            RuntimeError: a parameter or gradient attribute was replaced by an unusable array.
        """
        ready = self._check_parameters()
        w, b = (self.weight, self.bias) if ready else self._kernel_parameters()
        y = _dispatch.forward(get_backend(self._backend), x, w, b, self._act, out,
                              None if out is None else self._gradients())
        # Without caching, drop any older cache too, so a later backward cannot pair this
        # forward's dy with an earlier input.
        # Views of its own: reshaping the caller's arrays in place (x.shape = ...) cannot change
        # what backward reads, which the kernels index without bounds checks.
        if self.training if cache is None else cache:
            self._x = x.view()
            self._y = y.view() if self._act else None
            self._owner = threading.get_ident()
        else:
            self._x = self._y = None
        return y

    __call__ = forward

    def backward(
        self, dy: np.ndarray, *, need_input_grad: bool = True, out: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Add this batch's gradients to ``grad_weight``/``grad_bias`` and return dx.

        Args:
            dy: gradient of the loss with respect to the last forward output, same shape.
            need_input_grad: if False (e.g. for a first layer), dx is neither computed nor returned.
            out: optional C-contiguous array of the input's shape to write dx into; it must not
                overlap dy, the cached input or the parameters.

        Returns:
            dx of shape (..., in_features), or None.

        Raises:
            RuntimeError: no cached forward input (no forward yet, or it ran with cache=False),
                or the forward ran in another thread, or another thread is inside backward.
            TypeError: dy is not an ndarray of the layer's dtype; need_input_grad is not a bool.
            ValueError: dy's shape differs from the forward output's; ``out`` is unusable.
        """
        x = self._x
        if x is None:
            raise RuntimeError(
                "backward() needs the input of a preceding forward(); call forward(x) first "
                "(with cache=True, or in training mode)"
            )
        if self._owner != threading.get_ident():
            raise RuntimeError(
                "backward() was called from another thread than the forward() it belongs to; a "
                "layer trains in one thread at a time (inference with cache=False or eval() may "
                "be shared between threads)"
            )
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                "backward() is already running on this layer in another thread; a layer trains "
                "in one thread at a time"
            )
        try:
            w = self.weight if self._check_parameters() else self._kernel_parameters()[0]
            if need_input_grad is not True and need_input_grad is not False:
                need_input_grad = check.flag("need_input_grad", need_input_grad)
            g = None
            if self._act:
                # One buffer, grown to the largest batch seen; a smaller batch (say, the last of
                # an epoch) uses its leading rows, which are C-contiguous too.
                rows = math.prod(x.shape[:-1])
                if self._g is None or self._g.shape[0] < rows:
                    self._g = empty_aligned((rows, self.out_features), self.dtype)
                g = self._g[:rows]
            return _dispatch.backward(
                get_backend(self._backend), dy, x, w, self.grad_weight, self.grad_bias,
                reduction=self._reduction, accumulate=True, need_input_grad=need_input_grad,
                y=self._y, act=self._act, g=g, out=out,
                protect=None if out is None else {**self._gradients(), "bias": self.bias},
            )
        finally:
            self._busy.release()

    def _gradients(self) -> dict:
        """Arrays an ``out=`` must not overlap besides the inputs: the layer's own gradients."""
        return {"grad_weight": self.grad_weight, "grad_bias": self.grad_bias}

    def _kernel_parameters(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The weight and bias as the kernels take them (see `fastlinear._dispatch.kernel_input`)."""
        b = self.bias
        return _dispatch.kernel_input(self.weight), None if b is None else _dispatch.kernel_input(b)

    def _check_parameters(self) -> bool:
        """Refuse to run if a parameter or gradient attribute was replaced by an array the kernels
        cannot use (they index without bounds checks, so a wrong shape would corrupt memory).

        Returns whether the weight and bias are plain writeable C-contiguous arrays that the
        kernels can take as they are (the common case, checked first and cheaply); otherwise
        they go through `_kernel_parameters`."""
        w, gw, b, gb, dt = self.weight, self.grad_weight, self.bias, self.grad_bias, self.dtype
        # flags.carray: C-contiguous, aligned and writeable, read from one flags object per array
        # (this runs on every call: each `.flags` builds a new object).
        if (type(w) is np.ndarray and type(gw) is np.ndarray and w.dtype == dt and gw.dtype == dt
                and w.shape == gw.shape == self._wshape and gw.flags.carray and w.flags.carray):
            if b is None and gb is None:
                return True
            if (type(b) is np.ndarray and type(gb) is np.ndarray and b.dtype == dt and gb.dtype == dt
                    and b.shape == gb.shape == self._bshape and gb.flags.carray and b.flags.carray):
                return True
        self._refuse_parameters()
        return False  # usable, but read-only or not C-contiguous

    def _refuse_parameters(self) -> None:
        """Raise the error `_check_parameters` found, naming the attribute and what it holds."""
        shape = (self.out_features, self.in_features)
        arrays = {"weight": (self.weight, shape), "grad_weight": (self.grad_weight, shape)}
        if self.bias is not None or self.grad_bias is not None:
            arrays["bias"] = (self.bias, (self.out_features,))
            arrays["grad_bias"] = (self.grad_bias, (self.out_features,))
        for name, (a, expected) in arrays.items():
            if (
                not isinstance(a, np.ndarray)
                or a.shape != expected
                or a.dtype != self.dtype
                or (name.startswith("grad") and not (a.flags.c_contiguous and a.flags.writeable))
            ):
                got = f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise RuntimeError(
                    f"layer.{name} is {got}, expected a{' writeable C-contiguous' if name.startswith('grad') else 'n'} "
                    f"array of shape {expected} and dtype {self.dtype}; assign into it in place "
                    f"(layer.{name}[...] = value) instead of replacing it"
                )

    def step(self, lr: float) -> None:
        """Plain SGD: ``weight -= lr * grad_weight`` and ``bias -= lr * grad_bias``, in place.

        Any lr that is finite in the layer's dtype is accepted (zero and negative too); NaN,
        Inf, or a value that overflows the dtype raise ValueError."""
        lr = check.learning_rate(lr, self.dtype)
        self._check_parameters()
        for name, param, _ in self.named_parameters():
            if not param.flags.writeable:
                raise ValueError(f"layer.{name} is read-only; step() updates it in place")
        self.weight -= lr * self.grad_weight
        if self.bias is not None:
            self.bias -= lr * self.grad_bias

    def _drop_cache(self) -> None:
        self._x = self._y = None

    def named_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """("weight", weight, grad_weight), then ("bias", bias, grad_bias) if there is a bias."""
        named = [("weight", self.weight, self.grad_weight)]
        if self.bias is not None:
            named.append(("bias", self.bias, self.grad_bias))
        return named

    def __repr__(self) -> str:
        return (
            f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, dtype={self.dtype}, backend={self._backend!r}"
            + (f", activation={self.activation!r})" if self._act else ")")
        )
