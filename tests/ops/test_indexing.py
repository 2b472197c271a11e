"""Indexing: basic slices, integer arrays, boolean masks, take, take_along_axis, __setitem__,
and gradients through all of them."""

from __future__ import annotations

import numpy as onp
import pytest
from np_compare import assert_matches, rand

from kiln import autograd, np
from kiln.base import KilnError, ShapeError
from kiln.test_utils import check_gradient, check_second_order

X = rand(4, 5, 6, dtype="float32")

BASIC_KEYS = [
    0, -1, slice(1, 3), slice(None, None, -1), slice(None, None, -2), slice(3, 0, -1),
    (1, 2), (1, slice(None), -1), (Ellipsis, 1), (Ellipsis, slice(None, None, -1)),
    (None, 1), (slice(None), None, 2), (1, Ellipsis, None), (None, Ellipsis, None),
    (slice(-3, None), slice(None, 2), slice(1, 5, 2)), (0, 0, 0), (), Ellipsis,
    (slice(10, 20),), onp.int64(2), (onp.int32(1), slice(None)),
]

ADVANCED_KEYS = [
    [0, 2, 2],
    onp.array([3, 0, -1]),
    ([0, 1], [2, 3]),
    (slice(None), [0, 0, 4]),
    (Ellipsis, [1, -1]),
    (onp.array([[0, 1], [2, 3]]), slice(None), 0),
    ([1, 2], slice(1, 3), [0, 5]),
    (1, [0, 2], slice(None)),
    (None, [1, 1]),
]


def _key_for_kiln(key):
    """The same key with NumPy index arrays given as kiln arrays."""
    def conv(k):
        return np.array(k, dtype=k.dtype) if isinstance(k, onp.ndarray) else k
    return tuple(conv(k) for k in key) if isinstance(key, tuple) else conv(key)


@pytest.mark.parametrize("key", BASIC_KEYS, ids=repr)
def test_basic_indexing(key):
    assert_matches(np.array(X)[key], X[key])
    check_gradient(lambda a: a[key], [rand(4, 5, 6)])


@pytest.mark.parametrize("key", ADVANCED_KEYS, ids=repr)
def test_integer_array_indexing(key):
    assert_matches(np.array(X)[key], X[key])
    assert_matches(np.array(X)[_key_for_kiln(key)], X[key])
    # repeated indices accumulate their gradients
    check_gradient(lambda a: a[key], [rand(4, 5, 6)])


def test_indexing_with_an_integer_kiln_array_and_scalars():
    idx = np.array([2, 0, 2], dtype="int64")
    assert_matches(np.array(X)[idx], X[[2, 0, 2]])
    assert_matches(np.array(X)[np.array(1, dtype="int32")], X[1])
    x = np.array(X)
    assert x[1, 2, 3].shape == ()
    assert x[1, 2, 3].item() == X[1, 2, 3]


def test_boolean_mask_indexing():
    mask = X > 0
    assert_matches(np.array(X)[np.array(mask)], X[mask])
    assert_matches(np.array(X)[mask], X[mask])
    row_mask = onp.array([True, False, True, True])
    assert_matches(np.array(X)[row_mask], X[row_mask])
    assert_matches(np.array(X)[:, onp.array([True] * 2 + [False] * 3)], X[:, [0, 1]])
    check_gradient(lambda a: a[mask] * 2, [rand(4, 5, 6)])
    check_gradient(lambda a: a[row_mask], [rand(4, 5, 6)])


def test_gradient_through_integer_and_boolean_indexing():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    x.attach_grad()
    with autograd.record():
        y = (x[np.array([0, 0, 3], dtype="int64")] * np.array([1.0, 2.0, 3.0])).sum()
    y.backward()
    assert_matches(x.grad, onp.array([3.0, 0.0, 0.0, 3.0], "float32"))
    with autograd.record():
        z = (x[x > 2] ** 2).sum()
    z.backward()
    assert_matches(x.grad, onp.array([0.0, 0.0, 6.0, 8.0], "float32"))


def test_indexing_second_order():
    check_second_order(lambda a: a[[0, 0, 2]] ** 3, [rand(3, 2)])
    check_second_order(lambda a: a[::-1, 1:] ** 3, [rand(3, 2)])


def test_index_errors_are_clear():
    with pytest.raises(ShapeError, match=r"getitem.*out of bounds"):
        np.array(X)[4]
    with pytest.raises(ShapeError, match="getitem"):
        np.array(X)[0, 0, 0, 0]
    with pytest.raises(ShapeError, match="getitem"):
        np.array(X)[[0, 9]]


def test_iteration_and_len():
    x = np.array(X)
    assert len(x) == 4
    rows = list(x)
    assert len(rows) == 4
    assert_matches(rows[2], X[2])
    with pytest.raises(TypeError):
        len(np.array(1.0))


# ----------------------------------------------------------------------------------------------
# __setitem__
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ((0,), 1.5),
    ((slice(None), 1), onp.arange(6, dtype="float32")),            # broadcast over rows
    ((Ellipsis, -1), onp.ones((4, 5), "float32") * 3),
    (([0, 2],), 0.0),
    ((slice(1, 3), slice(None), slice(None, None, 2)), onp.float32(7)),
    ((onp.array([True, False, True, False]),), onp.arange(30, dtype="float32").reshape(5, 6)),
    ((slice(None),), onp.arange(6, dtype="float32")),
])
def test_setitem(key, value):
    want = X.copy()
    want[key] = value
    got = np.array(X)
    got[key] = np.array(value) if isinstance(value, onp.ndarray) else value
    assert_matches(got, want)
    got2 = np.array(X)
    got2[key] = value  # a NumPy value works as well
    assert_matches(got2, want)


def test_setitem_with_kiln_index_and_mask():
    x = np.array(X)
    x[x < 0] = 0.0
    assert_matches(x, onp.where(X < 0, 0, X))
    x[np.array([1, 3], dtype="int64")] = -1.0
    want = onp.where(X < 0, 0, X)
    want[[1, 3]] = -1
    assert_matches(x, want)


def test_setitem_errors():
    x = np.array(X)
    with pytest.raises(ShapeError, match="x\\[...\\] = v"):
        x[0] = np.ones((2, 2))
    with pytest.raises(ShapeError):
        x[10] = 1.0


def test_setitem_and_inplace_on_recorded_arrays_fail_clearly():
    x = np.array([1.0, 2.0])
    x.attach_grad()
    with autograd.record():
        y = x * 2
        with pytest.raises(KilnError, match="a = a \\+ b"):
            y += 1
        with pytest.raises(KilnError, match="autograd"):
            y[0] = 5.0
        for op in ("-=", "*=", "/="):
            with pytest.raises(KilnError):
                exec(f"y {op} 2", {"y": y})
    y += 1  # outside record() it is allowed
    assert_matches(y, onp.array([3.0, 5.0], "float32"))


def test_inplace_operators_outside_record():
    x = np.array([1.0, 2.0, 3.0])
    x += 1
    x -= np.array([0.5, 0.5, 0.5])
    x *= 2
    x /= 4
    assert_matches(x, onp.array([0.75, 1.25, 1.75], "float32"))
    i = np.array([5, 7], dtype="int32")
    i //= 2
    i %= 2
    assert_matches(i, onp.array([0, 1], "int32"))
    f = np.array([2.0, 3.0])
    f **= 2
    assert_matches(f, onp.array([4.0, 9.0], "float32"))
    with pytest.raises(ShapeError):
        x += np.ones((2, 2))
    with pytest.raises(ShapeError):
        i += 1.5  # float into int: NumPy refuses the cast, so does kiln


# ----------------------------------------------------------------------------------------------
# take, take_along_axis
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("mode", ["raise", "clip", "wrap"])
def test_take(axis, mode):
    idx = onp.array([[0, 3], [1, 1]]) if mode == "raise" else onp.array([[0, 7], [-1, 2]])
    if mode == "raise" and axis is None:
        idx = onp.array([[0, 30], [5, 5]])
    assert_matches(np.take(np.array(X), np.array(idx, dtype="int64"), axis=axis, mode=mode),
                   onp.take(X, idx, axis=axis, mode=mode))
    assert_matches(np.array(X).take(idx, axis=axis, mode=mode),
                   onp.take(X, idx, axis=axis, mode=mode))
    check_gradient(lambda a: np.take(a, idx, axis=axis, mode=mode), [rand(4, 5, 6)])


def test_take_errors():
    with pytest.raises(KilnError, match="mode"):
        np.take(np.array(X), [0], mode="bogus")
    with pytest.raises(ShapeError, match="take"):
        np.take(np.array(X), [10], axis=0)


@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_take_along_axis(axis):
    x = rand(3, 4, 5, dtype="float32")
    if axis is None:
        idx = onp.array([0, 59, 3, 3])
    else:
        idx = onp.argsort(x, axis=axis)[(slice(None),) * (axis % 3) + (slice(0, 2),)]
    assert_matches(np.take_along_axis(np.array(x), np.array(idx, dtype="int64"), axis),
                   onp.take_along_axis(x, idx, axis))
    check_gradient(lambda a: np.take_along_axis(a, idx, axis), [rand(3, 4, 5)])


def test_take_along_axis_broadcast_repeats_and_negative_indices():
    x = rand(3, 4, dtype="float32")
    idx = onp.array([[0, 0, -1]])            # broadcasts over the 3 rows, repeats column 0
    assert_matches(np.take_along_axis(np.array(x), idx, 1), onp.take_along_axis(x, idx, 1))
    check_gradient(lambda a: np.take_along_axis(a, idx, 1), [rand(3, 4)])
    col = rand(3, 1)                          # the array broadcasts against the indices
    idx2 = onp.zeros((3, 5), "int64")
    assert_matches(np.take_along_axis(np.array(col), idx2, 1),
                   onp.take_along_axis(col, idx2, 1))
    check_gradient(lambda a: np.take_along_axis(a, idx2, 1), [col])
    check_second_order(lambda a: np.take_along_axis(a, idx, 1) ** 3, [rand(3, 4)])


def test_take_along_axis_with_argmax_keepdims():
    x = rand(3, 4, dtype="float32")
    i = np.argmax(np.array(x), axis=1, keepdims=True)
    assert_matches(np.take_along_axis(np.array(x), i, axis=1), x.max(axis=1, keepdims=True))


def test_take_along_axis_errors():
    with pytest.raises(ShapeError, match="take_along_axis"):
        np.take_along_axis(np.ones((2, 3)), np.zeros(2, dtype="int64"), 1)
    with pytest.raises(ShapeError, match="take_along_axis"):
        np.take_along_axis(np.ones((2, 3)), np.zeros((2, 1), dtype="int64"), 2)


def test_nonzero():
    x = onp.array([[0, 1, 0], [2, 0, 3]], "float32")
    got = np.nonzero(np.array(x))
    for g, w in zip(got, onp.nonzero(x)):
        assert_matches(g, w)


def test_scatter_operators_gradients():
    from kiln.ops.shape import index_add

    idx = onp.array([[0, 2], [2, 4]])
    check_gradient(lambda g: index_add(g, idx, 0, 5), [rand(2, 2, 3)])
    check_gradient(lambda g: index_add(g, idx, 1, 5, mode="wrap"), [rand(3, 2, 2)])
    check_second_order(lambda a: np.take(a, idx, axis=0) ** 3, [rand(5, 2)])
