"""Creation functions: float32 by default (MXNet's numpy mode), NumPy's values otherwise."""

from __future__ import annotations

import numpy as onp
import pytest

import kiln
from np_compare import assert_matches

from kiln import np
from kiln.base import SymbolicValueError


@pytest.mark.parametrize("obj,dtype", [
    ([1, 2], "float32"), ([1.5, 2.5], "float32"), ([[1, 2], [3, 4]], "float32"), (3, "float32"),
    (2.5, "float32"), ([True, False], "bool"), ((1, 2), "float32"),
])
def test_array_from_python_defaults_to_float32(obj, dtype):
    out = np.array(obj)
    assert_matches(out, onp.array(obj).astype(dtype))


def test_array_with_dtype_and_from_numpy():
    assert_matches(np.array([1, 2], dtype="int32"), onp.array([1, 2], "int32"))
    assert_matches(np.array([1.5], dtype=np.float64), onp.array([1.5]))
    a = onp.arange(3, dtype="int64")
    out = np.array(a)  # NumPy arrays keep their dtype
    assert_matches(out, a)
    out[0] = 5
    assert a[0] == 0  # and are copied
    assert_matches(np.array(onp.ones(2)), onp.ones(2))
    assert_matches(np.array(a, dtype="float32"), a.astype("float32"))
    assert_matches(np.array([np.array([1.0, 2.0]), np.array([3.0, 4.0])]),
                   onp.array([[1.0, 2.0], [3.0, 4.0]], "float32"))


def test_array_of_a_symbol_is_a_clear_error():
    with pytest.raises(SymbolicValueError, match="hybridize"):
        np.array(kiln.sym.var("x", shape=(2,)))


@pytest.mark.parametrize("fn", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("shape", [3, (2, 3), (), [2, 2], (0, 4)])
def test_zeros_ones_empty(fn, shape):
    out = getattr(np, fn)(shape)
    want_shape = (shape,) if isinstance(shape, int) else tuple(shape)
    assert out.shape == want_shape and out.dtype == onp.float32
    if fn != "empty":
        assert_matches(out, getattr(onp, fn)(want_shape, "float32"))
    assert getattr(np, fn)(shape, dtype="int32").dtype == onp.int32
    assert getattr(np, fn)(shape, dtype=onp.float64).dtype == onp.float64


def test_full():
    assert_matches(np.full((2, 3), 7), onp.full((2, 3), 7, "float32"))
    assert_matches(np.full(2, 1.5, dtype="float64"), onp.full(2, 1.5))
    assert_matches(np.full(3, True), onp.full(3, True))
    assert_matches(np.full((2, 2), np.array([1.0, 2.0])), onp.full((2, 2), [1.0, 2.0], "float32"))
    assert_matches(np.full(2, 3, dtype="int64"), onp.full(2, 3, "int64"))


def test_like_functions():
    x = np.ones((2, 3), dtype="int32")
    assert_matches(np.zeros_like(x), onp.zeros((2, 3), "int32"))
    assert_matches(np.ones_like(x, dtype="float32"), onp.ones((2, 3), "float32"))
    assert_matches(np.full_like(x, 4), onp.full((2, 3), 4, "int32"))
    e = np.empty_like(x)
    assert e.shape == (2, 3) and e.dtype == onp.int32


@pytest.mark.parametrize("args", [(5,), (2, 7), (1, 2, 0.25), (5, 0, -1), (0.5, 3.0)])
def test_arange(args):
    assert_matches(np.arange(*args), onp.arange(*args).astype("float32"))
    assert_matches(np.arange(*args, dtype="float64"), onp.arange(*args, dtype="float64"))


def test_arange_int_dtype():
    assert_matches(np.arange(5, dtype="int32"), onp.arange(5, dtype="int32"))
    assert_matches(np.arange(2, 10, 3, dtype=np.int64), onp.arange(2, 10, 3))


def test_linspace_logspace():
    assert_matches(np.linspace(0, 1, 5), onp.linspace(0, 1, 5, dtype="float32"))
    assert_matches(np.linspace(0, 1, 5, endpoint=False),
                   onp.linspace(0, 1, 5, endpoint=False, dtype="float32"))
    arr, step = np.linspace(2, 3, 4, retstep=True)
    assert_matches(arr, onp.linspace(2, 3, 4, dtype="float32"))
    assert step == pytest.approx(1 / 3)
    assert_matches(np.linspace(0, 1, 3, dtype="float64"), onp.linspace(0, 1, 3))
    assert_matches(np.logspace(0, 2, 3), onp.logspace(0, 2, 3, dtype="float32"))
    assert_matches(np.logspace(0, 3, 4, base=2.0), onp.logspace(0, 3, 4, base=2.0,
                                                                dtype="float32"))


def test_eye_identity_tri():
    assert_matches(np.eye(3), onp.eye(3, dtype="float32"))
    assert_matches(np.eye(2, 4, k=1), onp.eye(2, 4, k=1, dtype="float32"))
    assert_matches(np.eye(3, dtype="int32"), onp.eye(3, dtype="int32"))
    assert_matches(np.identity(4), onp.identity(4, dtype="float32"))
    assert_matches(np.tri(3, 4, -1), onp.tri(3, 4, -1, dtype="float32"))


def test_dtype_names_and_constants():
    assert np.float32 is onp.float32 and np.int64 is onp.int64 and np.bool_ is onp.bool_
    assert np.pi == onp.pi and np.e == onp.e and np.inf == onp.inf and onp.isnan(np.nan)
    assert np.newaxis is None
    assert np.finfo(np.float32).eps == onp.finfo(onp.float32).eps
    assert np.issubdtype(np.float32, np.floating)
    assert np.dtype("float32") == onp.float32


def test_every_public_name_is_documented_and_listed():
    assert "array" in np.__all__ and "take_along_axis" in np.__all__
    for name in np.__all__:
        obj = getattr(np, name)
        if callable(obj) and getattr(obj, "__module__", "").startswith("kiln"):
            assert obj.__doc__, f"np.{name} has no docstring"
