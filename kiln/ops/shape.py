"""Shape operators: reshape, transpose, concatenate, split, broadcast, flip, roll, tile, repeat,
pad. Indexing (getitem, take ...) lives in `indexing.py`, re-exported here.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).
# ruff: noqa: N805

from __future__ import annotations

import builtins

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


def _like(g, x):
    """Cotangent `g` in the dtype of input `x`, whose dtype the joined result may have promoted."""
    if g.dtype != x.dtype and x.dtype.kind == "f":
        return _ew.astype(g, x.dtype)
    return g


class Concatenate(Op):
    name = "concatenate"
    mx_name = "_npi_concatenate"
    attrs = {"axis": 0}
    inputs = ("*data",)

    def impl(*xs, axis):
        return _np.concatenate(xs, axis=axis)

    def infer(*xs, axis):
        first = xs[0].shape
        ax = axis % len(first)
        for x in xs[1:]:
            if len(x.shape) != len(first) or any(
                    d != e for i, (d, e) in enumerate(zip(x.shape, first, strict=True))
                    if i != ax):
                raise ShapeError(f"concatenate: shapes {[tuple(x.shape) for x in xs]} differ "
                                 f"outside axis {axis}")
        shape = list(first)
        shape[ax] = builtins.sum(x.shape[ax] for x in xs)
        return Aval(tuple(shape), _np.result_type(*[x.dtype for x in xs]))

    def grad(inputs, outputs, cts, *, axis):
        sizes = [x.shape[axis] for x in inputs]
        bounds = _np.cumsum(sizes)[:-1].tolist()
        parts = split(cts[0], bounds, axis=axis)
        return tuple(_like(p, x) for p, x in zip(parts, inputs, strict=False))


def concatenate(seq, axis: int = 0):
    """Join arrays along an existing axis."""
    seq = tuple(seq)
    if not seq:
        raise ShapeError("concatenate: need at least one array")
    if axis is None:
        seq = tuple(ravel(x) for x in seq)
        axis = 0
    return apply(Concatenate, seq, {"axis": int(axis)})


concat = concatenate


class Stack(Op):
    name = "stack"
    mx_name = "_npi_stack"
    attrs = {"axis": 0}
    inputs = ("*data",)

    def impl(*xs, axis):
        return _np.stack(xs, axis=axis)

    def infer(*xs, axis):
        first = tuple(xs[0].shape)
        for x in xs[1:]:
            if tuple(x.shape) != first:
                raise ShapeError(f"stack: all arrays need the same shape, got "
                                 f"{[tuple(x.shape) for x in xs]}")
        shape = list(first)
        shape.insert(axis % (len(first) + 1), len(xs))
        return Aval(tuple(shape), _np.result_type(*[x.dtype for x in xs]))

    def grad(inputs, outputs, cts, *, axis):
        n = len(inputs)
        ax = axis % (len(inputs[0].shape) + 1)
        parts = split(cts[0], n, axis=ax)
        return tuple(_like(squeeze(p, ax), x) for p, x in zip(parts, inputs, strict=False))


def stack(arrays, axis: int = 0):
    """Join arrays along a new axis."""
    arrays = tuple(arrays)
    if not arrays:
        raise ShapeError("stack: need at least one array")
    return apply(Stack, arrays, {"axis": int(axis)})


def _split_bounds(length: int, sections) -> list[int]:
    """Boundaries in [0, length], as NumPy's slicing reads them (negative ones from the end)."""
    if isinstance(sections, (int, _np.integer)):
        if sections <= 0 or length % sections:
            raise ShapeError(f"split: an axis of length {length} does not divide into "
                             f"{sections} equal sections; use array_split for unequal ones")
        step = length // sections
        return [step * i for i in range(1, sections)]
    return [builtins.min(builtins.max(int(b) + length if b < 0 else int(b), 0), length)
            for b in sections]


class Split(Op):
    """Split along `axis` at the boundaries `indices` (a tuple), one output per piece."""

    name = "split"
    mx_name = "_npi_split"
    attrs = {"indices": (), "axis": 0}

    def num_outputs_for(*, indices, axis):
        return len(indices) + 1

    def impl(x, *, indices, axis):
        return tuple(_np.split(x, indices, axis=axis))

    def infer(x, *, indices, axis):
        ax = axis % len(x.shape)
        outs = []
        for lo, hi in _pieces(indices, x.shape[ax]):
            shape = list(x.shape)
            shape[ax] = hi - lo
            outs.append(Aval(tuple(shape), x.dtype))
        return tuple(outs)

    def grad(inputs, outputs, cts, *, indices, axis):
        x = inputs[0]
        ax = axis % len(x.shape)
        pieces = _pieces(indices, x.shape[ax])
        if builtins.all(a[1] == b[0] for a, b in zip(pieces[:-1], pieces[1:], strict=False)):
            return (concatenate(cts, axis=ax),)
        # Decreasing boundaries make pieces overlap: pad each back to full length and add.
        total = None
        for (lo, hi), g in zip(pieces, cts, strict=False):
            widths = tuple((lo, x.shape[ax] - hi) if i == ax else (0, 0)
                           for i in range(len(x.shape)))
            part = pad(g, widths)
            total = part if total is None else total + part
        return (total,)


def _pieces(indices, length: int) -> list[tuple[int, int]]:
    """(start, stop) of each piece of np.split; a stop before its start gives an empty piece."""
    bounds = [0, *indices, length]
    return [(lo, builtins.max(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=False)]


def split(ary, indices_or_sections, axis: int = 0):
    """Split into equal sections or at the given indices; returns a list."""
    ndim = len(ary.shape)
    axis = _reduce.norm_axis(axis, ndim)[0]
    bounds = _split_bounds(ary.shape[axis], indices_or_sections)
    out = apply(Split, (ary,), {"indices": tuple(bounds), "axis": axis})
    return list(out) if isinstance(out, tuple) else [out]


def array_split(ary, indices_or_sections, axis: int = 0):
    """Split into `indices_or_sections` pieces that may differ in size by one."""
    length = ary.shape[axis]
    if isinstance(indices_or_sections, (int, _np.integer)):
        n = int(indices_or_sections)
        sizes = [length // n + (1 if i < length % n else 0) for i in range(n)]
        indices_or_sections = _np.cumsum(sizes)[:-1].tolist()
    return split(ary, indices_or_sections, axis)


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


class Tile(Op):
    name = "tile"
    mx_name = "_npi_tile"
    attrs = {"reps": ()}

    def impl(x, *, reps):
        return _np.tile(x, reps)

    def infer(x, *, reps):
        ndim = builtins.max(len(x.shape), len(reps))
        shape = (1,) * (ndim - len(x.shape)) + tuple(x.shape)
        reps = (1,) * (ndim - len(reps)) + tuple(reps)
        return Aval(tuple(d * r for d, r in zip(shape, reps, strict=False)), x.dtype)

    def grad(inputs, outputs, cts, *, reps):
        # Each output axis is (rep, original): view it that way and sum the reps away.
        x_shape = tuple(inputs[0].shape)
        ndim = builtins.max(len(x_shape), len(reps))
        shape = (1,) * (ndim - len(x_shape)) + x_shape
        reps = (1,) * (ndim - len(reps)) + tuple(reps)
        split_shape = []
        for r, d in zip(reps, shape, strict=False):
            split_shape += [r, d]
        g = reshape(cts[0], tuple(split_shape))
        g = _reduce.sum(g, axis=tuple(range(0, 2 * ndim, 2)))
        return (reshape(g, x_shape),)


def tile(A, reps):
    """Repeat the whole array `reps` times along each axis."""
    reps = (int(reps),) if isinstance(reps, (int, _np.integer)) else tuple(int(r) for r in reps)
    return apply(Tile, (A,), {"reps": reps})


class Repeat(Op):
    name = "repeat"
    mx_name = "_np_repeat"
    attrs = {"repeats": 1, "axis": None}

    def impl(x, *, repeats, axis):
        return _np.repeat(x, repeats, axis)

    def infer(x, *, repeats, axis):
        if axis is None:
            n = _prod(x.shape)
            return Aval((n * repeats if isinstance(repeats, int) else builtins.sum(repeats),),
                        x.dtype)
        shape = list(x.shape)
        shape[axis] = (shape[axis] * repeats if isinstance(repeats, int)
                       else builtins.sum(repeats))
        return Aval(tuple(shape), x.dtype)

    def grad(inputs, outputs, cts, *, repeats, axis):
        x = inputs[0]
        g = cts[0]
        if axis is None:  # NumPy repeats the flattened array
            shape, ax = (_prod(x.shape),), 0
        else:
            shape, ax = tuple(x.shape), axis % len(x.shape)
        if isinstance(repeats, int):
            split_shape = list(shape)
            split_shape[ax:ax + 1] = [shape[ax], repeats]
            gx = _reduce.sum(reshape(g, tuple(split_shape)), axis=ax + 1)
        else:  # uneven repeats: output position i came from input position owner[i]
            owner = _np.repeat(_np.arange(shape[ax]), repeats)
            gx = _indexing.index_add(g, owner, ax, shape[ax])
        return (reshape(gx, x.shape),)


def repeat(a, repeats, axis=None):
    """Repeat each element `repeats` times along `axis` (of the flattened array by default)."""
    if not isinstance(repeats, (int, _np.integer)):
        repeats = tuple(int(r) for r in _np.asarray(repeats).ravel())
        if len(repeats) == 1:
            repeats = repeats[0]
    else:
        repeats = int(repeats)
    return apply(Repeat, (a,), {"repeats": repeats, "axis": None if axis is None else int(axis)})


class Pad(Op):
    name = "pad"
    mx_name = "_npi_pad"
    attrs = {"pad_width": (), "mode": "constant", "constant_value": 0.0}

    def impl(x, *, pad_width, mode, constant_value):
        if mode == "constant":
            return _np.pad(x, pad_width, mode="constant", constant_values=constant_value)
        return _np.pad(x, pad_width, mode=mode)

    def infer(x, *, pad_width, mode, constant_value):
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(x.shape, pad_width, strict=True))
        return Aval(shape, x.dtype)

    def grad(inputs, outputs, cts, *, pad_width, mode, constant_value):
        if mode != "constant":
            raise KilnError(f"pad: the gradient of mode {mode!r} is not implemented; "
                            "mode='constant' is differentiable")
        key = tuple(slice(lo, lo + d)
                    for d, (lo, _) in zip(inputs[0].shape, pad_width, strict=True))
        return (_indexing.getitem(cts[0], key),)


def pad(x, pad_width, mode: str = "constant", constant_values=0):
    """Pad with `pad_width` elements before and after each axis (mode 'constant' is
    differentiable)."""
    ndim = len(x.shape)
    pw = _np.broadcast_to(_np.asarray(pad_width, dtype=_np.int64), (ndim, 2))
    return apply(Pad, (x,), {"pad_width": tuple(tuple(int(v) for v in row) for row in pw),
                             "mode": mode, "constant_value": float(constant_values)})


# Indexing operators, re-exported: they belong to the shape family for their users.
from . import indexing as _indexing  # noqa: E402
from .indexing import (  # noqa: E402, F401
    getitem, index_add, nonzero, normalize_key, take, take_along_axis,
)
