"""Indexing operators: `x[key]` (getitem), take, take_along_axis, nonzero, and the scatter-add
operators that are their gradients.

A gradient of an indexing operator scatters the cotangent back into zeros of the input's shape,
adding where one element was read several times; the scatter's own gradient is the gather
again, so second-order gradients come free.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import builtins

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply, is_array
from .registry import Aval, Op
from . import shape as _shape


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def normalize_key(key):
    """An index as a tuple of ints, slices, None, Ellipsis and NumPy integer/bool arrays."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if is_array(k):
            k = k._data
        elif getattr(k, "_kiln_symbolic", False):
            raise KilnError(
                "indexing with a symbolic index array is not supported while tracing; use "
                "np.take(x, indices, axis) or npx.pick(x, index, axis), which accept symbols")
        elif isinstance(k, list):
            k = _np.asarray([e._data if is_array(e) else e for e in k])
        elif isinstance(k, _np.integer):
            k = int(k)
        out.append(k)
    return tuple(out)


def is_basic_key(key: tuple) -> bool:
    """Basic indexing (a view; no index repeats an element)."""
    return builtins.all(isinstance(k, (int, slice)) or k is None or k is Ellipsis for k in key)


def _dummy(aval):
    """A zero-stride array with the shape and dtype of `aval`: indexing it costs nothing."""
    return _np.broadcast_to(_np.zeros((), aval.dtype), aval.shape)


class GetItem(Op):
    name = "getitem"
    mx_name = "_npi_getitem"
    attrs = {"key": ()}

    def impl(x, *, key):
        return x[key]

    def infer(x, *, key):
        try:
            return Aval(_dummy(x)[key].shape, x.dtype)
        except IndexError as e:
            raise ShapeError(f"index {key!r} on shape {tuple(x.shape)}: {e}") from None

    def grad(inputs, outputs, cts, *, key):
        return (apply(GetItemBackward, (cts[0],), {"key": key, "shape": tuple(inputs[0].shape)}),)


class GetItemBackward(Op):
    """Scatter-add `g` into zeros of `shape` at `key`: the gradient of getitem."""

    name = "getitem_backward"
    mx_name = "_kiln_getitem_backward"
    attrs = {"key": (), "shape": ()}

    def impl(g, *, key, shape):
        out = _np.zeros(shape, g.dtype)
        if is_basic_key(key):
            out[key] = g
        else:
            _np.add.at(out, key, g)
        return out

    def infer(g, *, key, shape):
        return Aval(tuple(shape), g.dtype)

    def grad(inputs, outputs, cts, *, key, shape):
        return (apply(GetItem, (cts[0],), {"key": key}),)


def getitem(a, key):
    """`a[key]`: basic slicing, integer-array and boolean-mask indexing."""
    return apply(GetItem, (a,), {"key": normalize_key(key)})


class Take(Op):
    """Elements of `a` at integer `indices` along `axis` (MXNet's take, mode 'clip' or 'wrap')."""

    name = "take"
    mx_name = "_npi_take"
    attrs = {"axis": None, "mode": "raise"}
    inputs = ("a", "indices")

    def impl(a, indices, *, axis, mode):
        return _np.take(a, indices, axis=axis, mode=mode)

    def infer(a, indices, *, axis, mode):
        if axis is None:
            return Aval(tuple(indices.shape), a.dtype)
        ax = axis % len(a.shape)
        shape = tuple(a.shape[:ax]) + tuple(indices.shape) + tuple(a.shape[ax + 1:])
        return Aval(shape, a.dtype)

    def grad(inputs, outputs, cts, *, axis, mode):
        a, indices = inputs
        if axis is None:
            g = index_add(_shape.ravel(cts[0]), _shape.ravel(indices), 0, _prod(a.shape), mode)
            return (_shape.reshape(g, a.shape), None)
        return (index_add(cts[0], indices, axis % len(a.shape), a.shape[axis], mode), None)


def take(a, indices, axis=None, mode: str = "raise"):
    """Elements at integer `indices` along `axis` (of the flattened array by default)."""
    if mode not in ("raise", "clip", "wrap"):
        raise KilnError(f"take: mode must be 'raise', 'clip' or 'wrap', not {mode!r}")
    return apply(Take, (a, indices), {"axis": None if axis is None else int(axis), "mode": mode})


class IndexAdd(Op):
    """out[..., indices[j], ...] += g[..., j, ...] along `axis`, into zeros of length `size`.

    The gradient of `take`, `repeat` and `embedding`; `indices` may have any shape, whose
    dimensions replace `axis` in `g`.
    """

    name = "index_add"
    mx_name = "_kiln_index_add"
    attrs = {"axis": 0, "size": 0, "mode": "raise"}
    inputs = ("data", "indices")

    def impl(g, indices, *, axis, size, mode):
        idx = _np.asarray(indices).astype(_np.int64, copy=False)
        if mode == "clip":
            idx = _np.clip(idx, 0, size - 1)
        elif mode == "wrap":
            idx = idx % size
        k = idx.ndim
        lead = g.shape[:axis]
        tail = g.shape[axis + k:]
        out = _np.zeros(lead + (size,) + tail, g.dtype)
        g2 = g.reshape(lead + (-1,) + tail)
        _np.add.at(out, (slice(None),) * axis + (idx.reshape(-1),), g2)
        return out

    def infer(g, indices, *, axis, size, mode):
        k = len(indices.shape)
        shape = tuple(g.shape[:axis]) + (size,) + tuple(g.shape[axis + k:])
        return Aval(shape, g.dtype)

    def grad(inputs, outputs, cts, *, axis, size, mode):
        return (take(cts[0], inputs[1], axis=axis, mode="clip" if mode == "raise" else mode), None)


def index_add(g, indices, axis: int, size: int, mode: str = "raise"):
    """Add `g` into zeros of length `size` along `axis` at `indices` (the gradient of take)."""
    return apply(IndexAdd, (g, indices), {"axis": int(axis), "size": int(size), "mode": mode})


class Nonzero(Op):
    """Indices of the non-zero elements; the result's shape depends on the data (eager only)."""

    name = "nonzero"
    mx_name = "_npi_nonzero"
    differentiable = False

    def num_outputs_for():
        raise KilnError("nonzero has a data-dependent number of outputs")

    def impl(x):
        return _np.stack(_np.nonzero(x), axis=1)

    def infer(x):
        raise KilnError(
            "nonzero (and boolean-mask indexing) gives a result whose shape depends on the "
            "data, which a compiled graph cannot hold; use np.where(mask, x, 0) instead")


def nonzero(a):
    """Indices of the non-zero elements, one array per axis (eager only)."""
    idx = apply(Nonzero, (a,))
    return tuple(idx[:, i] for i in range(idx.shape[1]))


# ----------------------------------------------------------------------------------------------
# take_along_axis
# ----------------------------------------------------------------------------------------------

def _along_axis_index(indices, axis: int, out_shape: tuple, src_shape: tuple) -> tuple:
    """The full NumPy index that reads `indices` along `axis` for every position of
    `out_shape`; other axes index themselves, or 0 where the source broadcasts (size 1)."""
    ndim = len(out_shape)
    key = []
    for d in range(ndim):
        if d == axis:
            key.append(_np.broadcast_to(indices, out_shape))
            continue
        shape = [1] * ndim
        shape[d] = out_shape[d]
        pos = _np.arange(out_shape[d]) if src_shape[d] == out_shape[d] else \
            _np.zeros(out_shape[d], _np.int64)
        key.append(pos.reshape(shape))
    return tuple(key)


def _along_axis_shape(arr_shape: tuple, idx_shape: tuple, axis: int) -> tuple:
    if len(arr_shape) != len(idx_shape):
        raise ShapeError(f"take_along_axis: indices of shape {tuple(idx_shape)} need as many "
                         f"dimensions as the array of shape {tuple(arr_shape)}")
    other = [a if i == axis else b
             for i, (a, b) in enumerate(zip(idx_shape, arr_shape, strict=True))]
    try:
        shape = _np.broadcast_shapes(tuple(other), tuple(idx_shape))
    except ValueError:
        raise ShapeError(f"take_along_axis: indices of shape {tuple(idx_shape)} do not "
                         f"broadcast against the array of shape {tuple(arr_shape)} outside "
                         f"axis {axis}") from None
    return shape


class TakeAlongAxis(Op):
    """arr[..., indices[..., j, ...], ...] along `axis`: NumPy's take_along_axis."""

    name = "take_along_axis"
    mx_name = "_npi_take_along_axis"
    attrs = {"axis": 0}
    inputs = ("arr", "indices")

    def impl(arr, indices, *, axis):
        return _np.take_along_axis(arr, indices, axis=axis)

    def infer(arr, indices, *, axis):
        return Aval(_along_axis_shape(arr.shape, indices.shape, axis), arr.dtype)

    def grad(inputs, outputs, cts, *, axis):
        arr, indices = inputs
        return (apply(TakeAlongAxisBackward, (cts[0], indices),
                      {"axis": axis, "shape": tuple(arr.shape)}), None)


class TakeAlongAxisBackward(Op):
    """Scatter-add `g` into zeros of `shape` at the positions take_along_axis read."""

    name = "take_along_axis_backward"
    mx_name = "_kiln_take_along_axis_backward"
    attrs = {"axis": 0, "shape": ()}
    inputs = ("data", "indices")

    def impl(g, indices, *, axis, shape):
        out = _np.zeros(shape, g.dtype)
        idx = _np.where(indices < 0, indices + shape[axis], indices)
        _np.add.at(out, _along_axis_index(idx, axis, g.shape, shape), g)
        return out

    def infer(g, indices, *, axis, shape):
        return Aval(tuple(shape), g.dtype)

    def grad(inputs, outputs, cts, *, axis, shape):
        return (apply(TakeAlongAxis, (cts[0], inputs[1]), {"axis": axis}), None)


def take_along_axis(arr, indices, axis: int | None):
    """Elements of `arr` at `indices` along `axis` (`indices` has `arr`'s number of dimensions,
    as from argsort or argmax with keepdims). `axis=None` works on the flattened array."""
    if axis is None:
        arr = _shape.ravel(arr)
        axis = 0
    ndim = len(arr.shape)
    if not -ndim <= axis < ndim:
        raise ShapeError(f"take_along_axis: axis {axis} is out of bounds for an array of "
                         f"{ndim} dimensions")
    return apply(TakeAlongAxis, (arr, indices), {"axis": int(axis) % ndim})
