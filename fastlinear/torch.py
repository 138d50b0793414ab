"""fastlinear's kernels inside PyTorch: a drop-in ``torch.nn.Linear`` for CPU training scripts.

    import fastlinear.torch as flt
    layer = flt.Linear(784, 128, activation="relu")   # relu(x @ W.T + b) in one kernel
    model = flt.replace_linear(model)                 # swap every nn.Linear of a model in place

This module imports torch; ``import fastlinear`` never does. Three pieces:

* two torch operators, ``torch.ops.fastlinear.linear`` and ``torch.ops.fastlinear.linear_backward``
  (``torch.library.custom_op``: a CPU kernel that runs fastlinear's raw kernels on numpy views of
  the tensors, a fake implementation for tracing, ``register_autograd`` and a vmap rule), which
  ``torch.compile(fullgraph=True)`` records in its graph;
* `linear`, the functional form (like ``torch.nn.functional.linear``), with one
  ``torch.autograd.Function`` around the same two kernels for eager mode;
* `Linear` (a subclass of ``torch.nn.Linear``) and `replace_linear`.

Why eager mode does not go through the operators: at batch 1, 16 -> 16 features, a forward through
torch's dispatcher to a Python kernel, with autograd, cost 59 us of CPU time against 22 us for the
``torch.autograd.Function`` path and 12 us for ``nn.Linear`` (one thread, on a 2-core AMD EPYC
busy with other work, so only the ratios mean much: ``asv_benchmarks/scripts/torch_training.py
--overhead --threads 1 --clock cpu``). Both paths call the same `_forward_impl` /
`_backward_impl`, which do all the checking, so they give the same results and the same errors.

Every output (``y``, ``dx``, ``dw``, ``db``) is a fresh tensor: nothing aliases an input or a
buffer kept between calls, and autograd accumulates ``dw`` / ``db`` into ``.grad`` as it does for
``nn.Linear``. Inputs that are not C-contiguous are copied to C order first (a copy changes no
value); nothing is ever cast: float16/bfloat16, integer, mixed-dtype, non-CPU inputs and autocast
raise an error naming the dtype or device. With a fused activation, the forward applies it inside
fastlinear's kernel and the backward takes ``dy * act'(y)`` from torch's own backward of that
activation (see `_backward_impl`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from . import activations as _act
from ._memory import empty_output
from .backends import Backend, get_backend

__all__ = ["Linear", "linear", "replace_linear"]

#: the scale factor (1, in the data's dtype) passed to the gradient kernels: a Python float would
#: make a float32 kernel compute in float64.
_ONE = {torch.float32: np.float32(1), torch.float64: np.float64(1)}
_NUMPY = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}
_STRIDED = torch.strided

#: activation modules that `replace_linear` can fuse into the preceding layer
_FUSABLE = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}


#: dy * act'(y) from the activation's output y, as torch's activation modules compute it
_ACTIVATION_BACKWARD = {
    _act.RELU: lambda dy, y: torch.ops.aten.threshold_backward.default(dy, y, 0),
    _act.SIGMOID: torch.ops.aten.sigmoid_backward.default,
    _act.TANH: torch.ops.aten.tanh_backward.default,
}


# --------------------------------------------------------------------------------------------
# checks (shared by the eager path and the operators, so a mistake gives the same error in both)
# --------------------------------------------------------------------------------------------

def _check_tensor(name: str, t: Tensor, dtype: torch.dtype) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"fastlinear.torch: {name} must be a torch.Tensor, got "
                        f"{type(t).__name__}")
    if t.layout is not torch.strided:
        raise TypeError(f"fastlinear.torch: {name} has layout {t.layout}; fastlinear's kernels "
                        "take dense (strided) tensors, convert with .to_dense() first")
    if t.dtype is not dtype:
        raise TypeError(f"fastlinear.torch: {name} has dtype {t.dtype} but weight has dtype "
                        f"{dtype}; fastlinear does not cast, convert one of them first")
    if not t.is_cpu:
        raise ValueError(f"fastlinear.torch: {name} is on device {t.device}; fastlinear runs on "
                         "the CPU only (move the layer and its inputs to 'cpu', or use "
                         "torch.nn.Linear)")


def _check_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    """Raise unless x (..., in), weight (out, in) and bias (out,) fit fastlinear's kernels."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"fastlinear.torch: weight must be a torch.Tensor, got "
                        f"{type(weight).__name__}")
    dtype = weight.dtype
    if dtype not in _ONE:
        raise TypeError(f"fastlinear.torch: weight has dtype {dtype}; fastlinear's kernels run "
                        "float32 and float64 only (use torch.nn.Linear for float16/bfloat16)")
    _check_tensor("weight", weight, dtype)
    _check_tensor("x", x, dtype)
    if weight.dim() != 2:
        raise ValueError(f"fastlinear.torch: weight must be 2-D (out_features, in_features), "
                         f"got shape {tuple(weight.shape)}")
    if bias is not None:
        _check_tensor("bias", bias, dtype)
        if tuple(bias.shape) != (weight.shape[0],):
            raise ValueError(f"fastlinear.torch: bias of shape {tuple(bias.shape)} does not fit "
                             f"weight of shape {tuple(weight.shape)}: expected "
                             f"({weight.shape[0]},)")
    if x.dim() == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"fastlinear.torch: x of shape {tuple(x.shape)} does not fit weight of "
                         f"shape {tuple(weight.shape)}: last dimension must be in_features "
                         f"{weight.shape[1]}")
    if torch.is_autocast_enabled("cpu"):
        raise RuntimeError(
            f"fastlinear.torch: CPU autocast is enabled (to {torch.get_autocast_dtype('cpu')}); "
            "fastlinear's kernels run float32/float64 only and never cast. Run the layer outside "
            "torch.autocast, or use torch.nn.Linear there")


def _rows(t: Tensor, features: int) -> Tensor:
    """``t`` (..., features) as a C-contiguous (rows, features) tensor, copied only if needed."""
    if t.dim() != 2:
        t = t.reshape(-1, features)
    return t if t.is_contiguous() else t.contiguous()


def _np(t: Tensor) -> np.ndarray:
    """A numpy view sharing ``t``'s memory. ``force=True`` only detaches here (t is a real CPU
    tensor, checked before); it took 0.85 us against 1.06 us for ``t.detach().numpy()``."""
    return t.numpy(force=True) if t.requires_grad else t.numpy()


# --------------------------------------------------------------------------------------------
# the two kernels: checks, allocation of fresh outputs, numpy views, one backend call each
# --------------------------------------------------------------------------------------------

def _fits(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> bool:
    """The checks of `_check_forward` as one cheap expression, for the common case."""
    try:
        dtype = weight.dtype
        return (dtype in _ONE and x.dtype is dtype and x.is_cpu and weight.is_cpu
                and x.layout is _STRIDED and weight.layout is _STRIDED
                and weight.dim() == 2 and x.dim() > 0 and x.shape[-1] == weight.shape[1]
                and (bias is None or (bias.dtype is dtype and bias.is_cpu
                                      and bias.layout is _STRIDED
                                      and bias.shape == weight.shape[:1]))
                and not torch.is_autocast_enabled("cpu"))
    except AttributeError:  # not a tensor: `_check_forward` says which
        return False


def _forward_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], act: int,
                  kernels: Backend) -> Tensor:
    """y (..., out) = act(x (..., in) @ weight.T (in, out) + bias (out,)), a fresh tensor."""
    if not _fits(x, weight, bias):
        _check_forward(x, weight, bias)  # raises, naming what does not fit
    out_features, in_features = weight.shape
    x2 = _rows(x, in_features)
    # outputs are allocated by numpy and wrapped: np.empty + torch.from_numpy took 0.9 us against
    # 2.4 us for torch.empty + .numpy() (batch 1, 16 features, 2-core AMD EPYC); a large one on a
    # 64-byte line, as the next layer reads it as x (`fastlinear._memory.empty_output`)
    y = empty_output((x2.shape[0], out_features), _NUMPY[weight.dtype])
    w = weight if weight.is_contiguous() else weight.contiguous()
    b = None if bias is None else _np(bias if bias.is_contiguous() else bias.contiguous())
    kernels.forward(y, _np(x2), _np(w), b, act)
    if x.dim() != 2:
        y = y.reshape(x.shape[:-1] + (out_features,))
    return torch.from_numpy(y)


def _backward_impl(dy: Tensor, x: Tensor, weight: Tensor, y: Optional[Tensor], act: int,
                   need_input: bool, need_weight: bool, need_bias: bool,
                   kernels: Backend) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of `_forward_impl` for the upstream gradient dy (..., out).

    Returns (dx (..., in), dw (out, in), db (out,)), each a fresh tensor; a gradient not asked
    for comes back as an empty tensor of shape (0,). ``y`` is the forward's output, needed (and
    read) only when ``act`` is not 0.
    """
    dtype = weight.dtype
    if dtype not in _ONE:
        raise TypeError(f"fastlinear.torch: weight has dtype {dtype}; fastlinear's kernels run "
                        "float32 and float64 only")
    _check_tensor("grad_output", dy, dtype)
    out_features, in_features = weight.shape
    if dy.dim() == 0 or dy.shape[-1] != out_features:
        raise ValueError(f"fastlinear.torch: grad_output of shape {tuple(dy.shape)} does not fit "
                         f"weight of shape {tuple(weight.shape)}")
    one, npdtype = _ONE[dtype], _NUMPY[dtype]
    g = _rows(dy, out_features)  # autograd may pass an expanded (stride-0) gradient
    if act != _act.NONE:
        _check_tensor("y", y, dtype)
        # dy * act'(y), the gradient before the activation, by torch's own backward of that
        # activation (exactly what nn.ReLU / nn.Sigmoid / nn.Tanh compute). fastlinear's fused
        # activation_grad kernel took 3-5x as long when this was chosen; since its inner loops
        # vectorize it is level with threshold_backward + sum on one thread (64x256 float32:
        # 7.8 against 7.1 us; 256x1024: 66.5 against 73.4 us; 2-core AMD EPYC), not yet measured
        # inside a torch training loop, so torch's op stays.
        g = _ACTIVATION_BACKWARD[act](g, _rows(y, out_features))
    g = _np(g)
    db = np.empty(out_features if need_bias else 0, npdtype)
    dw = np.empty((out_features, in_features) if need_weight else 0, npdtype)
    if need_weight:
        _check_tensor("x", x, dtype)
        kernels.grad_weight(dw, db if need_bias else None, g, _np(_rows(x, in_features)), one,
                            False)
    elif need_bias:
        kernels.grad_bias(db, g, one, False)
    dx = np.empty((g.shape[0], in_features) if need_input else 0, npdtype)
    if need_input:
        w = weight if weight.is_contiguous() else weight.contiguous()
        kernels.grad_input(dx, g, _np(w))
        if dy.dim() != 2:
            dx = dx.reshape(dy.shape[:-1] + (in_features,))
    return torch.from_numpy(dx), torch.from_numpy(dw), torch.from_numpy(db)


# --------------------------------------------------------------------------------------------
# torch operators: what torch.compile records (and what torch.library.opcheck tests)
# --------------------------------------------------------------------------------------------

@torch.library.custom_op("fastlinear::linear", mutates_args=(), device_types="cpu")
def _linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: int,
               backend: str) -> Tensor:
    """y = act(x @ weight.T + bias); ``activation`` is a code from `fastlinear.activations`."""
    return _forward_impl(x, weight, bias, activation, get_backend(backend))


@_linear_op.register_fake
def _linear_fake(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: int,
                 backend: str) -> Tensor:
    get_backend(backend)
    _check_forward(x, weight, bias)
    return x.new_empty(x.shape[:-1] + (weight.shape[0],))


@torch.library.custom_op("fastlinear::linear_backward", mutates_args=(), device_types="cpu")
def _linear_backward_op(grad_output: Tensor, x: Tensor, weight: Tensor, y: Optional[Tensor],
                        activation: int, need_input: bool, need_weight: bool, need_bias: bool,
                        backend: str) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, dw, db) of ``fastlinear::linear``; a gradient not asked for is an empty (0,) tensor."""
    return _backward_impl(grad_output, x, weight, y, activation, need_input, need_weight,
                          need_bias, get_backend(backend))


@_linear_backward_op.register_fake
def _linear_backward_fake(grad_output: Tensor, x: Tensor, weight: Tensor, y: Optional[Tensor],
                          activation: int, need_input: bool, need_weight: bool, need_bias: bool,
                          backend: str) -> tuple[Tensor, Tensor, Tensor]:
    out_features, in_features = weight.shape
    dx = grad_output.new_empty(grad_output.shape[:-1] + (in_features,) if need_input else (0,))
    dw = weight.new_empty((out_features, in_features) if need_weight else (0,))
    db = weight.new_empty((out_features,) if need_bias else (0,))
    return dx, dw, db


def _op_setup_context(ctx, inputs, output) -> None:
    x, weight, bias, activation, backend = inputs
    ctx.activation, ctx.backend, ctx.has_bias = activation, backend, bias is not None
    ctx.save_for_backward(x, weight, output if activation != _act.NONE else None)


def _op_backward(ctx, grad_output: Tensor):
    x, weight, y = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx, dw, db = torch.ops.fastlinear.linear_backward(
        grad_output, x, weight, y, ctx.activation, need_x, need_w, need_b and ctx.has_bias,
        ctx.backend)
    return (dx if need_x else None, dw if need_w else None,
            db if need_b and ctx.has_bias else None, None, None)


_linear_op.register_autograd(_op_backward, setup_context=_op_setup_context)


def _linear_vmap(info, in_dims, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                 activation: int, backend: str):
    """vmap over the input: the mapped dimension is one more leading dimension of x."""
    x_dim, w_dim, b_dim = in_dims[:3]
    if w_dim is not None or b_dim is not None:
        raise NotImplementedError(
            "fastlinear.torch: vmap over the weight or bias is not supported, only over the input")
    return torch.ops.fastlinear.linear(x.movedim(x_dim, 0), weight, bias, activation,
                                       backend), 0


_linear_op.register_vmap(_linear_vmap)


# --------------------------------------------------------------------------------------------
# eager mode: one autograd.Function around the same two kernels, without the dispatcher
# --------------------------------------------------------------------------------------------

class _LinearFunction(torch.autograd.Function):
    """Eager-mode autograd node for `linear` (see the module docstring for why not the op).

    ``forward`` takes the resolved `Backend` rather than its name, so that no call looks it up;
    ``backward`` passes ``kernels.name`` when it goes through the operator."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], act: int,
                kernels: Backend) -> Tensor:
        y = _forward_impl(x, weight, bias, act, kernels)
        ctx.act, ctx.kernels, ctx.has_bias = act, kernels, bias is not None
        # the activation's derivative is computed from its output, so keep y (autograd's version
        # counter then catches an in-place change of y before backward)
        ctx.save_for_backward(x, weight, y if act != _act.NONE else None)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        x, weight, y = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        need_b = need_b and ctx.has_bias
        if torch.is_grad_enabled():
            # create_graph=True: go through the operator. It has no derivative of its own, so
            # autograd records a node that raises if a second derivative is ever taken. (Gradients
            # straight from numpy would carry no graph, and a second derivative would silently
            # be missing; once_differentiable lets that through whenever dy does not require
            # grad.)
            dx, dw, db = torch.ops.fastlinear.linear_backward(
                dy, x, weight, y, ctx.act, need_x, need_w, need_b, ctx.kernels.name)
        else:
            dx, dw, db = _backward_impl(dy, x, weight, y, ctx.act, need_x, need_w, need_b,
                                        ctx.kernels)
        return (dx if need_x else None, dw if need_w else None, db if need_b else None,
                None, None)


def _linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], act: int, backend: str,
            kernels: Backend) -> Tensor:
    """The one dispatch point: the operator while torch.compile traces, else the Function, else
    (nothing needs a gradient) the kernel alone. ``kernels`` is ``get_backend(backend)``."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        # torch.compile and torch.func (vmap, grad) work on the operator; the private flag is
        # the one autograd.Function.apply itself consults
        return torch.ops.fastlinear.linear(x, weight, bias, act, backend)
    # getattr: a non-tensor argument must reach the checks, which name it
    if torch.is_grad_enabled() and (getattr(weight, "requires_grad", False)
                                    or getattr(x, "requires_grad", False)
                                    or getattr(bias, "requires_grad", False)):
        return _LinearFunction.apply(x, weight, bias, act, kernels)
    return _forward_impl(x, weight, bias, act, kernels)


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
           activation: Optional[str] = None, *, backend: str = "auto") -> Tensor:
    """``activation(x @ weight.T + bias)`` with fastlinear's kernels, differentiable once.

    The fastlinear analogue of ``torch.nn.functional.linear`` (plus a fused activation).

    Args:
        x: input of shape (..., in_features), float32 or float64, on the CPU.
        weight: (out_features, in_features), the same dtype.
        bias: optional (out_features,), the same dtype.
        activation: None, "relu", "sigmoid" or "tanh", applied as each output is stored.
        backend: a name from `fastlinear.available_backends()` ("auto" by default).

    Returns:
        A new tensor of shape (..., out_features) and the dtype of x.

    Raises:
        TypeError: a dtype other than float32/float64, or dtypes that differ.
        ValueError: a tensor not on the CPU, shapes that do not fit, or an unknown backend or
            activation.
        RuntimeError: CPU autocast is enabled.
    """
    return _linear(x, weight, bias, _act.code(activation), backend, get_backend(backend))


# --------------------------------------------------------------------------------------------
# the module
# --------------------------------------------------------------------------------------------

class Linear(nn.Linear):
    r"""``torch.nn.Linear`` computed by fastlinear's kernels: :math:`y = act(x W^T + b)`.

    The same parameters, initialisation, ``state_dict`` keys and ``repr`` as ``torch.nn.Linear``
    (a checkpoint moves between the two unchanged); forward and backward run fastlinear's kernels,
    with the activation fused into them when one is given.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: whether to learn an additive bias.
        device, dtype: as for ``torch.nn.Linear``; forward runs only on the CPU and only in
            float32 or float64.
        activation: None, "relu", "sigmoid" or "tanh", applied inside the kernel (the layer then
            stands for ``nn.Linear`` followed by ``nn.ReLU()`` etc.).
        backend: which fastlinear backend runs the kernels, a name from
            `fastlinear.available_backends()`; may be reassigned at any time.

    Shape:
        - Input: (*, in_features); output: (*, out_features).

    Attributes:
        weight: (out_features, in_features), initialised U(-1/sqrt(in), 1/sqrt(in)) as in torch.
        bias: (out_features,), the same.

    Raises (at forward): TypeError for float16/bfloat16/mixed dtypes, ValueError for non-CPU
    tensors or shapes that do not fit, RuntimeError under CPU autocast.

    Example::

        >>> layer = Linear(20, 30, activation="relu")
        >>> layer(torch.randn(128, 20)).shape
        torch.Size([128, 30])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, activation: Optional[str] = None, backend: str = "auto") -> None:
        act = _act.code(activation)
        get_backend(backend)
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._act = act
        self.backend = backend

    @property
    def activation(self) -> Optional[str]:
        """The fused activation's name, or None."""
        return next(name for name, c in _act.CODES.items() if c == self._act)

    @activation.setter
    def activation(self, name: Optional[str]) -> None:
        self._act = _act.code(name)

    @property
    def backend(self) -> str:
        """The fastlinear backend that runs the kernels."""
        return self._backend

    @backend.setter
    def backend(self, name: str) -> None:
        self._kernels = get_backend(name)  # looked up here once, not on every call
        self._backend = name

    def forward(self, input: Tensor) -> Tensor:
        # Parameters live in ``_parameters``; reading them there skips nn.Module.__getattr__
        # (0.6 us per attribute at batch 1). A reparametrized weight (torch.nn.utils.parametrize,
        # weight_norm) is not in that dict and is read as an attribute.
        params = self._parameters
        weight, bias = params.get("weight"), params.get("bias")
        if weight is None:
            weight, bias = self.weight, self.bias
        elif bias is None and "bias" not in params:
            bias = self.bias
        return _linear(input, weight, bias, self._act, self._backend, self._kernels)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self._act != _act.NONE:
            text += f", activation={self.activation!r}"
        if self._backend != "auto":
            text += f", backend={self._backend!r}"
        return text

    @classmethod
    def from_linear(cls, layer: nn.Linear, *, activation: Optional[str] = None,
                    backend: str = "auto") -> "Linear":
        """A fastlinear Linear that shares ``layer``'s parameters (the same Parameter objects,
        so an optimizer built over them keeps working), training mode and hooks."""
        new = cls(layer.in_features, layer.out_features, bias=layer.bias is not None,
                  device="meta", dtype=layer.weight.dtype, activation=activation,
                  backend=backend)
        new.weight = layer.weight
        new.bias = layer.bias
        new.train(layer.training)
        # forward/backward/state_dict hooks live in dicts named ``_*hooks*`` on nn.Module
        for key, value in vars(layer).items():
            if key.startswith("_") and "hooks" in key and isinstance(value, dict):
                setattr(new, key, type(value)(value))
        return new


def replace_linear(module: nn.Module, *, fuse_activations: bool = False,
                   backend: str = "auto") -> nn.Module:
    """Swap every ``torch.nn.Linear`` inside ``module`` for a fastlinear `Linear`, in place.

    The new layers share the old ones' parameters (the same ``Parameter`` objects), so values,
    ``state_dict`` keys and an optimizer already built over ``module.parameters()`` are unchanged.
    Only layers whose type is exactly ``nn.Linear`` are swapped (subclasses, such as the output
    projection inside ``nn.MultiheadAttention``, call the weight directly and are left alone).

    Args:
        module: the model; changed in place.
        fuse_activations: also fuse an ``nn.ReLU``, ``nn.Sigmoid`` or ``nn.Tanh`` that directly
            follows a swapped layer inside an ``nn.Sequential`` into that layer's kernel; the
            activation module is replaced by ``nn.Identity`` (which has no state, so
            ``state_dict`` keys stay the same). Activations with hooks are not fused.
        backend: the fastlinear backend the new layers use.

    Returns:
        ``module`` itself, or a new fastlinear `Linear` if ``module`` is itself an ``nn.Linear``.
    """
    get_backend(backend)
    if type(module) is nn.Linear:
        return Linear.from_linear(module, backend=backend)
    for parent in list(module.modules()):
        children = list(parent.named_children())
        for i, (name, child) in enumerate(children):
            if type(child) is not nn.Linear:
                continue
            activation = None
            if fuse_activations and isinstance(parent, nn.Sequential) and i + 1 < len(children):
                nxt_name, nxt = children[i + 1]
                if type(nxt) in _FUSABLE and not _has_hooks(nxt):
                    activation = _FUSABLE[type(nxt)]
                    setattr(parent, nxt_name, nn.Identity())
            setattr(parent, name, Linear.from_linear(child, activation=activation,
                                                     backend=backend))
    return module


def _has_hooks(module: nn.Module) -> bool:
    return any(value for key, value in vars(module).items()
               if key.startswith("_") and "hooks" in key and isinstance(value, dict))

