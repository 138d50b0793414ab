"""Optimizers that update parameters in place: `SGD` (momentum, Nesterov, weight decay), `Adam`
and `AdamW`. Their state (momentum buffers, moment estimates) is allocated once, at construction,
so a step allocates nothing. The update rules and defaults are torch.optim's.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _optim_kernels as kernels
from .module import Module

ParamList = list[tuple[np.ndarray, np.ndarray]]


def _param_list(params: Module | list) -> ParamList:
    pairs = params.parameters() if hasattr(params, "parameters") else list(params)
    if not pairs:
        raise ValueError("the optimizer got no parameters")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(f"parameter {i} must be a (parameter, gradient) pair of arrays")
        p, g = pair
        for name, a in (("parameter", p), ("gradient", g)):
            if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
                raise TypeError(f"{name} {i} must be a float32 or float64 numpy array")
            if not a.flags.c_contiguous:
                raise ValueError(f"{name} {i} must be C-contiguous")
        if not p.flags.writeable:
            raise ValueError(f"parameter {i} is read-only; the optimizer updates it in place")
        if g.shape != p.shape or g.dtype != p.dtype:
            raise ValueError(f"gradient {i} is {g.shape} {g.dtype} but its parameter is {p.shape} {p.dtype}")
    return pairs


def _real(name: str, value: object, low: float = 0.0, high: float = float("inf"),
          high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not (low <= value and (value < high if high_open else value <= high)):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{name} must be in [{low}, {high}{bracket}, got {value}")
    return value


class Optimizer:
    """Shared parts: the (parameter, gradient) list, `zero_grad`, and state (de)serialisation.

    ``lr`` may be changed between steps (e.g. by a schedule)."""

    _state_names: tuple[str, ...] = ()

    def __init__(self, params: Module | list, lr: float) -> None:
        self.params = _param_list(params)
        # Kept to see, at each step, which backends the model's layers run on (see `_parallel`).
        self._model = params if hasattr(params, "parameters") else None
        self.lr = _real("lr", lr)
        self.steps = 0
        self.state = {name: [np.zeros_like(p) for p, _ in self.params] for name in self._state_names}

    def _parallel(self) -> bool:
        """Whether the update may run as a parallel Numba kernel: not when a layer of the model
        runs on BLAS. With several threads, OpenBLAS's idle workers keep spinning after each call
        and a parallel Numba region right after it waits for cores they hold, which made a digits
        training step on the blas backend 12 times slower at 2 threads. Serial and parallel
        updates give identical bits, so this changes only the speed."""
        if self._model is None:
            return True
        return not any(getattr(m, "backend", None) == "blas" for m in getattr(self._model, "modules", ()))

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for _, g in self.params:
            g.fill(0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the optimizer's state: {"steps": ..., "<buffer>.<i>": ...}."""
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        for name, arrays in self.state.items():
            state.update({f"{name}.{i}": a.copy() for i, a in enumerate(arrays)})
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a state made by `state_dict` for the same parameters (checked before writing)."""
        expected = {"steps"} | {f"{n}.{i}" for n in self.state for i in range(len(self.params))}
        if set(state) != expected:
            raise KeyError(f"optimizer state keys do not match: missing {sorted(expected - set(state))}, "
                           f"unexpected {sorted(set(state) - expected)}")
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                value = state[f"{name}.{i}"]
                if not isinstance(value, np.ndarray) or value.shape != a.shape or value.dtype != a.dtype:
                    raise ValueError(f"optimizer state {name}.{i} must be {a.shape} {a.dtype}")
        for name, arrays in self.state.items():
            for i, a in enumerate(arrays):
                np.copyto(a, state[f"{name}.{i}"])
        self.steps = int(state["steps"])

    def _scalar(self, p: np.ndarray, value: float) -> np.generic:
        return p.dtype.type(value)


class SGD(Optimizer):
    """Stochastic gradient descent, with the update of torch.optim.SGD.

    Args:
        params: a module or a list of (parameter, gradient) pairs.
        lr: learning rate.
        momentum: momentum factor (0 disables the momentum buffer).
        dampening: dampening of the momentum (not applied on the first step, as in torch).
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        self.momentum = _real("momentum", momentum)
        self.dampening = _real("dampening", dampening)
        self.weight_decay = _real("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        self._state_names = ("momentum_buffer",) if self.momentum else ()
        super().__init__(params, lr)

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        first = self.steps == 0
        bufs = self.state.get("momentum_buffer")
        parallel = self._parallel()
        for i, (p, g) in enumerate(self.params):
            buf = bufs[i] if bufs else p  # unused without momentum
            s = lambda v: self._scalar(p, v)  # noqa: E731
            kernels.sgd_update(p.reshape(-1), g.reshape(-1), buf.reshape(-1), s(self.lr),
                               s(self.momentum), s(self.dampening), s(self.weight_decay),
                               self.nesterov, first, parallel)
        self.steps += 1


class Adam(Optimizer):
    """Adam, with the update of torch.optim.Adam (``decoupled_weight_decay=True``: AdamW's).

    Args:
        params: a module or a list of (parameter, gradient) pairs.
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient, or with ``decoupled_weight_decay``
            a shrink of the parameters by ``lr * weight_decay`` before each step.
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        self.betas = (_real("betas[0]", betas[0], 0.0, 1.0, True), _real("betas[1]", betas[1], 0.0, 1.0, True))
        self.eps = _real("eps", eps)
        self.weight_decay = _real("weight_decay", weight_decay)
        self.decoupled_weight_decay = bool(decoupled_weight_decay)
        super().__init__(params, lr)

    def step(self) -> None:
        """Update every parameter in place from its gradient."""
        self.steps += 1
        beta1, beta2 = self.betas
        bias1 = 1.0 - beta1**self.steps
        bias2_sqrt = (1.0 - beta2**self.steps) ** 0.5
        parallel = self._parallel()
        for p, g, m, v in zip(*zip(*self.params), self.state["exp_avg"], self.state["exp_avg_sq"]):
            s = lambda x: self._scalar(p, x)  # noqa: E731
            kernels.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                                s(self.lr), s(beta1), s(beta2), s(self.eps), s(self.weight_decay),
                                self.decoupled_weight_decay, s(bias1), s(bias2_sqrt), parallel)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)
