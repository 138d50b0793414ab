"""Networks built from `fastlinear.Linear` layers: a `Sequential` container, activations, losses,
optimizers, and saving/loading whole models.

    >>> import numpy as np
    >>> from fastlinear import nn
    >>> model = nn.mlp([64, 32, 10], "relu", seed=0)
    >>> opt = nn.Adam(model, lr=1e-3)
    >>> loss_fn = nn.CrossEntropyLoss()
    >>> x, labels = np.zeros((8, 64), np.float32), np.arange(8) % 10
    >>> model.zero_grad()
    >>> loss, dlogits = loss_fn(model(x), labels)
    >>> _ = model.backward(dlogits, need_input_grad=False)
    >>> opt.step()
"""

from .activations import ACTIVATIONS, ReLU, Sigmoid, Tanh
from .build import mlp
from .losses import CrossEntropyLoss, MSELoss
from .module import Module
from .optim import SGD, Adam, AdamW, Optimizer
from .sequential import Sequential
from .serialization import load, load_into, save

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "AdamW",
    "CrossEntropyLoss",
    "MSELoss",
    "Module",
    "Optimizer",
    "ReLU",
    "SGD",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "load",
    "load_into",
    "mlp",
    "save",
]
