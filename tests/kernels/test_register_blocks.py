"""The register blocks of ``kernels/grad_input`` and ``kernels/grad_weight`` and the packed
micro-kernels keep their accumulators in registers.

Each block sums into an mr x nr array on its own stack (``_scratch.stack_row``) through loops with
constant trip counts; LLVM unrolls them and promotes the array to vector registers. Nothing in
Numba reports when that promotion fails: the kernel still gives the right bits, only slower (a row
copied out by a plain loop became a memcpy from the stack, and float64 grad_input at 4096x256x10
ran 1.35x slower). So this reads the machine code of every block: inside its reduction loop (the
innermost loop with FMAs) no vector register is stored to or loaded from the stack and the only
jump is the one back to the loop's start (no index is re-checked on every step), and the full
8-row blocks (the ones every shape runs, each a run of column blocks, ``_dx_run8_*`` and
``_dw_run8_*``) have no such move at all. (LLVM's SLP vectorizer leaves a few around the loop of
some edge blocks, such as the float64 8 x 8 weight-gradient block.) The blocks are sized for 32
vector registers of 512 bits (8 x 32 float32 accumulators are 16 of them), so the check runs where
fastlinear's kernels are compiled for those (`fastlinear._cpu.vectors_512`: an AVX-512 target and
the 512-bit preference on).
"""

from __future__ import annotations

import functools
import re

import pytest
from numba import njit, types

from fastlinear._config import BLOCKED_SERIAL, VECTORIZE
from fastlinear._cpu import vectors_512
from fastlinear.kernels import grad_input, grad_weight
from fastlinear.kernels._slp import llvm_flags
from fastlinear.kernels.packed import _micro as packed_micro

#: every register block, by name, and its module
BLOCKS = {n: module for module in (grad_input, grad_weight) for n in dir(module)
          if re.fullmatch(r"_d[wx]_(run8|block\d+h?|cols8)_f(32|64)", n)}
#: a vector register stored to, or loaded from, the stack (a spill, or an array left in memory)
STACK_MOVE = re.compile(r"vmov\w*\s+(%[yz]mm\d+, -?\d*\(%rsp|-?\d*\(%rsp[^)]*\), %[yz]mm)")


def _signature(name: str) -> tuple:
    a = (types.float32 if name.endswith("f32") else types.float64)[:, ::1]
    if name.startswith("_dx_run"):  # o0, c0, c1: a run of column blocks
        return (a, a, a, types.intp, types.intp, types.intp)
    if name.startswith("_dx"):
        return (a, a, a, types.intp, types.intp)
    if name.startswith(("_dw_run", "_dw_cols")):  # o0, then c0, c1 or p0, p1; then as a block
        return (a, a, a, types.intp, types.intp, types.intp, a.dtype, types.boolean, types.intp,
                types.intp)
    return (a, a, a, types.intp, types.intp, a.dtype, types.boolean, types.intp, types.intp)


def test_every_register_block_is_checked():
    # dx and dw: 8 (a run of 8-row blocks), 8h, 2 and 1 rows; dw's 8-row column edge; two dtypes
    assert len(BLOCKS) == 18
    for name in BLOCKS:
        assert getattr(BLOCKS[name], name).llvm_flags == VECTORIZE["register_block"], name


@pytest.mark.skipif(not vectors_512(), reason="the blocks are sized for 32 512-bit registers")
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_the_accumulators_of_a_register_block_live_in_registers(name):
    own = _block_asm(name)
    loop = _reduction_loop(own, innermost=True)
    assert "vfmadd" in loop, f"{name}: no fused multiply-add found in the loop"
    moves = STACK_MOVE.findall(loop)
    assert not moves, f"{name}: {len(moves)} vector moves to or from the stack in its loop"
    if re.fullmatch(r"_d[wx]_run8_f(32|64)", name):
        moves = STACK_MOVE.findall(own)
        assert not moves, f"{name}: {len(moves)} vector moves to or from the stack"


@pytest.mark.skipif(not vectors_512(), reason="the blocks are sized for 32 512-bit registers")
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_no_register_block_rechecks_an_index_in_its_reduction_loop(name):
    """The loop's one jump is the jump back. A block whose offsets LLVM cannot prove
    non-negative re-checks them on every step (Numba's negative-index wrap-around and slice
    clamping), 5-10 scalar instructions beside 16 FMAs: the float32 8 x 32 weight-gradient block
    ran 1.2x slower (see ``_scratch.nonnegative``)."""
    loop = _reduction_loop(_block_asm(name), innermost=True)
    jumps = re.findall(r"^\s+j\w+\s", loop, re.MULTILINE)
    assert len(jumps) == 1, f"{name}: {len(jumps)} jumps in its loop:\n{loop}"


@functools.lru_cache(maxsize=None)
def _block_asm(name: str) -> str:
    """The machine code of register block ``name``, before Numba's wrappers, from a copy that is
    never cached (Numba shows no machine code for code loaded from its cache)."""
    block = njit(**dict(BLOCKED_SERIAL, cache=False))(getattr(BLOCKS[name], name).py_func)
    sig = _signature(name)
    with llvm_flags(**VECTORIZE["register_block"]):
        block.compile(sig)
    return block.inspect_asm(sig).split("cpython", 1)[0]


def _reduction_loop(asm: str, innermost: bool = False) -> str:
    """The lines of the loop (from a label to a jump back to it) with the most FMAs, or, if
    ``innermost``, the shortest loop with any."""
    lines = asm.splitlines()
    labels = {line.split(":")[0]: i for i, line in enumerate(lines) if re.match(r"\.LBB\w+:", line)}
    loops = []
    for i, line in enumerate(lines):
        jump = re.match(r"\s+j\w+\s+(\.LBB\w+)", line)
        if jump and labels.get(jump.group(1), i) < i:
            loops.append("\n".join(lines[labels[jump.group(1)]:i + 1]))
    if innermost:
        return min((body for body in loops if "vfmadd" in body), key=len, default="")
    return max(loops, key=lambda body: body.count("vfmadd"), default="")


@pytest.mark.skipif(not vectors_512(), reason="the blocks are sized for 32 512-bit registers")
@pytest.mark.parametrize("in_place", [False, True], ids=["packed", "in_place"])
@pytest.mark.parametrize("dtype", sorted(packed_micro.MICRO, key=str))
def test_the_packed_micro_kernel_keeps_its_block_in_registers(dtype, in_place):
    # compiled once per process, never cached; in_place: the strides are run-time values
    kernel = packed_micro.compiled_micro(dtype, in_place)
    own = kernel.inspect_asm(kernel.signatures[0]).split("cpython", 1)[0]
    mr, nr = packed_micro.MICRO[dtype]
    loop = _reduction_loop(own)
    per_step = mr * nr * dtype.itemsize // 64  # one FMA per 512-bit vector of the block
    assert loop.count("vfmadd") and loop.count("vfmadd") % per_step == 0
    moves = STACK_MOVE.findall(own)
    assert not moves, f"{dtype} micro-kernel: {len(moves)} vector moves to or from the stack"
