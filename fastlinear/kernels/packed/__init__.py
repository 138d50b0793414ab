"""Packed, cache-blocked, register-blocked GEMM kernels for large linear layers.

Public functions (outputs first, no checking inside; see `_api`):

* ``packed_forward(y, x, w, b, act, w_in_place_rows, w_in_tile_rows)``: y = act(x @ w.T + b),
  w read in place up to that many batch rows, then packed by the tiles that use it up to the
  second limit (where its tiles keep the threads busy), then packed whole (the same bits every
  way)
* ``packed_grad_weight(dw, db, dy, x, scale, accumulate)``: dw (+)= scale * dy.T @ x, db fused
* ``packed_grad_input(dx, dy, w, w_in_tile_rows)``: dx = dy @ w, w packed by the tiles that use
  it up to that many batch rows where its tiles keep the threads busy (the same bits as packing
  it whole)
* ``compile_packed(dtype)``: compile ahead of first use

Files: ``_micro.py`` the register-blocked micro-kernels (8 x 32 float32, 8 x 16 float64; for
packed panels, and with run-time strides for w read in place), how they are compiled and the
per-dtype choice, ``_pack.py`` packing, ``_prefetch.py`` a cache-line prefetch intrinsic,
``_driver.py`` the blocked loops, ``_act.py`` activations, ``_workspace.py`` the
packed-A buffer and per-thread result tiles, ``_api.py`` the three products (it takes the shared
packed-B buffer and the db leaves from ``fastlinear.kernels._scratch``). After editing any of these
files, or ``fastlinear.kernels._sums``, delete Numba's cache files
(``find fastlinear -name '*.nb[ic]' -delete``): a cached driver does not notice changes to the
functions it calls in other files.
"""

from ._act import ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH
from ._api import compile_packed, packed_forward, packed_grad_input, packed_grad_weight

__all__ = [
    "ACT_NONE",
    "ACT_RELU",
    "ACT_SIGMOID",
    "ACT_TANH",
    "compile_packed",
    "packed_forward",
    "packed_grad_input",
    "packed_grad_weight",
]
