"""Every bad input: the error type, a message fragment, and that nothing was changed (the layer's
weight, bias, gradients and cached input; a user's out= array; the thread count)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastlinear as fl
from fastlinear import nn
from helpers import is_cached


# --- a layer with a history, and a check that an error left it as it was ------------------------

@pytest.fixture
def layer():
    """A float32 Linear(3, 2) that has run forward and backward: nonzero grads and a cached x."""
    lay = fl.Linear(3, 2, init="torch", seed=0)
    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    lay(x)
    lay.backward(np.ones((4, 2), np.float32))
    assert lay.grad_weight.any() and is_cached(lay, x)
    return lay


def snapshot(lay):
    return dict(
        weight=lay.weight.copy(), bias=None if lay.bias is None else lay.bias.copy(),
        grad_weight=lay.grad_weight.copy(), grad_bias=None if lay.grad_bias is None else lay.grad_bias.copy(),
        x=lay._x, x_values=None if lay._x is None else lay._x.copy(),
        backend=lay.backend, init=lay.init, reduction=lay.reduction, training=lay.training,
    )


def assert_unchanged(lay, snap):
    for name in ("weight", "bias", "grad_weight", "grad_bias"):
        np.testing.assert_array_equal(getattr(lay, name), snap[name], err_msg=name)
    assert lay._x is snap["x"], "the cached input was replaced"
    if snap["x"] is not None:
        np.testing.assert_array_equal(lay._x, snap["x_values"])
    assert (lay.backend, lay.init, lay.reduction, lay.training) == (
        snap["backend"], snap["init"], snap["reduction"], snap["training"])


def expect_error(lay, exc, match, fn, *args, **kwargs):
    snap = snapshot(lay)
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)
    assert_unchanged(lay, snap)


# --- forward ------------------------------------------------------------------------------------

def test_forward_0d_input(layer):
    expect_error(layer, ValueError, "at least 1 dimension", layer.forward, np.zeros((), np.float32))


def test_forward_last_dim_mismatch(layer):
    snap = snapshot(layer)
    with pytest.raises(ValueError) as info:
        layer(np.zeros((4, 5), np.float32))
    msg = str(info.value)
    assert "(4, 5)" in msg and "(2, 3)" in msg and "4x5" in msg and "3x2" in msg
    assert_unchanged(layer, snap)


def test_forward_last_dim_mismatch_leading_dims(layer):
    expect_error(layer, ValueError, r"6x4 and 3x2", layer.forward, np.zeros((2, 3, 4), np.float32))
    expect_error(layer, ValueError, "in_features 3", layer.forward, np.zeros(2, np.float32))


def test_forward_dtype_mismatch_names_both(layer):
    expect_error(layer, TypeError, "float64.*float32", layer.forward, np.zeros((4, 3), np.float64))
    lay64 = fl.Linear(3, 2, dtype=np.float64, seed=0)
    expect_error(lay64, TypeError, "float32.*float64", lay64.forward, np.zeros((4, 3), np.float32))


BAD_DTYPES = [np.int32, np.int64, np.bool_, np.complex64, np.complex128, object, np.float16, np.uint8]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
def test_forward_unsupported_dtype(layer, dtype):
    expect_error(layer, TypeError, "dtype", layer.forward, np.zeros((4, 3), dtype=dtype))


NON_ARRAYS = [[[0.0, 1.0, 2.0]], ((0.0, 1.0, 2.0),), 1.5, None, "abc", memoryview(b"abc")]


@pytest.mark.parametrize("x", NON_ARRAYS, ids=["list", "tuple", "float", "None", "str", "memoryview"])
def test_forward_non_array(layer, x):
    expect_error(layer, TypeError, "numpy.ndarray", layer.forward, x)


def test_forward_matrix_like_torch_tensor_rejected(layer):
    torch = pytest.importorskip("torch")
    expect_error(layer, TypeError, "numpy.ndarray", layer.forward, torch.zeros(4, 3))


# --- backward -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 3), (2, 2), (4,), (1, 4, 2), (4, 2, 1)], ids=str)
def test_backward_dy_wrong_shape(layer, shape):
    expect_error(layer, ValueError, r"dy has shape.*\(4, 2\)", layer.backward, np.ones(shape, np.float32))


def test_backward_dy_wrong_dtype(layer):
    expect_error(layer, TypeError, "float64.*float32", layer.backward, np.ones((4, 2), np.float64))
    expect_error(layer, TypeError, "dtype", layer.backward, np.ones((4, 2), np.int32))


def test_backward_dy_not_array(layer):
    expect_error(layer, TypeError, "numpy.ndarray", layer.backward, [[1.0, 1.0]] * 4)


def test_backward_after_eval_raises(layer):
    layer.eval()
    expect_error(layer, RuntimeError, "forward", layer.backward, np.ones((4, 2), np.float32))


# --- constructor --------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [-1, np.int64(-5)], ids=["-1", "np-5"])
@pytest.mark.parametrize("arg", ["in_features", "out_features"])
def test_features_too_small(arg, value):
    kwargs = dict(in_features=3, out_features=2)
    kwargs[arg] = value
    with pytest.raises(ValueError, match=f"{arg} must be at least 0"):
        fl.Linear(**kwargs)


@pytest.mark.parametrize("value", [3.0, "3", None, True, False, np.float64(3)], ids=["3.0", "str", "None", "True", "False", "np3.0"])
@pytest.mark.parametrize("arg", ["in_features", "out_features"])
def test_features_not_integer(arg, value):
    kwargs = dict(in_features=3, out_features=2)
    kwargs[arg] = value
    with pytest.raises(TypeError, match=f"{arg} must be an integer"):
        fl.Linear(**kwargs)


def test_numpy_integer_features_accepted():
    layer = fl.Linear(np.int64(3), np.int32(2))
    assert layer.weight.shape == (2, 3) and type(layer.in_features) is int


@pytest.mark.parametrize("bias", [1, 0, "yes", None], ids=str)
def test_bias_flag_must_be_bool(bias):
    with pytest.raises(TypeError, match="bias must be True or False"):
        fl.Linear(3, 2, bias=bias)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.complex64, "banana"], ids=str)
def test_layer_bad_dtype(dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        fl.Linear(3, 2, dtype=dtype)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="unknown backend 'cuda'") as info:
        fl.Linear(3, 2, backend="cuda")
    for name in fl.available_backends():
        assert repr(name) in str(info.value)
    for bad in (None, ["loops"], "LOOPS"):
        with pytest.raises(ValueError, match="valid backends"):
            fl.get_backend(bad)


def test_unknown_backend_setter_leaves_layer(layer):
    expect_error(layer, ValueError, "valid backends are", setattr, layer, "backend", "gpu")


def test_unknown_init_lists_valid_names(layer):
    with pytest.raises(ValueError, match="unknown init 'glorot'.*'he_normal'.*'torch'"):
        fl.Linear(3, 2, init="glorot")
    expect_error(layer, ValueError, "valid inits", layer.reset_parameters, init="glorot")


def test_unknown_reduction():
    with pytest.raises(ValueError, match="unknown reduction 'avg'.*'sum', 'mean'"):
        fl.Linear(3, 2, reduction="avg")


# --- step ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -float("inf"), np.float32("nan")], ids=["nan", "inf", "-inf", "f32nan"])
def test_step_non_finite_lr(layer, lr):
    expect_error(layer, ValueError, "lr must be finite", layer.step, lr)


@pytest.mark.parametrize("lr", ["0.1", None, True, 1j, np.array([0.1, 0.2])], ids=["str", "None", "bool", "complex", "array"])
def test_step_non_number_lr(layer, lr):
    expect_error(layer, TypeError, "lr must be a real number", layer.step, lr)


# --- functional API -----------------------------------------------------------------------------

X = np.ones((4, 3), np.float32)
W = np.ones((2, 3), np.float32)
B = np.ones(2, np.float32)


@pytest.mark.parametrize("w", [np.ones(3, np.float32), np.ones((1, 2, 3), np.float32), np.zeros((), np.float32)],
                         ids=["1d", "3d", "0d"])
def test_linear_w_not_2d(w):
    with pytest.raises(ValueError, match="w must be 2-D"):
        fl.linear(X, w)


def test_linear_x_0d():
    with pytest.raises(ValueError, match="at least 1 dimension"):
        fl.linear(np.zeros((), np.float32), W)


def test_linear_shape_mismatch_message():
    with pytest.raises(ValueError, match=r"4x5 and 3x2"):
        fl.linear(np.ones((4, 5), np.float32), W)


def test_linear_bias_problems():
    with pytest.raises(ValueError, match=r"b must have shape \(2,\)"):
        fl.linear(X, W, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="b must have shape"):
        fl.linear(X, W, np.ones((1, 2), np.float32))
    with pytest.raises(TypeError, match="b has dtype float64 but w has dtype float32"):
        fl.linear(X, W, np.ones(2, np.float64))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fl.linear(X, W, [1.0, 1.0])


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("arg", ["x", "w"])
def test_linear_unsupported_dtype(arg, dtype):
    x = X.astype(dtype) if arg == "x" else X
    w = W.astype(dtype) if arg == "w" else W
    with pytest.raises(TypeError, match=f"{arg} has unsupported dtype"):
        fl.linear(x, w)


def test_linear_dtype_mismatch():
    with pytest.raises(TypeError, match="x has dtype float64 but w has dtype float32"):
        fl.linear(X.astype(np.float64), W)


@pytest.mark.parametrize("arg", ["x", "w"])
def test_linear_non_arrays(arg):
    args = {"x": X, "w": W}
    args[arg] = args[arg].tolist()
    with pytest.raises(TypeError, match=f"{arg} must be a numpy.ndarray"):
        fl.linear(args["x"], args["w"])


def test_linear_unknown_backend():
    with pytest.raises(ValueError, match="'loops', 'naive', 'blas', 'auto'"):
        fl.linear(X, W, backend="fast")


def test_linear_backward_errors():
    dy = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="unknown reduction"):
        fl.linear_backward(dy, X, W, reduction="none")
    with pytest.raises(ValueError, match=r"dy has shape \(4, 3\).*\(4, 2\)"):
        fl.linear_backward(np.ones((4, 3), np.float32), X, W)
    with pytest.raises(ValueError, match="dy has shape"):
        fl.linear_backward(np.ones((3, 2), np.float32), X, W)
    with pytest.raises(TypeError, match="dy has dtype float64"):
        fl.linear_backward(dy.astype(np.float64), X, W)
    with pytest.raises(TypeError, match="dy must be a numpy.ndarray"):
        fl.linear_backward(dy.tolist(), X, W)
    with pytest.raises(ValueError, match="4x5 and 3x2"):
        fl.linear_backward(dy, np.ones((4, 5), np.float32), W)
    with pytest.raises(ValueError, match="valid backends"):
        fl.linear_backward(dy, X, W, backend="nope")
    _, cache = fl.forward(X, W, B)
    with pytest.raises(ValueError, match="unknown reduction"):
        fl.backward(dy, cache, reduction="avg")


# --- out= ---------------------------------------------------------------------------------------

def _out_error(out, exc, match, x=X, w=W, b=B):
    before = out.copy() if isinstance(out, np.ndarray) else None
    with pytest.raises(exc, match=match):
        fl.linear(x, w, b, out=out)
    if before is not None:
        np.testing.assert_array_equal(out, before)  # not written


def test_out_wrong_shape():
    _out_error(np.zeros((4, 3), np.float32), ValueError, r"out has shape \(4, 3\), expected \(4, 2\)")
    _out_error(np.zeros((8,), np.float32), ValueError, "out has shape")
    _out_error(np.zeros((1, 4, 2), np.float32), ValueError, "out has shape")


def test_out_wrong_dtype():
    _out_error(np.zeros((4, 2), np.float64), TypeError, "out has dtype float64, expected float32")


def test_out_not_contiguous():
    _out_error(np.zeros((2, 4), np.float32).T, ValueError, "C-contiguous")
    _out_error(np.zeros((4, 4), np.float32)[:, ::2], ValueError, "C-contiguous")


def test_out_read_only():
    out = np.zeros((4, 2), np.float32)
    out.flags.writeable = False
    _out_error(out, ValueError, "read-only")


def test_out_not_an_array():
    _out_error([[0.0, 0.0]] * 4, TypeError, "out must be a numpy.ndarray")


def test_out_overlapping_inputs():
    square_x = np.ones((3, 3), np.float32) / 3
    square_w = np.ones((3, 3), np.float32) / 2
    _out_error(square_x, ValueError, "out overlaps x", x=square_x, w=square_w, b=None)
    _out_error(square_w, ValueError, "out overlaps w", x=square_x, w=square_w, b=None)
    buf = np.ones(6, np.float32)
    _out_error(buf[:4].reshape(2, 2), ValueError, "overlaps b",
               x=np.ones((2, 3), np.float32), w=np.ones((2, 3), np.float32), b=buf[3:5])


# --- load_state_dict ----------------------------------------------------------------------------

def test_load_state_dict_missing_and_extra_keys(layer):
    good = layer.state_dict()
    new = {k: v + 1 for k, v in good.items()}
    expect_error(layer, KeyError, r"missing \['bias'\]", layer.load_state_dict, {"weight": new["weight"]})
    expect_error(layer, KeyError, r"unexpected \['running_mean'\]", layer.load_state_dict,
                 {**new, "running_mean": new["bias"]})
    no_bias = fl.Linear(3, 2, bias=False, seed=0)
    expect_error(no_bias, KeyError, r"unexpected \['bias'\]", no_bias.load_state_dict, new)


def test_load_state_dict_wrong_shape(layer):
    good = layer.state_dict()
    expect_error(layer, ValueError, r"weight has shape \(3, 2\), expected \(2, 3\)", layer.load_state_dict,
                 {"weight": good["weight"].T.copy(), "bias": good["bias"] + 1})
    # a valid new weight with a bad bias: nothing (not even the weight) is written
    expect_error(layer, ValueError, "bias has shape", layer.load_state_dict,
                 {"weight": good["weight"] + 1, "bias": np.ones(3, np.float32)})


def test_load_state_dict_wrong_dtype(layer):
    good = layer.state_dict()
    expect_error(layer, TypeError, "float64", layer.load_state_dict,
                 {"weight": good["weight"] + 1, "bias": (good["bias"] + 1).astype(np.float64)})
    expect_error(layer, TypeError, "dtype", layer.load_state_dict,
                 {"weight": np.ones((2, 3), np.int32), "bias": good["bias"] + 1})


def test_load_state_dict_not_a_dict_or_not_arrays(layer):
    expect_error(layer, TypeError, "state must be a dict", layer.load_state_dict, [("weight", 1)])
    good = layer.state_dict()
    expect_error(layer, TypeError, "numpy.ndarray", layer.load_state_dict,
                 {"weight": (good["weight"] + 1).tolist(), "bias": good["bias"] + 1})


# --- threads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,exc,match", [
    (0, ValueError, "between 1 and"),
    (-1, ValueError, "between 1 and"),
    (numba.config.NUMBA_NUM_THREADS + 1, ValueError, "between 1 and"),
    (1.0, TypeError, "must be an integer"),
    ("2", TypeError, "must be an integer"),
    (True, TypeError, "must be an integer"),
], ids=["0", "-1", "too-many", "float", "str", "bool"])  # None means "adaptive again" (tested apart)
def test_set_num_threads_bad(n, exc, match):
    before = fl.get_num_threads()
    with pytest.raises(exc, match=match):
        fl.set_num_threads(n)
    assert fl.get_num_threads() == before


# --- parameters replaced (rather than assigned into) ---------------------------------------------

REPLACEMENTS = [
    ("weight", lambda lay: np.zeros((3, 2), np.float32)),
    ("weight", lambda lay: lay.weight.astype(np.float64)),
    ("weight", lambda lay: lay.weight.tolist()),
    ("bias", lambda lay: np.zeros(3, np.float32)),
    ("grad_weight", lambda lay: np.asfortranarray(lay.grad_weight)),
    ("grad_weight", lambda lay: np.zeros((2, 2), np.float32)),
    ("grad_bias", lambda lay: None),
]


@pytest.mark.parametrize("name,make", REPLACEMENTS,
                         ids=["w-shape", "w-dtype", "w-list", "b-shape", "gw-fortran", "gw-shape", "gb-None"])
def test_replaced_parameter_refused(layer, name, make):
    setattr(layer, name, make(layer))
    cached = layer._x
    grads = (layer.grad_weight.copy() if isinstance(layer.grad_weight, np.ndarray) else None)
    with pytest.raises(RuntimeError, match=f"layer.{name} is .*in place"):
        layer.forward(np.ones((4, 3), np.float32))
    assert layer._x is cached  # the refused call cached nothing
    with pytest.raises(RuntimeError, match=f"layer.{name}"):
        layer.backward(np.ones((4, 2), np.float32))
    if grads is not None:
        np.testing.assert_array_equal(layer.grad_weight, grads)


def test_replaced_weight_with_other_layout_is_used(rng):
    """Replacing weight by a same-shape, same-dtype array in another layout is fine."""
    lay = fl.Linear(3, 2, dtype=np.float64, seed=0)
    w = np.asfortranarray(rng.standard_normal((2, 3)))
    lay.weight = w
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(lay(x), x @ w.T + lay.bias, rtol=1e-14)


# --- found in review: ways around the checks ----------------------------------------------------

@pytest.mark.parametrize("backend", ["loops", "naive", "blas"])
def test_reshaping_the_cached_input_in_place_cannot_reach_the_kernels(backend):
    # The kernels index without bounds checks; the layer must not read x through its new shape.
    lay = fl.Linear(3, 2, seed=0, backend=backend)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    lay(x)
    x.shape = (2, 6)
    with pytest.raises(ValueError, match=r"dy has shape \(2, 2\).*\(4, 2\)"):
        lay.backward(np.ones((2, 2), np.float32))
    assert not lay.grad_weight.any()
    lay.backward(np.ones((4, 2), np.float32))  # the cached (4, 3) view is still intact
    np.testing.assert_array_equal(lay.grad_weight, np.ones((2, 4)) @ np.arange(12).reshape(4, 3))


def test_reduction_attribute_is_validated(layer):
    expect_error(layer, ValueError, "unknown reduction 'Mean'", setattr, layer, "reduction", "Mean")
    layer.reduction = "mean"
    assert layer.reduction == "mean"


def test_raw_reduction_scale_rejects_unknown_names():
    from fastlinear._dispatch import reduction_scale

    with pytest.raises(ValueError, match="unknown reduction"):
        reduction_scale("avg", 4, np.dtype(np.float32))


def test_step_lr_overflowing_float32(layer):
    expect_error(layer, ValueError, "overflows float32", layer.step, 1e39)


def test_step_refuses_replaced_gradient(layer):
    layer.grad_weight = np.ones(3, np.float32)  # would broadcast into the weight
    w = layer.weight.copy()
    with pytest.raises(RuntimeError, match="grad_weight"):
        layer.step(0.1)
    np.testing.assert_array_equal(layer.weight, w)


def test_step_on_read_only_bias_changes_nothing(layer):
    layer.bias.flags.writeable = False
    expect_error(layer, ValueError, "bias is read-only", layer.step, 0.1)


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.complex64])
def test_unsupported_dtype_message_names_both_dtypes(dtype):
    x = np.ones((4, 3), dtype)
    with pytest.raises(TypeError, match=rf"{np.dtype(dtype)}.*float32"):
        fl.linear(x, np.ones((2, 3), np.float32))


@pytest.mark.parametrize("init", [["torch"], {"a": 1}, None])
def test_unhashable_or_non_string_init(init):
    with pytest.raises(ValueError, match="valid inits are"):
        fl.Linear(3, 2, init=init)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("make", [lambda a: np.ma.masked_array(a, mask=a > 0), np.asmatrix],
                         ids=["masked", "matrix"])
def test_array_subclasses_with_other_semantics_rejected(layer, make):
    expect_error(layer, TypeError, "plain numpy.ndarray", layer.forward,
                 make(np.ones((4, 3), np.float32)))


# --- flags are bools, never truth values; out= never aliases a layer's own state -------------------

@pytest.mark.parametrize("value", ["no", "False", 0, 1, None, np.float64(1.0)], ids=repr)
@pytest.mark.parametrize("flag", ["bias", "need_input_grad"])
def test_boolean_arguments_refuse_non_bools(flag, value):
    x, w, dy = np.ones((2, 3), np.float32), np.ones((4, 3), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match=f"{flag} must be True or False"):
        fl.linear_backward(dy, x, w, **{flag: value})
    if flag == "bias":
        with pytest.raises(TypeError, match="bias must be True or False"):
            fl.Linear(3, 4, bias=value)
    else:
        layer = fl.Linear(3, 4, seed=0)
        layer(x)
        before = layer.grad_weight.copy()
        with pytest.raises(TypeError, match="need_input_grad must be True or False"):
            layer.backward(dy, need_input_grad=value)
        assert np.array_equal(layer.grad_weight, before)
        model = nn.mlp([3, 4], seed=0)
        model(x)
        with pytest.raises(TypeError, match="need_input_grad must be True or False"):
            model.backward(dy, need_input_grad=value)


@pytest.mark.parametrize("target", ["grad_weight", "grad_bias"])
def test_out_may_not_alias_the_layers_own_gradients(target):
    layer = fl.Linear(4, 4, seed=0)
    x = np.ones((4, 4), np.float32)
    y = layer(x)
    layer.backward(np.ones_like(y))
    alias = getattr(layer, target)
    before = alias.copy()
    with pytest.raises(ValueError, match=f"out overlaps {target}"):
        if target == "grad_weight":
            layer(x, out=alias)
        else:
            layer(x[:1], out=alias.reshape(1, 4))
    with pytest.raises(ValueError, match=f"out overlaps {target}"):
        if target == "grad_weight":
            layer.backward(np.ones_like(y), out=alias)
        else:
            layer(x[:1])
            layer.backward(np.ones((1, 4), np.float32), out=alias.reshape(1, 4))
    assert np.array_equal(getattr(layer, target), before)


@pytest.mark.parametrize("bad", [[[1.0] * 8], (1.0,) * 8, "x"], ids=["list", "tuple", "str"])
def test_predict_refuses_non_arrays_with_a_type_error(bad):
    model = nn.mlp([8, 3], seed=0)
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        model.predict(bad)


def test_backward_dy_shape_error_says_where_the_expected_shape_comes_from():
    x, w = np.ones((4, 3), np.float32), np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"dy has shape \(5, 2\) but the forward output has shape "
                                         r"\(4, 2\) \(the input's leading dimensions \(4,\) by "
                                         r"out_features 2\)"):
        fl.linear_backward(np.ones((5, 2), np.float32), x, w)
    with pytest.raises(TypeError, match="dy has dtype float64 but w has dtype float32"):
        fl.linear_backward(np.ones((4, 2)), x, w)
