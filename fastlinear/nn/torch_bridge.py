"""The same network in PyTorch: a `Sequential` copied into ``torch.nn.Sequential`` with identical
weights, and torch optimizers with the same settings. Used by ``fastlinear train --backend torch``
and by the parity tests; torch is imported only when these functions are called."""

from __future__ import annotations

from ..layer import Linear
from .activations import ReLU, Sigmoid, Tanh
from .optim import SGD, Adam, Optimizer
from .sequential import Sequential


def to_torch(model: Sequential):
    """A ``torch.nn.Sequential`` of the same layers, with copies of the current parameters."""
    import torch

    dtype = {"float32": torch.float32, "float64": torch.float64}[str(model.dtype)]
    layers = []
    for m in model.modules:
        if isinstance(m, Linear):
            t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)
            with torch.no_grad():
                t.weight.copy_(torch.from_numpy(m.weight))
                if m.bias is not None:
                    t.bias.copy_(torch.from_numpy(m.bias))
            layers.append(t)
            if m.activation is not None:
                layers.append({"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                               "tanh": torch.nn.Tanh}[m.activation]())
        elif isinstance(m, ReLU):
            layers.append(torch.nn.ReLU())
        elif isinstance(m, Sigmoid):
            layers.append(torch.nn.Sigmoid())
        elif isinstance(m, Tanh):
            layers.append(torch.nn.Tanh())
        else:
            raise TypeError(f"no torch equivalent for {type(m).__name__}")
    return torch.nn.Sequential(*layers)


def torch_optimizer(opt: Optimizer, torch_model):
    """A torch.optim optimizer over ``torch_model``'s parameters with ``opt``'s settings."""
    import torch

    params = list(torch_model.parameters())
    if isinstance(opt, SGD):
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, dampening=opt.dampening,
                               weight_decay=opt.weight_decay, nesterov=opt.nesterov)
    if isinstance(opt, Adam):
        cls = torch.optim.AdamW if opt.decoupled_weight_decay else torch.optim.Adam
        return cls(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
    raise TypeError(f"no torch equivalent for {type(opt).__name__}")
