"""Shape operators: reshape, transpose, swapaxes, moveaxis, expand_dims, squeeze, broadcast_to,
flip, roll. Joining and repeating (concatenate, split, tile, pad ...) live in `joining.py` and
indexing (getitem, take ...) in `indexing.py`; both are re-exported here, so `shape` is the one
module to import for the family.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import reduce as _reduce


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def resolve_newshape(shape: tuple, newshape) -> tuple:
    """`newshape` with its -1 filled in, checked against the number of elements."""
    if isinstance(newshape, (int, _np.integer)):
        newshape = (int(newshape),)
    newshape = tuple(int(d) for d in newshape)
    size = _prod(shape)
    if newshape.count(-1) > 1:
        raise ShapeError(f"reshape: only one dimension can be -1, got {newshape}")
    if -1 in newshape:
        known = _prod(d for d in newshape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"reshape: cannot reshape array of shape {shape} into {newshape}")
        newshape = tuple(size // known if d == -1 else d for d in newshape)
    if _prod(newshape) != size:
        raise ShapeError(f"reshape: cannot reshape array of shape {shape} (size {size}) "
                         f"into shape {newshape}")
    return newshape


class Reshape(Op):
    name = "reshape"
    mx_name = "_np_reshape"
    attrs = {"newshape": ()}

    def impl(x, *, newshape):
        return x.reshape(newshape)

    def infer(x, *, newshape):
        return Aval(resolve_newshape(x.shape, newshape), x.dtype)

    def grad(inputs, outputs, cts, *, newshape):
        return (reshape(cts[0], inputs[0].shape),)


def reshape(a, newshape, order: str = "C"):
    """The same elements in a new shape; one dimension may be -1."""
    if order != "C":
        raise KilnError("reshape: only order='C' is supported")
    if isinstance(newshape, (int, _np.integer)):
        newshape = (int(newshape),)
    return apply(Reshape, (a,), {"newshape": tuple(int(d) for d in newshape)})


def ravel(a):
    """The elements as a 1-D array."""
    return reshape(a, (-1,))


class Transpose(Op):
    name = "transpose"
    mx_name = "_np_transpose"
    attrs = {"axes": None}

    def impl(x, *, axes):
        return _np.transpose(x, axes)

    def infer(x, *, axes):
        axes = tuple(reversed(range(len(x.shape)))) if axes is None else axes
        return Aval(tuple(x.shape[a] for a in axes), x.dtype)

    def grad(inputs, outputs, cts, *, axes):
        ndim = len(inputs[0].shape)
        axes = tuple(reversed(range(ndim))) if axes is None else axes
        return (transpose(cts[0], tuple(_np.argsort(axes).tolist())),)


def transpose(a, axes=None):
    """Permute the axes (reverse them by default)."""
    if axes is not None:
        ndim = len(a.shape)
        axes = _reduce.norm_axis(axes, ndim)
        if sorted(axes) != list(range(ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of the {ndim} axes "
                             f"of an array of shape {tuple(a.shape)}")
    return apply(Transpose, (a,), {"axes": axes})


def swapaxes(a, axis1: int, axis2: int):
    """Exchange two axes."""
    ndim = len(a.shape)
    axes = list(range(ndim))
    i, j = _reduce.norm_axis((axis1, axis2), ndim)
    axes[i], axes[j] = axes[j], axes[i]
    return transpose(a, tuple(axes))


def moveaxis(a, source, destination):
    """Move axes `source` to positions `destination`, the others keeping their order."""
    ndim = len(a.shape)
    src = _reduce.norm_axis(source, ndim)
    dst = _reduce.norm_axis(destination, ndim)
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src, strict=False)):
        order.insert(d, s)
    return transpose(a, tuple(order))


class ExpandDims(Op):
    name = "expand_dims"
    mx_name = "_npi_expand_dims"
    attrs = {"axis": 0}

    def impl(x, *, axis):
        return _np.expand_dims(x, axis)

    def infer(x, *, axis):
        shape = list(x.shape)
        pos = axis if axis >= 0 else len(shape) + 1 + axis
        shape.insert(pos, 1)
        return Aval(tuple(shape), x.dtype)

    def grad(inputs, outputs, cts, *, axis):
        return (reshape(cts[0], inputs[0].shape),)


def expand_dims(a, axis: int):
    """Insert an axis of size 1 at `axis`."""
    return apply(ExpandDims, (a,), {"axis": int(axis)})


class Squeeze(Op):
    name = "squeeze"
    mx_name = "_npi_squeeze"
    attrs = {"axis": None}

    def impl(x, *, axis):
        return _np.squeeze(x, axis)

    def infer(x, *, axis):
        axes = _reduce.norm_axis(axis, len(x.shape))
        if axes is None:
            axes = tuple(i for i, d in enumerate(x.shape) if d == 1)
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: axis {a} has size {x.shape[a]}, not 1")
        return Aval(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)

    def grad(inputs, outputs, cts, *, axis):
        return (reshape(cts[0], inputs[0].shape),)


def squeeze(a, axis=None):
    """Remove axes of size 1 (all of them, or those in `axis`)."""
    return apply(Squeeze, (a,), {"axis": _reduce.norm_axis(axis)})


class BroadcastTo(Op):
    name = "broadcast_to"
    mx_name = "_npi_broadcast_to"
    attrs = {"shape": ()}

    def impl(x, *, shape):
        return _np.broadcast_to(x, shape)

    def infer(x, *, shape):
        try:
            _np.broadcast_shapes(x.shape, shape)
        except ValueError:
            raise ShapeError(f"broadcast_to: cannot broadcast shape {tuple(x.shape)} to "
                             f"{shape}") from None
        return Aval(tuple(shape), x.dtype)

    def grad(inputs, outputs, cts, *, shape):
        return (_ew.unbroadcast(cts[0], inputs[0].shape),)


def broadcast_to(array, shape):
    """The array broadcast to `shape` (a read-only view, as NumPy's)."""
    shape = (int(shape),) if isinstance(shape, (int, _np.integer)) else tuple(int(d) for d in shape)
    if tuple(array.shape) == shape:
        return array
    return apply(BroadcastTo, (array,), {"shape": shape})


def broadcast_arrays(*args):
    """The arrays broadcast against each other."""
    shape = _np.broadcast_shapes(*[a.shape for a in args])
    return [broadcast_to(a, shape) for a in args]


class Flip(Op):
    name = "flip"
    mx_name = "_npi_flip"
    attrs = {"axis": None}

    def impl(x, *, axis):
        return _np.flip(x, axis)

    def infer(x, *, axis):
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts, *, axis):
        return (flip(cts[0], axis),)


def flip(m, axis=None):
    """Reverse the order of elements along `axis` (every axis by default)."""
    return apply(Flip, (m,), {"axis": _reduce.norm_axis(axis)})


class Roll(Op):
    """Shift elements along `axis`, those past the end coming back at the start."""

    name = "roll"
    mx_name = "_npi_roll"
    attrs = {"shift": (0,), "axis": None}

    def impl(x, *, shift, axis):
        return _np.roll(x, shift if axis is not None else shift[0], axis)

    def infer(x, *, shift, axis):
        if axis is not None:
            _reduce.norm_axis(axis, len(x.shape))
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts, *, shift, axis):
        return (apply(Roll, (cts[0],), {"shift": tuple(-s for s in shift), "axis": axis}),)


def roll(a, shift, axis=None):
    """Roll elements by `shift` along `axis` (of the flattened array when `axis` is None)."""
    shift = (int(shift),) if isinstance(shift, (int, _np.integer)) else tuple(int(s) for s in shift)
    axis = _reduce.norm_axis(axis)
    if axis is None and len(shift) != 1:
        raise ShapeError(f"roll: without an axis the shift must be one integer, not {shift}")
    if axis is not None and len(shift) != len(axis):
        if len(shift) == 1:
            shift = shift * len(axis)
        elif len(axis) == 1:
            axis = axis * len(shift)
        else:
            raise ShapeError(f"roll: {len(shift)} shifts for {len(axis)} axes")
    return apply(Roll, (a,), {"shift": shift, "axis": axis})


# Joining and indexing operators, re-exported: they belong to the shape family for their users.
from .joining import (  # noqa: E402, F401
    array_split, concat, concatenate, pad, repeat, split, stack, tile,
)
from .indexing import (  # noqa: E402, F401
    getitem, index_add, nonzero, normalize_key, take, take_along_axis,
)
