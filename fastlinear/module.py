"""`Module`: what every network building block shares (modes, parameters, gradients, state).

`fastlinear.Linear`, the activation modules and `fastlinear.nn.Sequential` are all Modules."""

from __future__ import annotations

import numpy as np

from . import _validate as check


class Module:
    """Base of the network blocks: a ``forward``/``backward`` pair plus bookkeeping.

    Subclasses implement `forward` and `backward` and, if they hold parameters,
    `named_parameters`. ``training`` is True at first; in evaluation mode (`eval`) a module keeps
    no reference to its input or output, so `backward` is unavailable.
    """

    training: bool = True

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy: np.ndarray, *, need_input_grad: bool = True) -> np.ndarray | None:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def named_parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, parameter, gradient) triples; none for a module without parameters."""
        return []

    def parameters(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(parameter, gradient) pairs, in a fixed order; what the optimizers take."""
        return [(p, g) for _, p, g in self.named_parameters()]

    def zero_grad(self) -> None:
        """Set every gradient to zero, in place."""
        for _, _, g in self.named_parameters():
            g.fill(0)

    def train(self, mode: bool = True) -> "Module":
        """Set training mode (forward keeps what backward needs) and return the module."""
        self.training = bool(mode)
        if not self.training:
            self._drop_cache()
        return self

    def eval(self) -> "Module":
        """Set evaluation mode (forward keeps nothing) and return the module."""
        return self.train(False)

    def _drop_cache(self) -> None:
        """Forget any input/output kept for backward."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters by name."""
        return {name: p.copy() for name, p, _ in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy parameters in from a dict made by `state_dict`.

        Names, shapes and dtypes must match exactly (no casting); everything is checked before
        anything is written, so a failed load changes nothing."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        params = {name: p for name, p, _ in self.named_parameters()}
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise KeyError(f"state_dict keys do not match: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            value = check.require_array(name, state[name])
            if value.shape != p.shape:
                raise ValueError(f"{name} has shape {value.shape}, expected {p.shape}")
            check.same_dtype(name, value, "the parameter", p)
        for name, p in params.items():
            np.copyto(p, state[name])
