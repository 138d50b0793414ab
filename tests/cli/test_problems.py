"""The benchmark problem definitions (fastlinear/cli/problems.py): the asv suite's copy agrees with
them, the FLOP counts and references are right, and the tolerance tells a wrong result from a
reordered sum."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from fastlinear.cli import harness, problems

ASV_COMMON = pathlib.Path(__file__).parents[2] / "asv_benchmarks" / "benchmarks" / "common.py"


@pytest.fixture(scope="module")
def asv_common():
    spec = importlib.util.spec_from_file_location("fastlinear_asv_common", ASV_COMMON)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_asv_copy_has_the_same_shape_classes_ops_and_cut_offs(asv_common):
    assert asv_common.SHAPES == problems.SHAPE_CLASSES
    assert tuple(asv_common.KERNELS) == problems.KERNEL_OPS
    assert tuple(asv_common.OPS) == problems.OPS
    assert asv_common.NAIVE_MAX_FLOPS == problems.NAIVE_MAX_FLOPS
    assert asv_common.TOL_FACTOR == problems.TOL_FACTOR


def test_asv_copy_has_the_same_flops_lengths_skips_and_tolerance(asv_common):
    mag = np.array([0.0, 1.0, 123.5])
    for name, shape in problems.SHAPE_CLASSES.items():
        for op in problems.OPS:
            assert asv_common.op_flops(op, name) == problems.flops(op, *shape), (op, name)
            assert asv_common.reduction_lengths(op, name) == problems.reduction_lengths(op, *shape)
        try:
            asv_common.skip_if_too_slow("naive", name)
            skipped = False
        except NotImplementedError:
            skipped = True
        assert skipped == problems.naive_too_slow(*shape), name
        for dtype in ("float32", "float64"):
            for k in (1, 7, 4096):
                np.testing.assert_array_equal(asv_common.tolerance(dtype, k, mag),
                                              problems.tolerance(dtype, k, mag))


def test_naive_is_skipped_exactly_at_the_large_shape_classes():
    skipped = {name for name, s in problems.SHAPE_CLASSES.items() if problems.naive_too_slow(*s)}
    assert skipped == {"large", "wide"}


def test_flops_count_a_multiply_add_as_two():
    n, k, m = 3, 5, 7
    assert problems.flops("grad_input", n, k, m) == 2 * n * k * m
    assert problems.flops("forward", n, k, m) == 2 * n * k * m + n * m
    assert problems.flops("grad_bias", n, k, m) == n * m
    assert problems.flops("step", n, k, m) == sum(
        problems.flops(op, n, k, m) for op in problems.KERNEL_OPS)
    with pytest.raises(ValueError, match="unknown op 'backward'"):
        problems.flops("backward", n, k, m)


def test_reference_and_magnitude_of_every_op(rng):
    n, k, m = 4, 6, 5
    x, w, b, dy = (rng.standard_normal(s) for s in ((n, k), (m, k), (m,), (n, m)))
    [(y, ymag)] = problems.reference("forward", x, w, b, dy)
    np.testing.assert_allclose(y, x @ w.T + b)
    i, j = 2, 3
    assert ymag[i, j] == pytest.approx(sum(abs(x[i, t] * w[j, t]) for t in range(k)) + abs(b[j]))
    step = problems.reference("step", x, w, b, dy)
    singles = [problems.reference(op, x, w, b, dy)[0] for op in problems.KERNEL_OPS]
    for (got, got_mag), (want, want_mag) in zip(step, singles):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_mag, want_mag)
    assert problems.reduction_lengths("step", n, k, m) == (k, n, n, m)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tolerance_passes_a_reordered_sum_and_fails_a_dropped_term(rng, dtype):
    k = 300
    x = rng.standard_normal((1, k))
    w = rng.standard_normal((1, k))
    xd, wd = x.astype(dtype), w.astype(dtype)
    products = xd[0] * wd[0]
    reordered = np.array([[np.sum(products[::-1], dtype=dtype)]])
    # The float64 reference is of the rounded inputs, as every contender sees them.
    (ref, mag), = problems.reference("forward", xd, wd, np.zeros(1), np.zeros((1, 1)))
    assert problems.error_ratio(reordered, ref, mag, k, dtype) <= 1
    # Dropping a typical term: the median-sized one, not a lucky near-zero product.
    typical = np.argsort(np.abs(products))[k // 2]
    dropped = np.array([[np.sum(np.delete(products, typical), dtype=dtype)]])
    assert problems.error_ratio(dropped, ref, mag, k, dtype) > 1
    assert problems.error_ratio(np.array([[np.nan]]), ref, mag, k, dtype) == np.inf
    assert problems.error_ratio(np.zeros((1, 2)), ref, mag, k, dtype) == np.inf


def test_an_element_with_no_terms_must_be_exactly_zero():
    ref = mag = np.zeros((2, 2))
    assert problems.error_ratio(np.zeros((2, 2)), ref, mag, 4, np.float32) == 0.0
    assert problems.error_ratio(np.full((2, 2), 1e-30), ref, mag, 4, np.float32) == np.inf


def test_harness_uses_the_shared_definitions():
    prob = harness.Problem(3, 5, 7, np.dtype("float32"))
    for op in problems.OPS:
        assert prob.flops(op) == problems.flops(op, 3, 5, 7)
    ref = problems.reference("grad_weight", prob.x, prob.w, prob.b, prob.dy)[0][0]
    assert prob.check("grad_weight", (ref.astype(np.float32),)) <= 1
    assert prob.check("grad_weight", (ref.astype(np.float32) * 1.001,)) > 1
