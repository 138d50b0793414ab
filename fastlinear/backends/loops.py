"""The "loops" backend: four kernels, each choosing a compiled variant from the shape and dtype
(grad_bias also from the thread count, with the same bits).

    forward(y, x, w, b, act)                     y = act(x @ w.T + b)          b may be None
    grad_weight(dw, db, dy, x, scale, accumulate) dw (+)= scale * dy.T @ x      db (+)= scale * dy.sum(0)
    grad_bias(db, dy, scale, accumulate)          db (+)= scale * dy.sum(0)
    grad_input(dx, dy, w)                         dx = dy @ w

Arrays are C-contiguous with one float dtype, already checked (see ``fastlinear.functional``).

Variants, from small to large problems ("work" is n * in * out multiply-adds):

* serial kernels (``forward.forward_serial``, ``grad_*.grad_*_serial_*``,
  ``grad_bias.grad_bias_serial``, all in ``fastlinear.kernels``): no parallel region, which
  alone costs about 1.4 us to enter (3 us measured per call here);
* parallel direct kernels (``forward.forward_parallel``, ``grad_*.grad_*_parallel_*``): output
  blocks spread over threads, operands read in place;
* packed kernels (``fastlinear.kernels.packed``) for large problems, when that module is present.

The choice depends only on the shape, the dtype and, for the direct-or-packed step, the
crossover of this machine's tuning table (`packed_limits`; ``fastlinear tune`` measures it at one
thread count and it holds for all) or, without a measured crossover for the op and dtype, the
built-in one and this machine's L2 cache size (`REREAD_ROWS`), so a given input gives bitwise the
same result with any number of threads; the one exception, grad_bias running serially on one
thread, changes no bit (its serial and parallel kernels make the same additions). The direct and
packed kernels add in different orders, so a new table can change the last bits of shapes near a
crossover; with FASTLINEAR_TUNING=off the built-in crossovers (and the L2 rule) apply. The
thresholds below were measured on a 2-core AVX-512 AMD EPYC, znver5 (medians, microseconds per
call, 2 threads; serial / parallel):

* forward:    4x64x64 (2**14) 2.1 / 3.4 (1 thread: 2.1 / 2.2); 8x64x64 3.8 / 4.1 (1 thread:
  3.8 / 2.9); 16x64x64 7.2 / 4.7                                            -> serial up to 2**14.
* grad_input float32: 16x128x128 2.9 / 4.1; 32x128x128 (2**19) 5.0 / 5.1   -> serial below 2**19;
  float64: 8x128x128 2.9 / 4.4; 16x128x128 (2**18) 5.3 / 5.3; 32x128x128 10.3 / 7.8
                                                                             -> serial below 2**18.
* grad_weight: 16x64x64 (2**16) float32 2.3 / 4.3 (1 thread: 2.4 / 2.6), float64 3.7 / 5.4
  (1 thread: 3.6 / 3.4); 8x128x128 float32 5.5 / 7.2 (1 thread: 5.9 / 4.4), float64 10.5 / 9.1
                                                                             -> serial up to 2**16.
* grad_bias: serial up to 2**16 elements of dy (32x128: 0.8 / 3.2), measured with earlier
  kernels. Re-measured with the current kernels on a 2-core Intel Xeon KVM guest (two runs, 2
  threads): float32 128x512 (2**16) 7.9-10.6 / 12.8-17.3, 256x512 (2**17) 12.0-15.0 / 18.0-21.4,
  256x1024 (2**18) 32.4-36.6 / 33.3-33.9; float64 128x512 13.8-15.6 / 19.1-22.0, 256x512
  31.4-38.2 / 31.1-38.2, 256x1024 62.0-92.9 / 37.5-52.8 (`python
  asv_benchmarks/scripts/packed_sides.py --bias`): serial is still the faster at 2**16 and ties
  or wins at 2**17 there. The limit stays at 2**16: the earlier measurement goes no higher, and
  moving it on this machine's figures alone would tune it to this machine. On one thread grad_bias
  always runs the serial kernel (same additions, same bits).
"""

from __future__ import annotations

import os

from .._threads import adapt, thread_count
from ..kernels import forward as forward_kernels
from ..kernels import grad_bias as grad_bias_kernels
from ..kernels import grad_input as grad_input_kernels
from ..kernels import grad_weight as grad_weight_kernels
from ..kernels._scratch import EMPTY
from ..kernels._sums import leaf_buffer

try:  # packed large-shape kernels, when present in this build
    from ..kernels.packed import packed_forward, packed_grad_input, packed_grad_weight
    from ..kernels.packed._api import W_IN_PLACE_ROWS, W_IN_TILE_ROWS
except ImportError:  # pragma: no cover - depends on the build
    packed_forward = packed_grad_input = packed_grad_weight = None
    W_IN_PLACE_ROWS = W_IN_TILE_ROWS = 0

#: work (n * in * out) at or below which each kernel runs serially; see the module docstring.
FORWARD_SERIAL = 1 << 14
GRAD_INPUT_SERIAL = {4: (1 << 19) - 1, 8: (1 << 18) - 1}
GRAD_WEIGHT_SERIAL = {4: 1 << 16, 8: 1 << 16}
#: elements of dy at or below which grad_bias runs serially
GRAD_BIAS_SERIAL = 1 << 16
#: work above which the packed kernels take over (when present) until `fastlinear tune` has
#: measured this machine's own crossover (`packed_limits`): below it packing does not pay.
#: Measured (2 threads, microseconds, direct / packed, 2-core AMD EPYC): float32 forward
#: 64x512x512 (2**24) 131 / 154, 128x512x512 262 / 209; grad_weight 256x512x512 (2**26)
#: 326 / 477, grad_input 317 / 427; 4096x256x64 (2**26) forward 683 / 836, grad_weight 698 / 861,
#: grad_input 324 / 1148; float64 256x512x512 forward 1018 / 938, grad_weight 891 / 981,
#: grad_input 1147 / 877. The other way round on a 2-core Intel Xeon (rocketlake), 256x512x512,
#: milliseconds at 1 thread: float64 grad_input 11.9 / 4.6, float32 2.8 / 2.1.
FORWARD_PACKED = 1 << 24
PACKED = 1 << 26
#: the built-in crossovers by (op, itemsize): packed when work > the value
DEFAULT_PACKED_ABOVE = {(op, size): FORWARD_PACKED if op == "forward" else PACKED
                        for op in ("forward", "grad_weight", "grad_input") for size in (4, 8)}
#: ... and only when the sides that `PACKED_MIN_SIDES` names for the op are at least this wide.
PACKED_MIN_DIM = 64
#: (batch, in_features, out_features) below which an op stays on its direct kernel whatever the
#: work (for the gradients, a side below `PACKED_MIN_DIM` that the op allows still needs the work
#: above the op's built-in crossover, see `too_narrow`): a side along which the packed driver packs
#: little (a narrow output for the forward and the input gradient, a narrow in_features for the
#: input gradient) makes packing dominate, while the direct kernels are slow along other narrow
#: sides (the forward's dot products over a short in_features, the input gradient's over a small
#: batch, the weight gradient's blocks of a narrow dw). Direct time over packed time, float32 /
#: float64, 2 threads (1 thread in brackets), 2-core Intel Xeon KVM guest, `python
#: asv_benchmarks/scripts/packed_sides.py --threads 2` (and 1), two runs where a range is given:
#: forward: narrow in_features 8192x8x2048 2.64 / 1.66, 4096x8x1024 3.00 / 2.05 (3.11 / 2.22),
#: 4096x32x1024 2.66-3.15 / 2.00-2.12 (3.18 / 1.73), 4096x48x512 2.79-3.14 / 1.90-1.97 -> packed;
#: narrow out_features 8192x2048x8 0.24 / 0.40, 8192x1024x10 0.28-0.38 / 0.49-0.50, 8192x1024x32
#: 0.70-0.85 / 0.91-0.99 (0.61 / 0.69) -> direct; narrow batch, where the packed forward reads
#: w in place (``kernels.packed._api.W_IN_PLACE_ROWS``; the same script, one run each):
#: 8x4096x4096 0.94 / 1.28 (1.02 / 1.33), mixed (0.93 / 0.96 at 2 threads in an earlier round of
#: interleaved calls) -> direct; 16x4096x4096 1.54 / 2.15 (1.70 / 2.55),
#: 32x4096x4096 2.71 / 2.29 (3.42 / 2.93), 48x2048x2048 1.31 / 1.64 (1.80 / 2.38) -> packed from
#: a batch of 16 (with w packed, before it was read in place, 16x4096x4096 was 0.45-0.52 /
#: 0.80-0.87 and the forward needed a batch of 64). grad_weight: narrow batch
#: 16x4096x4096 0.64-0.66 / 0.66-0.71, 32x4096x4096 0.77-1.03 / 0.95 (0.82 / 1.08) -> direct;
#: narrow out_features 8192x2048x8 1.16 / 1.39, 8192x1024x10 1.15-1.19 / 1.35-1.43 (1.89 / 2.13),
#: 8192x1024x32 2.40-2.81 / 2.62-2.65 (3.50 / 3.83), narrow in_features 8192x8x2048 3.30 / 3.51,
#: 4096x32x1024 0.99-1.13 / 1.21-1.35 (0.96 / 1.23) -> packed; below 8 (not measured: the packed
#: micro-tile pads dw to 8 rows by 32 / 16 columns) -> direct. grad_input: narrow batch, where
#: the packed input gradient packs w in its tiles (``kernels.packed._api.W_IN_TILE_ROWS``; one run
#: each): 8x4096x4096 1.05 / 1.60 (1.32 / 1.75), 16x4096x4096 1.72 / 3.12 (2.43 / 2.99),
#: 32x4096x4096 4.11 / 4.99 (4.16 / 4.96) -> packed from 8 (with w packed whole, before:
#: 8x4096x4096 0.96-1.16 / 1.12-1.21 (0.98 / 1.19), 16x4096x4096 1.27-1.54 / 2.08-2.11, packed
#: from 16); below 8 (not in the script: the micro-tile pads dx to 8 rows) -> direct; narrow
#: in_features 4096x32x1024 0.41-0.43 / 0.60-0.73, narrow out_features 8192x1024x10 0.33-0.40 / 0.47-0.53 -> direct. (Before, every
#: side had to be at least `PACKED_MIN_DIM`, a rule measured with an older driver: the forward at
#: 4096x32x1024, the weight gradient at 8192x1024x32 and the input gradient at 32x4096x4096 ran
#: 1.7-3.8x slower than they now do.)
PACKED_MIN_SIDES = {
    "forward": (16, 1, PACKED_MIN_DIM),
    "grad_weight": (PACKED_MIN_DIM, 8, 8),
    "grad_input": (8, PACKED_MIN_DIM, PACKED_MIN_DIM),
}
#: the smallest batch at which the input gradient packs where w would be packed whole (a tuned
#: in-tile limit below the batch): 16, as before it packed w in its tiles
GRAD_INPUT_BATCH_WHOLE_W = 16


def _l2_bytes(base: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """Bytes of the level-2 cache that the first CPU uses (one core's own on the server CPUs
    fastlinear is measured on; shared by a cluster of cores on some others), from Linux's sysfs
    (``base``: its ``index*/level`` and ``index*/size`` files, sizes such as "2048K" or "2M");
    1 MiB, the smallest of those CPUs' L2, where no positive size can be read."""
    try:
        indices = sorted(os.listdir(base))
    except OSError:
        return 1 << 20
    for index in indices:
        try:
            with open(f"{base}/{index}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{base}/{index}/size") as f:
                size = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            value = int(size.rstrip("KM")) * scale
        except (OSError, ValueError):
            continue
        if value > 0:
            return value
    return 1 << 20


#: The direct gradient kernels read one operand whole once per 8 rows of their output: the input
#: gradient w once per 8 batch rows of dx, the weight gradient x once per 8 rows (out_features)
#: of dw. Where that operand is as large as the L2 cache (`_l2_bytes`, read from the machine) it
#: comes from the L3 cache or memory every time, and from REREAD_ROWS[op] rows of the output the
#: packed GEMM, which packs it in blocks that stay in cache, is faster below the work crossover
#: too. So, where the crossover in use for the op and dtype is the built-in one (a measured one,
#: from `fastlinear tune`, replaces this rule), the gradients pack there when every other side is
#: at least `PACKED_MIN_DIM`. Direct / packed time, 1 thread (2 threads), `python
#: asv_benchmarks/scripts/packed_sides.py --reread --threads 1` (and 2), 2-core Intel Xeon KVM
#: guest (``rocketlake``, 2 MiB L2 per core).
#: Input gradient, w of 2 MiB and more: float64 32x512x512 1.26 (1.15), 64x512x512 1.70 (1.44),
#: 256x512x512 1.97 (1.69), 128x1024x256 1.99 (1.77), 32x1024x1024 1.55 (1.52); float32
#: 64x1024x512 1.69 (1.61), 32x1024x1024 1.35 (1.42) -> packed; a batch of 16: float64 16x512x512
#: 0.83 (0.80), float32 16x1024x1024 1.01 (0.99) -> direct (float64 16x1024x1024, w 8 MiB, 1.09
#: (1.16): direct); w of 0.5-1.5 MiB: float32 0.44-0.94, float64 256x256x512 0.99 (0.70),
#: 256x512x256 1.13 (1.10), 256x384x512 and 128x768x256 1.62-1.67 (1.09-1.13) -> direct (the last
#: two would gain on one thread: the limit is the L2's size, not tuned lower on one machine).
#: Weight gradient (with db), x of 2 MiB and more: out_features 256: float64 256x1024x256 1.80
#: (1.68), 512x512x256 1.61 (1.53); 128 (a later run of the script): float32 1024x512x128 1.41
#: (1.18), 2048x256x128 1.94 (1.46), float64 512x512x128 1.57 (1.24), 1024x512x128 1.72 (1.37),
#: 2048x256x128 1.95 (1.58) -> packed (float32 512x512x128, x 1 MiB: 0.87 (0.76)); 64: float64
#: 4096x128x64 1.84 (1.32), 1024x512x64 1.39 (1.13), float32 4096x128x64 1.39 (1.24),
#: 1024x512x64 1.26 (0.89), but on the AMD EPYC (1 MiB L2) float32 4096x256x64, x 4 MiB, ran
#: 698 / 861 us at 2 threads (the figures above `FORWARD_PACKED`) -> direct (REREAD_ROWS 128);
#: 32: float32 2048x256x32 1.22 (0.66), 1024x1024x32 1.00 (0.72), float64 0.98-1.37 (0.78-0.87),
#: 16 and 10: 0.59-0.77 (0.39-0.64) -> direct; x of 1 MiB or less: float32 256x1024x256 1.23
#: (0.85), 512x512x256 1.10 (1.01), float64 256x512x512 1.27 (1.02), 256x512x256 1.00 (0.84) ->
#: direct. Those AMD figures also had the direct kernels ahead where the operand was exactly that
#: machine's L2 (float32 grad_input 256x512x512, w 1 MiB, 317 / 427 us; float64 grad_weight, x 1
#: MiB, 891 / 981; older kernels), which this rule packs there: `fastlinear tune` on such a
#: machine measures its own crossover and so turns the rule off.
REREAD_ROWS = {"grad_input": 32, "grad_weight": 128}
L2_BYTES = _l2_bytes()


def _rereads(op: str, itemsize: int, n: int, k: int, m: int) -> bool:
    """Whether the direct kernel of ``op`` (a gradient) would read an operand as large as the L2
    cache from beyond it for every 8 of at least REREAD_ROWS[op] rows of its output while every
    other side is at least `PACKED_MIN_DIM` (see `REREAD_ROWS`)."""
    # the operand's size first: it rules out the small shapes, where this runs before every call
    if op == "grad_input":
        return (m * k * itemsize >= L2_BYTES and n >= REREAD_ROWS[op]
                and min(k, m) >= PACKED_MIN_DIM)
    return n * k * itemsize >= L2_BYTES and m >= REREAD_ROWS[op] and min(n, k) >= PACKED_MIN_DIM


_FORWARD = (forward_kernels.forward_serial, forward_kernels.forward_parallel)
_GRAD_INPUT = {
    4: (grad_input_kernels.grad_input_serial_f32, grad_input_kernels.grad_input_parallel_f32),
    8: (grad_input_kernels.grad_input_serial_f64, grad_input_kernels.grad_input_parallel_f64)}
_GRAD_WEIGHT = {
    4: (grad_weight_kernels.grad_weight_serial_f32, grad_weight_kernels.grad_weight_parallel_f32),
    8: (grad_weight_kernels.grad_weight_serial_f64, grad_weight_kernels.grad_weight_parallel_f64)}

#: "no bias" and "no bias gradient" for the direct forward and grad_weight kernels, by itemsize: an
#: empty array instead of None, so that calls with and without a bias share one compiled signature
#: (None compiles a kernel and every function it calls a second time: the second
#: grad_weight_parallel_f32 alone took 1.4 s of a first training run's compiling, 2 cores; the
#: forward family 4-6 s per dtype of a cold warm-up). Never written: it has no elements.
ABSENT = {dt.itemsize: empty for dt, empty in EMPTY.items()}


def present(a):
    """``a``, or None where it is None or empty (`ABSENT`): for the kernels that take None."""
    return a if a is not None and a.shape[0] else None

#: every compiled variant behind each public kernel (for tests and compile-time benchmarks)
VARIANTS: dict[str, tuple] = {
    "forward": _FORWARD,
    "grad_weight": _GRAD_WEIGHT[4] + _GRAD_WEIGHT[8],
    "grad_bias": (grad_bias_kernels.grad_bias_serial, grad_bias_kernels.grad_bias_parallel),
    "grad_input": _GRAD_INPUT[4] + _GRAD_INPUT[8],
}


#: the crossovers in use, {(op, itemsize): work}; None until the first call that needs them reads
#: the tuning table (through the auto backend's loader, which reads it once per process)
_packed_above: dict | None = None
_packed_measured: set = set()  # the (op, itemsize) pairs whose crossover came from the table
_DTYPE_NAMES = {4: "float32", 8: "float64"}
#: the table fields of the batch limits below which w is not packed whole: the packed forward
#: reads w in place, the packed forward (above that) and input gradient pack w's panels in the
#: tiles that use them
_W_FIELDS = ("w_in_place_rows", "w_in_tile_rows")


#: those limits, {(field, itemsize): rows}, set with the crossovers (built in:
#: ``kernels.packed._api.W_IN_PLACE_ROWS`` and ``W_IN_TILE_ROWS``), and the keys whose value came
#: from the table
def _built_in_rows() -> dict:
    built_in = {"w_in_place_rows": W_IN_PLACE_ROWS, "w_in_tile_rows": W_IN_TILE_ROWS}
    return {(field, size): built_in[field] for field in _W_FIELDS for size in (4, 8)}


_w_rows: dict = _built_in_rows()
_w_rows_measured: set = set()


def use_packed_limits(measured: dict | None) -> dict:
    """Set the crossovers from a tuning table's ``packed`` section (``{"above": {op: {dtype:
    work}}, "w_in_place_rows": {dtype: rows}, "w_in_tile_rows": {dtype: rows}}``; see
    `fastlinear.tuning`), or the built-in ones for None, and return them as `packed_limits` does.
    Values the table leaves out keep the built-in ones."""
    global _packed_above, _packed_measured, _w_rows, _w_rows_measured
    above = dict(DEFAULT_PACKED_ABOVE)
    from_table = set()
    rows = _built_in_rows()
    rows_from_table = set()
    if measured:
        for (op, size) in above:
            value = (measured.get("above") or {}).get(op, {}).get(_DTYPE_NAMES[size])
            if value is not None:
                above[op, size] = int(value)
                from_table.add((op, size))
        for field, size in rows:
            value = (measured.get(field) or {}).get(_DTYPE_NAMES[size])
            if value is not None:
                rows[field, size] = int(value)
                rows_from_table.add((field, size))
    _packed_measured = from_table
    _w_rows, _w_rows_measured = rows, rows_from_table
    _packed_above = above
    return _describe_packed(above, from_table)


def forget_packed_limits() -> None:
    """Read the crossovers (and the in-place and in-tile limits) again on the next call that needs
    them (after a new table); until then those limits are the built-in ones."""
    global _packed_above, _w_rows, _w_rows_measured
    _packed_above = None
    _w_rows, _w_rows_measured = _built_in_rows(), set()


def _load_packed_above() -> dict:
    from . import auto

    auto.table_in_use()  # reads the table if this process has not yet; it calls use_packed_limits
    if _packed_above is None:  # pragma: no cover - only if the loader failed to set them
        use_packed_limits(None)
    return _packed_above


def packed_limits() -> dict:
    """The crossovers in use: ``{"source": "table" | "defaults", "above": {op: {dtype: work}},
    "measured": {op: {dtype: work}}, "w_in_place_rows": {dtype: rows}, "w_in_place_measured":
    {dtype: rows}, "w_in_tile_rows": ..., "w_in_tile_measured": ..., "l2_bytes": bytes}``, where
    the packed GEMM runs an op when n * in * out > work and no side is too narrow (`too_narrow`),
    the gradients also, without a measured crossover, when an operand has at least "l2_bytes"
    (`REREAD_ROWS`), its forward reads w in place, and its forward above that and input gradient
    pack w in the tiles, up to that many batch rows; the "measured" entries came from the tuning
    table (source "table" when there is any)."""
    above = _packed_above or _load_packed_above()
    return _describe_packed(above, _packed_measured)


def _describe_packed(above: dict, from_table: set) -> dict:
    out: dict = {}
    measured: dict = {}
    for (op, size), work in above.items():
        out.setdefault(op, {})[_DTYPE_NAMES[size]] = work
        if (op, size) in from_table:
            measured.setdefault(op, {})[_DTYPE_NAMES[size]] = work
    described = {"source": "table" if measured or _w_rows_measured else "defaults",
                 "above": out, "measured": measured, "l2_bytes": L2_BYTES}
    for field in _W_FIELDS:
        described[field] = {_DTYPE_NAMES[size]: _w_rows[field, size] for size in (4, 8)}
        described[field.replace("_rows", "_measured")] = {
            _DTYPE_NAMES[size]: _w_rows[f, size] for f, size in sorted(_w_rows_measured)
            if f == field}
    return described


def _w_limit(field: str, itemsize: int) -> int:
    """The limit ``field`` (one of `_W_FIELDS`) in use for ``itemsize``-byte floats, reading the
    tuning table first if this process has not yet."""
    if _packed_above is None:
        _load_packed_above()
    return _w_rows[field, itemsize]


def w_in_place_rows(itemsize: int) -> int:
    """Batch rows up to which the packed forward of ``itemsize``-byte floats reads w in place
    (from the tuning table when it has them, else ``kernels.packed._api.W_IN_PLACE_ROWS``)."""
    return _w_limit("w_in_place_rows", itemsize)


def w_in_tile_rows(itemsize: int) -> int:
    """Batch rows up to which the packed forward (above `w_in_place_rows`) and input gradient of
    ``itemsize``-byte floats pack w's panels in the tiles that use them (from the tuning table
    when it has them, else ``kernels.packed._api.W_IN_TILE_ROWS``)."""
    return _w_limit("w_in_tile_rows", itemsize)


def direct_and_packed(op: str) -> tuple:
    """The direct kernel that dispatch runs above the serial threshold (the parallel one, or, for
    grad_weight on one thread, the serial one: `_direct_grad_weight`) and the packed kernel of
    ``op`` ("forward", "grad_weight" or "grad_input"), each with this module's signature for that
    op, for `fastlinear.tuning` to time against each other. None for the packed one when this
    build has no packed kernels."""
    if op == "forward":
        def direct(y, x, w, b, act):
            forward_kernels.forward_parallel(y, x, w, ABSENT[x.itemsize] if b is None else b, act)

        packed = None if packed_forward is None else (
            lambda y, x, w, b, act: packed_forward(y, x, w, present(b), act,
                                                   w_in_place_rows(x.itemsize),
                                                   w_in_tile_rows(x.itemsize)))
    elif op == "grad_weight":
        def direct(dw, db, dy, x, scale, accumulate):
            size = dw.dtype.itemsize
            _direct_grad_weight(size)(dw, ABSENT[size] if db is None else db, dy, x, scale,
                                      accumulate)

        packed = None if packed_grad_weight is None else (
            lambda dw, db, dy, x, scale, accumulate: packed_grad_weight(dw, present(db), dy, x,
                                                                        scale, accumulate))
    elif op == "grad_input":
        def direct(dx, dy, w):
            _GRAD_INPUT[dx.dtype.itemsize][1](dx, dy, w)

        packed = None if packed_grad_input is None else (
            lambda dx, dy, w: packed_grad_input(dx, dy, w, w_in_tile_rows(dx.itemsize)))
    else:
        raise ValueError(f"unknown op {op!r}; valid: forward, grad_weight, grad_input")
    return direct, packed


def serial_kernel(op: str, itemsize: int, n: int, k: int, m: int):
    """The compiled serial kernel that `forward`, `grad_weight` or `grad_input` would run for a
    (batch n, in_features k, out_features m) problem of ``itemsize``-byte floats, with the same
    signature, or None where that op runs in parallel. For callers that remember a decision per
    shape (the auto backend) and so can skip this module's Python layer, about a third of a call
    at the smallest shapes."""
    work = n * k * m
    if op == "forward" and work <= FORWARD_SERIAL:
        return forward_kernels.forward_serial
    if op == "grad_weight" and work <= GRAD_WEIGHT_SERIAL[itemsize]:
        return _GRAD_WEIGHT[itemsize][0]
    if op == "grad_input" and work <= GRAD_INPUT_SERIAL[itemsize]:
        return _GRAD_INPUT[itemsize][0]
    return None


def too_narrow(op: str, itemsize: int, n: int, k: int, m: int) -> bool:
    """Whether a (batch n, in_features k, out_features m) problem of ``itemsize``-byte floats
    stays on ``op``'s direct kernel because of a narrow side: one narrower than
    `PACKED_MIN_SIDES` allows for the op, or, for the gradients, one below `PACKED_MIN_DIM` that
    it allows while the work is at most the op's built-in crossover (`DEFAULT_PACKED_ABOVE`); a
    forward with a batch below `PACKED_MIN_DIM` packs only where the packed forward reads w in
    place (`w_in_place_rows`) and above its built-in crossover; an input gradient with a batch
    below `GRAD_INPUT_BATCH_WHOLE_W` only where it packs w in its tiles (`w_in_tile_rows`).

    A tuned crossover is measured on shapes with every side at least `PACKED_MIN_DIM`. For the
    gradients it does not carry over to narrow ones: on the Intel Xeon with its table
    (grad_weight above 2**23), the weight gradient at 4096x256x10 took 0.60-0.66 / 0.71-0.89 of
    the packed GEMM's time (float32 / float64, 2 threads, two runs) and at 1024x1024x16
    0.82-0.84 / 0.91-1.24, while above 2**26 the packed one won (see `PACKED_MIN_SIDES`). The
    forward's narrow in_features favours the packed GEMM at any work measured: direct / packed
    1.4-2.6 at 2**20 (256x16x256, 1024x16x64, 2 threads), 1.5-2.9 at 256x32x512 (2**22), 1.5-3.7
    at 1024x32x512 and 4096x16x256 (2**24; 1 and 2 threads, both dtypes, four runs), so there the
    crossover in use holds."""
    lo = PACKED_MIN_SIDES[op]
    if n < lo[0] or k < lo[1] or m < lo[2]:
        return True
    if op == "forward" and n < PACKED_MIN_DIM and (
            n > w_in_place_rows(itemsize) or n * k * m <= DEFAULT_PACKED_ABOVE[op, itemsize]):
        # a batch below 64 packs only where the packed forward reads w in place, and, as for
        # the gradients' narrow sides, only above the built-in crossover: a tuned one is
        # measured at batches of 64 and more (float32 16x512x512, 2**22: direct / packed
        # 0.60-0.76, one thread)
        return True
    if op == "grad_input" and n < GRAD_INPUT_BATCH_WHOLE_W and n > w_in_tile_rows(itemsize):
        # a batch of 8-15 packs only up to the in-tile limit: with w packed whole it was no
        # faster than the direct kernel (see `PACKED_MIN_SIDES`). Not the thread count, which
        # only chooses between in the tiles and whole (the same bits): direct or packed must
        # not depend on it
        return True
    return (op != "forward" and min(n, k, m) < PACKED_MIN_DIM
            and n * k * m <= DEFAULT_PACKED_ABOVE[op, itemsize])


def runs_packed(op: str, itemsize: int, n: int, k: int, m: int) -> bool:
    """Whether `forward`, `grad_weight` or `grad_input` (``op``) runs the packed GEMM for a
    (batch n, in_features k, out_features m) problem of ``itemsize``-byte floats: the op has a
    packed kernel in this build, the work n * k * m is above the op's serial limit, and either it
    is above the op's crossover in use (`packed_limits`) with no side too narrow (`too_narrow`),
    or, for a gradient without a measured crossover, the direct kernel would read an operand as
    large as the L2 cache again and again (`REREAD_ROWS`). The same rule as the three functions'
    own dispatch."""
    packed = {"forward": packed_forward, "grad_weight": packed_grad_weight,
              "grad_input": packed_grad_input}[op]
    if packed is None or serial_kernel(op, itemsize, n, k, m):
        return False
    return _packs(op, itemsize, n, k, m)


def _packs(op: str, itemsize: int, n: int, k: int, m: int) -> bool:
    """The part of `runs_packed` that the dispatchers below ask once they know the op is not
    serial and has a packed kernel."""
    above = _packed_above or _load_packed_above()
    if (op != "forward" and _rereads(op, itemsize, n, k, m)
            and (op, itemsize) not in _packed_measured):
        return True
    return n * k * m > above[op, itemsize] and not too_narrow(op, itemsize, n, k, m)


def forward(y, x, w, b, act) -> None:
    """y = act(x @ w.T + b); ``b`` may be None or empty (see `ABSENT`), ``act`` is an activation
    code (0 none, 1 relu, 2 sigmoid, 3 tanh)."""
    n, k = x.shape
    m = w.shape[0]
    work = n * k * m
    if work <= FORWARD_SERIAL:
        forward_kernels.forward_serial(y, x, w, ABSENT[x.itemsize] if b is None else b, act)
        return
    adapt()
    if packed_forward is None or not _packs("forward", x.itemsize, n, k, m):
        forward_kernels.forward_parallel(y, x, w, ABSENT[x.itemsize] if b is None else b, act)
    else:
        size = x.itemsize
        packed_forward(y, x, w, present(b), act, _w_rows["w_in_place_rows", size],
                       _w_rows["w_in_tile_rows", size])


def _direct_grad_weight(itemsize: int):
    """The direct weight-gradient kernel for this thread's Numba count: the serial one on one
    thread, where the parallel one would only add its region's cost. The two sum the same blocks
    in the same order (same bits, tested), so this choice, like every other here, never changes a
    result. ``asv_benchmarks/scripts/serial_parallel.py`` (serial / parallel on one thread, medians
    of 15 interleaved rounds, 2-core Intel Xeon KVM guest): float32 9.3 / 10.5 us at 32x128x128,
    20.3 / 21.1 us at 8x784x128, 559 / 666 us at 4096x256x10, 70.2 / 78.3 us at 64x256x256;
    float64 17.5 / 18.7, 34.6 / 35.3, 1154 / 1354, 145 / 149 us. The forward's parallel kernel
    splits its work differently (4 x 4 tiles against rows) and was faster on one thread at three
    of the four shapes (float32 19.3 / 22.1 us serial at 32x128x128); the input gradient's, though
    built like the weight gradient's, was faster in parallel at 4096x256x10 (306 / 354 us float32,
    561 / 655 float64; cause not found) and slower at the three others, so both keep theirs."""
    return _GRAD_WEIGHT[itemsize][thread_count() > 1]


def grad_weight(dw, db, dy, x, scale, accumulate) -> None:
    """dw (+)= scale * dy.T @ x and, unless ``db`` is None or empty (see `ABSENT`), db (+)=
    scale * dy.sum(0) in the same pass; ``+=`` when ``accumulate``."""
    n, k = x.shape
    m = dw.shape[0]
    work = n * k * m
    size = dw.dtype.itemsize
    if work <= GRAD_WEIGHT_SERIAL[size]:
        _GRAD_WEIGHT[size][0](dw, ABSENT[size] if db is None else db, dy, x, scale, accumulate)
        return
    adapt()
    if packed_grad_weight is None or not _packs("grad_weight", size, n, k, m):
        _direct_grad_weight(size)(dw, ABSENT[size] if db is None else db, dy, x, scale, accumulate)
    else:
        packed_grad_weight(dw, present(db), dy, x, scale, accumulate)


def grad_bias(db, dy, scale, accumulate) -> None:
    """db (+)= scale * dy.sum(0); ``+=`` when ``accumulate``."""
    leaves = leaf_buffer(dy.dtype, *dy.shape)
    if dy.size > GRAD_BIAS_SERIAL:
        adapt()
        threads = thread_count()
        if threads > 1:
            grad_bias_kernels.grad_bias_parallel(db, dy, scale, accumulate, leaves, threads)
            return
    # the serial kernel makes the same additions (same bits) in one pass over dy, without the
    # parallel kernel's second pass over the leaves: 2-3.5x faster on one thread
    grad_bias_kernels.grad_bias_serial(db, dy, scale, accumulate, leaves)


def grad_input(dx, dy, w) -> None:
    """dx = dy @ w."""
    n, m = dy.shape
    k = w.shape[1]
    work = n * m * k
    size = dx.dtype.itemsize
    if work <= GRAD_INPUT_SERIAL[size]:
        _GRAD_INPUT[size][0](dx, dy, w)
        return
    adapt()
    if packed_grad_input is None or not _packs("grad_input", size, n, k, m):
        _GRAD_INPUT[size][1](dx, dy, w)
    else:
        packed_grad_input(dx, dy, w, _w_rows["w_in_tile_rows", size])
