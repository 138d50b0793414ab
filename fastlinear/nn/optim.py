"""Optimizers that update parameters in place: `SGD` (momentum, Nesterov, weight decay), `Adam`
and `AdamW`. The update rules and defaults are torch.optim's.

Hyper-parameters (``lr``, ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``, ``betas``,
``eps``) are attributes that may be changed between steps, as torch's ``param_groups`` entries
are (a learning-rate schedule, a momentum warm-up): each assignment is checked at once, and each
`step` uses the values current at that step. State is created the first time a step needs it, as
in torch: SGD's momentum buffer at the first step taken with ``momentum != 0`` (that step sets it
to the gradient, with no dampening), Adam's moment estimates at the first step. A step allocates
nothing after that, and no state array is ever the parameter itself.

A step checks everything before it updates anything (every setting finite and in range and
representable in each parameter's dtype; every parameter a writable C-contiguous array of the
shape and dtype it had when the optimizer was built), so a step that raises leaves parameters,
state and the step count as they were.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._memory import aligned_copy, zeros_aligned
from . import _optim_kernels as kernels
from .module import Module

ParamList = list[tuple[np.ndarray, np.ndarray]]

# Given to the SGD kernel as its momentum buffer when momentum is 0: the kernel never reads or
# writes the buffer then, and an empty array cannot alias a parameter.
_NO_BUFFER = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}


def _check_pair(i: int, p: object, g: object, shape=None, dtype=None) -> None:
    for name, a in (("parameter", p), ("gradient", g)):
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} {i} must be a float32 or float64 numpy array")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} {i} must be C-contiguous")
    if not p.flags.writeable:
        raise ValueError(f"parameter {i} is read-only; the optimizer updates it in place")
    if g.shape != p.shape or g.dtype != p.dtype:
        raise ValueError(f"gradient {i} is {g.shape} {g.dtype} but its parameter is {p.shape} {p.dtype}")
    if shape is not None and (p.shape != shape or p.dtype != dtype):
        raise ValueError(f"parameter {i} is now {p.shape} {p.dtype}; it was {shape} {dtype} when "
                         f"the optimizer was built")


def _param_list(params: Module | list) -> ParamList:
    pairs = params.parameters() if hasattr(params, "parameters") else list(params)
    if not pairs:
        raise ValueError("the optimizer got no parameters")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"parameter {i} must be a (parameter, gradient) pair of arrays")
        _check_pair(i, *pair)
    ids = [id(p) for p, _ in pairs]
    if len(set(ids)) != len(ids):
        raise ValueError("a parameter appears twice in the optimizer's list; it would be updated twice")
    return pairs


def _real(name: str, value: object, low: float = 0.0, high: float = math.inf,
          high_open: bool = False) -> float:
    """``value`` as a float, if it is a finite real number in [low, high] (or [low, high))."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    unbounded = math.isinf(high)
    if unbounded and not (math.isfinite(value) and low <= value):
        raise ValueError(f"{name} must be finite and at least {low:g}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if not (low <= value and (value < high if high_open else value <= high)):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low:g}, {high:g}{bracket}, got {value!r}")
    return value


class _Setting:
    """A hyper-parameter attribute checked on every assignment by ``check(name, value)``."""

    def __init__(self, check) -> None:
        self.check = check

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else obj.__dict__[self.name]

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.name] = self.check(self.name, value)


def _nonnegative(name, value):
    return _real(name, value)


def _unit(name, value):
    return _real(name, value, 0.0, 1.0)


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _betas(name, value):
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"betas must be a pair of numbers, got {value!r}")
    return (_real("betas[0]", value[0], 0.0, 1.0, True), _real("betas[1]", value[1], 0.0, 1.0, True))


class Optimizer:
    """Shared parts: the (parameter, gradient) list, `zero_grad`, checks, state (de)serialisation.

    ``state`` maps each state name (``"momentum_buffer"``, ``"exp_avg"``, ``"exp_avg_sq"``) to a
    list with one entry per parameter: its array once created, None before."""

    _state_names: tuple[str, ...] = ()
    _settings: tuple[str, ...] = ("lr",)

    lr = _Setting(_nonnegative)

    def __init__(self, params: Module | list, lr: float) -> None:
        self.lr = lr
        self.params = _param_list(params)
        self._shapes = [(p.shape, p.dtype) for p, _ in self.params]
        self.steps = 0
        self.state: dict[str, list[np.ndarray | None]] = {
            name: [None] * len(self.params) for name in self._state_names}

    def __setattr__(self, name: str, value) -> None:
        # A misspelt or unsupported hyper-parameter (opt.learning_rate = ..., opt.amsgrad = True)
        # would otherwise become a plain attribute that no step reads.
        if not (name.startswith("_") or name in self._settings or name in ("params", "state", "steps")):
            raise AttributeError(f"{type(self).__name__} has no setting {name!r}; its settings are "
                                 f"{', '.join(self._settings)}")
        super().__setattr__(name, value)

    def _check_step(self, scalars: dict[str, float]) -> None:
        """Check every setting, parameter, gradient and state array before a step writes anything.

        ``scalars``: the values the kernels will receive, which must also be finite once rounded
        to each parameter's dtype (lr = 1e39 is finite in float64 but inf in float32)."""
        for name in self._settings:
            setattr(self, name, getattr(self, name))  # re-runs the check of each setting
        dtypes = {p.dtype for p, _ in self.params}
        for dtype in dtypes:
            with np.errstate(over="ignore"):
                for name, value in scalars.items():
                    if not np.isfinite(dtype.type(value)):
                        raise ValueError(f"{name} = {value!r} overflows the parameters' dtype {dtype}")
        for i, (p, g) in enumerate(self.params):
            _check_pair(i, p, g, *self._shapes[i])
            for name, arrays in self.state.items():
                a = arrays[i]
                if a is not None and (a.shape != p.shape or a.dtype != p.dtype or not a.flags.c_contiguous
                                      or not a.flags.writeable):
                    raise ValueError(f"optimizer state {name}.{i} is no longer a writable "
                                     f"C-contiguous {p.shape} {p.dtype} array")

    def _state(self, name: str) -> list[tuple[np.ndarray, bool]]:
        """Each parameter's ``name`` array and whether it was just created (zero-filled). All are
        created before any is used, so running out of memory here changes nothing."""
        arrays = self.state[name]
        created = [a is None for a in arrays]
        new = [zeros_aligned(p.shape, p.dtype) if a is None else a for a, (p, _) in zip(arrays, self.params)]
        arrays[:] = new
        return list(zip(new, created))

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for _, g in self.params:
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the optimizer's state: {"steps": ..., "<buffer>.<i>": ...} for every state
        array created so far."""
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        for name, arrays in self.state.items():
            state.update({f"{name}.{i}": a.copy() for i, a in enumerate(arrays) if a is not None})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state made by `state_dict` for the same parameters (checked before writing).

        Raises:
            KeyError: ``steps`` is missing, or a key names no state of this optimizer.
            ValueError: an array's shape or dtype differs from its parameter's.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        valid = {f"{n}.{i}" for n in self.state for i in range(len(self.params))}
        unexpected = sorted(set(state) - valid - {"steps"})
        if "steps" not in state or unexpected:
            missing = [] if "steps" in state else ["steps"]
            raise KeyError(f"optimizer state keys do not match: missing {missing}, "
                           f"unexpected {unexpected}")
        steps = state["steps"]
        if np.ndim(steps) != 0 or not float(steps).is_integer() or int(steps) < 0:
            raise ValueError(f"optimizer state steps must be a non-negative integer, got {steps!r}")
        for name in self.state:
            keys = {f"{name}.{i}" for i in range(len(self.params))}
            present = keys & set(state)
            if (present and present != keys) or (not present and self._needs(name, int(steps))):
                raise KeyError(f"optimizer state keys do not match: missing {sorted(keys - present)}")
        for key in valid & set(state):
            i = int(key.rsplit(".", 1)[1])
            p = self.params[i][0]
            value = state[key]
            if not isinstance(value, np.ndarray) or value.shape != p.shape or value.dtype != p.dtype:
                raise ValueError(f"optimizer state {key} must be {p.shape} {p.dtype}")
        for name, arrays in self.state.items():
            for i in range(len(arrays)):
                key = f"{name}.{i}"
                arrays[i] = aligned_copy(state[key]) if key in state else None
        self.steps = int(steps)

    def _needs(self, name: str, steps: int) -> bool:
        """Whether state ``name`` must exist after ``steps`` steps (Adam's moments do; SGD's
        momentum buffer only once a step ran with momentum, which the step count cannot tell)."""
        return False

    def _scalar(self, p: np.ndarray, value: float) -> np.generic:
        return p.dtype.type(value)


class SGD(Optimizer):
    """Stochastic gradient descent, with the update of torch.optim.SGD.

    Args:
        params: a module or a list of (parameter, gradient) pairs.
        lr: learning rate, finite and >= 0.
        momentum: momentum factor in [0, 1] (0: no momentum buffer is used).
        dampening: dampening of the momentum in [0, 1] (not applied on the step that creates the
            buffer, as in torch).
        weight_decay: L2 penalty added to the gradient, finite and >= 0.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0 at construction, as in
            torch; while momentum is 0 it has no effect).

    All of these are attributes that may be changed between steps. Invalid values raise
    ValueError (out of range, NaN, Inf) or TypeError (not a real number / not a bool).
    """

    _state_names = ("momentum_buffer",)
    _settings = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    momentum = _Setting(_unit)
    dampening = _Setting(_unit)
    weight_decay = _Setting(_nonnegative)
    nesterov = _Setting(_flag)

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        self.momentum = momentum
        self.dampening = dampening
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, lr)

    def step(self) -> None:
        """Update every parameter in place from its gradient (see the module docstring for what
        is checked first)."""
        self._check_step({"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                          "weight_decay": self.weight_decay})
        if self.momentum != 0:
            bufs = self._state("momentum_buffer")
        else:
            bufs = [(_NO_BUFFER[p.dtype], False) for p, _ in self.params]
        for (p, g), (buf, first) in zip(self.params, bufs):
            s = lambda v: self._scalar(p, v)  # noqa: E731
            kernels.sgd_update(p.reshape(-1), g.reshape(-1), buf.reshape(-1), s(self.lr),
                               s(self.momentum), s(self.dampening), s(self.weight_decay),
                               self.nesterov, first)
        self.steps += 1


class Adam(Optimizer):
    """Adam, with the update of torch.optim.Adam (``decoupled_weight_decay=True``: AdamW's).

    Args:
        params: a module or a list of (parameter, gradient) pairs.
        lr: learning rate, finite and >= 0.
        betas: decay rates of the first and second moment estimates, each in [0, 1).
        eps: added to the denominator, finite and >= 0.
        weight_decay: L2 penalty added to the gradient, or with ``decoupled_weight_decay``
            a shrink of the parameters by ``lr * weight_decay`` before each step; finite, >= 0.

    All of these are attributes that may be changed between steps; the bias corrections use the
    betas current at each step, as torch's do. Invalid values raise ValueError or TypeError.
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _settings = ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")

    betas = _Setting(_betas)
    eps = _Setting(_nonnegative)
    weight_decay = _Setting(_nonnegative)
    decoupled_weight_decay = _Setting(_flag)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled_weight_decay = decoupled_weight_decay
        super().__init__(params, lr)

    def _needs(self, name: str, steps: int) -> bool:
        return steps > 0

    def step(self) -> None:
        """Update every parameter in place from its gradient (see the module docstring for what
        is checked first)."""
        step = self.steps + 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**step
        bias2_sqrt = (1.0 - beta2**step) ** 0.5
        self._check_step({"lr": self.lr, "betas[0]": beta1, "betas[1]": beta2, "eps": self.eps,
                          "weight_decay": self.weight_decay, "lr / (1 - betas[0]**step)": self.lr / bias1,
                          "lr * weight_decay": self.lr * self.weight_decay})
        ms = self._state("exp_avg")
        vs = self._state("exp_avg_sq")
        for (p, g), (m, _), (v, _) in zip(self.params, ms, vs):
            s = lambda x: self._scalar(p, x)  # noqa: E731
            kernels.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                                s(self.lr), s(beta1), s(beta2), s(self.eps), s(self.weight_decay),
                                self.decoupled_weight_decay, s(bias1), s(bias2_sqrt))
        self.steps = step


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)
