"""Reductions and cumsum: forward against NumPy over every axis form, dtypes, gradients."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches, rand

from kiln import autograd, np
from kiln.base import ShapeError
from kiln.test_utils import check_gradient, check_second_order

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (), (0, 1, 2)]

FLOAT_REDUCTIONS = {
    "sum": onp.sum, "mean": onp.mean, "prod": onp.prod, "max": onp.max, "min": onp.min,
    "amax": onp.amax, "amin": onp.amin, "std": onp.std, "var": onp.var,
}


@pytest.mark.parametrize("name", sorted(FLOAT_REDUCTIONS))
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_forward(name, axis, keepdims):
    x = rand(2, 3, 4, low=0.5, high=1.5, dtype="float32")
    out = getattr(np, name)(np.array(x), axis=axis, keepdims=keepdims)
    assert_matches(out, FLOAT_REDUCTIONS[name](x, axis=axis, keepdims=keepdims), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FLOAT_REDUCTIONS))
def test_reduction_methods(name):
    if name in ("amax", "amin"):
        return
    x = rand(2, 3, low=0.5, high=1.5, dtype="float32")
    assert_matches(getattr(np.array(x), name)(axis=1), getattr(x, name)(axis=1))
    assert_matches(getattr(np.array(x), name)(), getattr(x, name)())


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8", "bool", "float16", "float64"])
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min", "std", "var"])
def test_reduction_result_dtype_follows_numpy(name, dtype):
    x = onp.array([[1, 2, 3], [0, 1, 1]]).astype(dtype)
    if dtype == "bool" and name in ("std", "var", "mean"):
        expected = FLOAT_REDUCTIONS[name](x, axis=0)
    else:
        expected = FLOAT_REDUCTIONS[name](x, axis=0)
    assert_matches(getattr(np, name)(np.array(x), axis=0), expected, rtol=1e-3)


@pytest.mark.parametrize("name", ["sum", "mean", "prod"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64", "int32"])
def test_reduction_dtype_argument(name, dtype):
    x = onp.array([[1, 2, 3], [4, 5, 6]], dtype="int32")
    out = getattr(np, name)(np.array(x), axis=1, dtype=dtype)
    assert_matches(out, FLOAT_REDUCTIONS[name](x, axis=1, dtype=dtype))


def test_mean_of_ints_is_float64_as_numpy():
    assert np.mean(np.array([1, 2], dtype="int32")).dtype == onp.float64
    assert np.array([1, 2], dtype="int64").mean().dtype == onp.float64


@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("axis", [None, 1, (0, 2)])
def test_std_var_ddof(ddof, axis):
    x = rand(3, 4, 5, dtype="float32")
    assert_matches(np.std(np.array(x), axis=axis, ddof=ddof), onp.std(x, axis=axis, ddof=ddof),
                   rtol=1e-5)
    assert_matches(np.var(np.array(x), axis=axis, ddof=ddof), onp.var(x, axis=axis, ddof=ddof),
                   rtol=1e-5)
    check_gradient(lambda a: np.std(a, axis=axis, ddof=ddof), [rand(3, 4, 5, seed=2)])
    check_gradient(lambda a: np.var(a, axis=axis, ddof=ddof, keepdims=True),
                   [rand(3, 4, 5, seed=3)])


@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2), (-1, -3)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_gradients(name, axis, keepdims):
    x = rand(2, 3, 4, low=0.5, high=1.5, seed=4)
    check_gradient(lambda a: getattr(np, name)(a, axis=axis, keepdims=keepdims), [x])


def test_sum_gradient_with_dtype_argument_keeps_input_dtype():
    x = np.ones((2, 3), dtype="float32")
    x.attach_grad()
    with autograd.record():
        y = np.sum(x, dtype="float64")
    assert y.dtype == onp.float64
    y.backward()
    assert x.grad.dtype == onp.float32
    assert_matches(x.grad, onp.ones((2, 3), "float32"))


def test_max_min_ties_share_the_gradient():
    # Where several elements attain the maximum the cotangent is split evenly among them.
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, 5.0, 1.0]])
    x.attach_grad()
    with autograd.record():
        y = np.max(x, axis=1)
    y.backward()
    expected = onp.array([[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 1, 0]], "float32")
    assert_matches(x.grad, expected)
    with autograd.record():
        z = np.min(x)
    z.backward()
    assert_matches(x.grad, onp.array([[0, 0, 0], [0, 0, 0], [1, 0, 0]], "float32"))
    # a tie of two agrees with the central difference, which sees the kink evenly
    check_gradient(lambda a: np.max(a, axis=1), [onp.array([[1.0, 3.0, 3.0], [4.0, 2.0, 4.0]])])


def test_prod_gradient_with_zeros():
    # one zero: only the zero gets a gradient (the product of the rest); two zeros: none.
    x = onp.array([[0.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 0.0, 4.0]])
    check_gradient(lambda a: np.prod(a, axis=1), [x])
    check_gradient(lambda a: np.prod(a), [onp.array([[0.5, 2.0], [0.0, 3.0]])])
    check_gradient(lambda a: np.prod(a, axis=0, keepdims=True), [x])


def test_prod_second_order():
    check_second_order(lambda a: np.prod(a, axis=1), [rand(2, 3, low=0.5, high=1.5)])


def test_second_order_sum_and_mean():
    check_second_order(lambda a: np.sum(a * a * a, axis=0), [rand(2, 3)])
    check_second_order(lambda a: np.mean(np.tanh(a), axis=(0, 1), keepdims=True), [rand(2, 3)])


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax_argmin(name, axis, keepdims):
    x = rand(3, 4, dtype="float32")
    x[1, 2] = x.max() + 1  # unique extremes
    x[2, 1] = x.min() - 1
    out = getattr(np, name)(np.array(x), axis=axis, keepdims=keepdims)
    assert_matches(out, getattr(onp, name)(x, axis=axis, keepdims=keepdims))


def test_argmax_ties_pick_the_first():
    x = onp.array([[1, 3, 3], [2, 2, 2]], "float32")
    assert_matches(np.argmax(np.array(x), axis=1), onp.argmax(x, axis=1))
    assert_matches(np.argmin(np.array(x), axis=1), onp.argmin(x, axis=1))
    assert_matches(np.array(x).argmax(1), onp.argmax(x, 1))


def test_argmax_axis_must_be_int():
    with pytest.raises(ShapeError, match="argmax"):
        np.argmax(np.ones((2, 3)), axis=(0, 1))


@pytest.mark.parametrize("name", ["all", "any"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
def test_all_any(name, axis):
    x = onp.array([[True, False, True], [True, True, True]])
    assert_matches(getattr(np, name)(np.array(x), axis=axis), getattr(onp, name)(x, axis=axis))
    f = onp.array([[0.0, 1.0], [2.0, 3.0]], "float32")
    assert_matches(getattr(np, name)(np.array(f), axis=0, keepdims=True),
                   getattr(onp, name)(f, axis=0, keepdims=True))
    assert_matches(getattr(np.array(x), name)(), getattr(x, name)())


def test_bad_axis_is_a_clear_error():
    x = np.ones((2, 3))
    with pytest.raises(ShapeError, match="sum") as info:
        np.sum(x, axis=2)
    assert "[2, 3]" in str(info.value) or "(2, 3)" in str(info.value)
    with pytest.raises(ShapeError, match="out of bounds"):
        np.mean(x, axis=(0, -3))
    with pytest.raises(ShapeError):
        np.max(x, axis=5)


def test_reductions_of_lists_and_scalars():
    assert_matches(np.sum([1.0, 2.0]), onp.float32(3.0))
    assert np.sum(np.array(3.0)).shape == ()


# ----------------------------------------------------------------------------------------------
# cumsum
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("dtype", ["float32", "int32", "bool"])
def test_cumsum_forward(axis, dtype):
    x = (rand(3, 4, low=0, high=3) ).astype(dtype)
    assert_matches(np.cumsum(np.array(x), axis=axis), onp.cumsum(x, axis=axis))


def test_cumsum_dtype_and_gradient():
    x = onp.arange(6, dtype="int32").reshape(2, 3)
    assert_matches(np.cumsum(np.array(x), axis=1, dtype="float64"),
                   onp.cumsum(x, axis=1, dtype="float64"))
    for axis in (None, 0, 1, -1):
        check_gradient(lambda a, ax=axis: np.cumsum(a, axis=ax), [rand(3, 4)])
    check_second_order(lambda a: np.cumsum(a * a, axis=0), [rand(3, 2)])
    with pytest.raises(ShapeError):
        np.cumsum(np.ones((2, 3)), axis=2)
