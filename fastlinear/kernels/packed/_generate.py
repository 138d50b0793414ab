"""Writes the register-blocked micro-kernels ``_micro_f32.py`` (8 x 32) and ``_micro_f64.py``
(8 x 16) of the packed GEMM.

A micro-kernel keeps its MR x NR block of C in MR * NR scalar locals, one use each, so that LLVM's
SLP vectorizer turns each row of NR accumulators into vector registers (16 zmm registers for both
shapes) and every step of the k-loop into 2 vector loads of B, MR broadcasts of A and 2 * MR fused
multiply-adds. Writing 256 locals by hand is error-prone, so this script spells them out; the
output is committed as ordinary Python source (Numba can cache it, which exec'd code cannot be),
and ``tests/test_packed.py`` checks that the committed files match what this script writes.

Run from the repository root after editing: ``python -m fastlinear.kernels.packed._generate``.
"""

from __future__ import annotations

from pathlib import Path

#: (file stem, function name, MR, NR, dtype name) for each micro-kernel.
SHAPES = (
    ("_micro_f32", "micro_8x32", 8, 32, "float32"),
    ("_micro_f64", "micro_8x16", 8, 16, "float64"),
)


def source(name: str, mr: int, nr: int, dtype: str) -> str:
    """Python source of an MR x NR micro-kernel called ``name``."""
    acc = [[f"c{i}_{j}" for j in range(nr)] for i in range(mr)]
    lines = [
        f'"""{mr} x {nr} {dtype} micro-kernel of the packed GEMM (written by ``_generate.py``; do not edit).',
        "",
        "A plain function on purpose: ``fastlinear.kernels.packed._compile`` makes the only Numba",
        "dispatcher for it, with LLVM's SLP vectorizer on and its loop vectorizer off (see there), so",
        'no build with Numba\'s default flags can exist."""',
        "",
        "from __future__ import annotations",
        "",
        "import numpy as np",
        "",
        f"MR = {mr}",
        f"NR = {nr}",
        "",
        "",
        f"def {name}(kc, a, ao, b, bo, t):",
        f'    """t[i * {nr} + j] = sum over p < kc of a[ao + p * {mr} + i] * b[bo + p * {nr} + j].',
        "",
        f"    ``a`` holds a packed {mr}-row panel of A (column p of the panel at ao + p * {mr}), ``b`` a",
        f"    packed {nr}-column panel of B (row p at bo + p * {nr}), ``t`` receives the {mr} x {nr} block",
        "    row-major. kc, ao and bo are np.uintp: unsigned indices need no negative-index fix-up,",
        '    which would otherwise block vectorization."""',
        "    zero = t.dtype.type(0)",
    ]
    for row in acc:
        lines.append("    " + " = ".join(row) + " = zero")
    lines += [
        f"    sa = np.uintp({mr})",
        f"    sb = np.uintp({nr})",
        "    pa = ao",
        "    pb = bo",
        "    for _ in range(kc):",
    ]
    for j in range(nr):
        lines.append(f"        b{j} = b[pb + np.uintp({j})]")
    for i in range(mr):
        lines.append(f"        a{i} = a[pa + np.uintp({i})]")
        for j in range(nr):
            lines.append(f"        {acc[i][j]} += a{i} * b{j}")
    lines += ["        pa += sa", "        pb += sb"]
    for i in range(mr):
        for j in range(nr):
            lines.append(f"    t[{i * nr + j}] = {acc[i][j]}")
    return "\n".join(lines) + "\n"


def main() -> None:
    here = Path(__file__).parent
    for stem, name, mr, nr, dtype in SHAPES:
        (here / f"{stem}.py").write_text(source(name, mr, nr, dtype))


if __name__ == "__main__":
    main()
