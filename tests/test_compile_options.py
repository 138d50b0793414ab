"""Every compiled function of fastlinear takes its Numba options from `fastlinear._config`, and
LLVM's vectorizer settings change only through `kernels._slp.llvm_flags` with the settings of
``_config.VECTORIZE``: checked on the live dispatchers of every module, and on the source text
(no option spelled out next to an ``@njit``, no vectorizer switch set anywhere else)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest
from numba.core.caching import NullCache
from numba.core.registry import CPUDispatcher

import fastlinear
from fastlinear import _config
from fastlinear.kernels import _slp
from fastlinear.kernels.packed import _micro as _packed_micro

PACKAGE = Path(fastlinear.__file__).parent
OPTIONAL = ("fastlinear.torch",)  # needs PyTorch


def _modules():
    for info in pkgutil.walk_packages([str(PACKAGE)], "fastlinear."):
        if info.name.startswith(OPTIONAL) or info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def _dispatchers():
    """(qualified name, dispatcher) for every Numba function defined in a fastlinear module."""
    seen = {}
    for mod in _modules():
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                seen[f"{mod.__name__}.{name}"] = obj
    return seen


def _as_given(options: dict) -> tuple:
    """What Numba keeps of ``njit(**options)``: its target options and whether it caches."""
    kept = {k: v for k, v in options.items() if k != "cache"}
    return (sorted((k, sorted(v) if isinstance(v, set) else v) for k, v in kept.items()),
            bool(options.get("cache", False)))


def _of(dispatcher) -> tuple:
    kept = {k: v for k, v in dispatcher.targetoptions.items()
            if k not in ("nopython", "boundscheck")}
    return (sorted((k, sorted(v) if isinstance(v, set) else v) for k, v in kept.items()),
            not isinstance(dispatcher._cache, NullCache))


CONFIGS = {name: value for name, value in vars(_config).items()
           if name.isupper() and isinstance(value, dict) and name != "VECTORIZE"}
DISPATCHERS = _dispatchers()


def test_the_walk_finds_the_kernels():
    assert len(DISPATCHERS) > 80  # 94 when this was written
    for name in ("fastlinear.kernels.forward.forward_serial", "fastlinear.backends.naive.forward",
                 "fastlinear.kernels.grad_weight.grad_weight_parallel_f32",
                 "fastlinear.kernels.grad_input.grad_input_serial_f64",
                 "fastlinear.kernels.grad_bias.grad_bias_parallel",
                 "fastlinear.kernels.packed._driver.gemm", "fastlinear.activations.apply"):
        assert name in DISPATCHERS


#: The `_config` entries each module's compiled functions may use: a kernel that moved to another
#: family's options (an ordered sum compiled with reassociation, say) fails even though its new
#: options are some entry's. A new module with compiled functions must be added here.
ALLOWED = {
    "fastlinear._blas_callback": {"BLAS_POOL", "BLAS_POOL_PARALLEL"},
    "fastlinear.activations": {"INLINE"},
    "fastlinear.backends.naive": {"NAIVE"},
    "fastlinear.kernels._sums": {"ORDERED"},
    "fastlinear.kernels.activation": {"SERIAL", "PARALLEL", "ORDERED"},
    "fastlinear.kernels.forward": {"SERIAL", "PARALLEL", "INLINE"},
    "fastlinear.kernels.grad_bias": {"SERIAL", "PARALLEL", "ORDERED"},
    "fastlinear.kernels.grad_input": {"BLOCKED_SERIAL", "BLOCKED_PARALLEL"},
    "fastlinear.kernels.grad_weight": {"BLOCKED_SERIAL", "BLOCKED_PARALLEL"},
    "fastlinear.kernels.packed._act": {"SERIAL"},
    "fastlinear.kernels.packed._driver": {"SERIAL", "PARALLEL", "PLAIN"},
    "fastlinear.kernels.packed._pack": {"SERIAL", "ORDERED"},
    "fastlinear.nn._optim_kernels": {"OPTIM_SERIAL", "OPTIM_PARALLEL", "INLINE"},
}


@pytest.mark.parametrize("name", sorted(DISPATCHERS))
def test_each_compiled_function_uses_its_modules_config_entries(name):
    module = name.rsplit(".", 1)[0]
    assert module in ALLOWED, f"{module} has compiled functions; list its _config entries in ALLOWED"
    got = _of(DISPATCHERS[name])
    matches = [c for c in ALLOWED[module] if _as_given(CONFIGS[c]) == got]
    assert matches, (f"{name} compiles with {got}, which none of {sorted(ALLOWED[module])} in "
                     "fastlinear._config gives")


def test_the_ordered_sums_really_leave_out_reassociation():
    for name, d in DISPATCHERS.items():
        if name.startswith("fastlinear.kernels._sums."):
            assert "reassoc" not in d.targetoptions["fastmath"], name


def test_the_register_blocked_kernels_compile_with_the_blocked_flags():
    blocked = {n for n, d in DISPATCHERS.items()
               if n.startswith(("fastlinear.kernels.grad_input.", "fastlinear.kernels.grad_weight."))}
    assert blocked
    for name in blocked:
        family = ("register_block" if re.search(r"\._d[wx]_(run8|block\d+h?|cols8)_f(32|64)$", name)
                  else "blocked")
        assert DISPATCHERS[name].llvm_flags == _config.VECTORIZE[family], name
        assert _of(DISPATCHERS[name]) in (_as_given(_config.BLOCKED_SERIAL),
                                          _as_given(_config.BLOCKED_PARALLEL)), name
    others = [n for n in DISPATCHERS if n not in blocked and hasattr(DISPATCHERS[n], "llvm_flags")]
    assert others == []


@pytest.mark.parametrize("in_place", [False, True], ids=["packed", "in_place"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_packed_micro_kernels_compile_with_their_flags(dtype, in_place):
    kernel = _packed_micro.compiled_micro(dtype, in_place)
    assert kernel.llvm_flags == _config.VECTORIZE["packed_micro"]
    assert _of(kernel) == _as_given(_config.PACKED_MICRO)


def test_llvm_flags_sets_and_restores_numbas_settings():
    from numba.core import config

    before = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
    with _slp.llvm_flags(SLP_VECTORIZE=1, LOOP_VECTORIZE=0):
        assert (config.SLP_VECTORIZE, config.LOOP_VECTORIZE) == (1, 0)
    assert (config.SLP_VECTORIZE, config.LOOP_VECTORIZE) == before
    with pytest.raises(RuntimeError), _slp.llvm_flags(SLP_VECTORIZE=1):
        raise RuntimeError("inside")
    assert (config.SLP_VECTORIZE, config.LOOP_VECTORIZE) == before
    with pytest.raises(AttributeError), _slp.llvm_flags(NOT_A_SETTING=1):
        pass


NJIT_WITH_LITERAL = re.compile(r"\b(njit|jit|slp_njit)\((?!\*\*)\s*[^)\s]")
OPTION_LITERAL = re.compile(
    r"^\s*@\w+\(.*\b(cache|fastmath|parallel|nogil|inline|error_model)=(?!_config\.)", re.M)
SETS_A_SWITCH = re.compile(r"config\.(SLP|LOOP)_VECTORIZE\s*=|setattr\(config")


@pytest.mark.parametrize("path", sorted(p.relative_to(PACKAGE).as_posix()
                                        for p in PACKAGE.rglob("*.py")))
def test_no_module_spells_out_its_own_options(path):
    text = (PACKAGE / path).read_text()
    if path != "_config.py":
        assert not NJIT_WITH_LITERAL.search(text), f"{path}: options belong in _config.py"
        assert not OPTION_LITERAL.search(text), f"{path}: options belong in _config.py"
    if path != "kernels/_slp.py":
        assert not SETS_A_SWITCH.search(text), f"{path}: vectorizer flags go through llvm_flags"


def test_the_generated_modules_are_what_the_generator_writes():
    from fastlinear.kernels import _generate

    for path, text in _generate.generate().items():
        assert path.read_text() == text, path.name
