"""Code generation for the host CPU, with full-width (512-bit) vectors where the CPU has them.

LLVM's tuning for recent x86 CPUs prefers 256-bit vectors even when AVX-512 is present, which
halves the peak of a register-blocked matrix kernel. Before Numba compiles anything, this module
points Numba at the host CPU and adds ``-prefer-256-bit`` to its feature string. Numba reads
these settings once, when it creates its code generator on the first compilation of the process,
so this module must be imported before any kernel is compiled (``fastlinear/__init__.py`` imports
it first). If something else in the process compiled with Numba earlier, the setting has no
effect and kernels are merely slower.

Users who set ``NUMBA_CPU_NAME`` or ``NUMBA_CPU_FEATURES`` themselves keep their choice, and
``FASTLINEAR_NATIVE_VECTORS=0`` turns this off. Numba's on-disk cache is keyed on the CPU name and
features, so code compiled with and without this setting never mixes.
"""

from __future__ import annotations

import os

from numba.core import config


def _configure() -> bool:
    if os.environ.get("FASTLINEAR_NATIVE_VECTORS", "1") == "0":
        return False
    if config.CPU_NAME or config.CPU_FEATURES:
        return False
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten()
    if "+avx512f" not in features.split(","):
        return False
    config.CPU_NAME = llvm.get_host_cpu_name()
    config.CPU_FEATURES = features + ",-prefer-256-bit"
    return True


#: Whether this module changed Numba's target settings (False when the user set their own, when
#: the CPU has no AVX-512, or when turned off by the environment).
vector_width_applied: bool = _configure()
