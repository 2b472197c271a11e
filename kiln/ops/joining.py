"""Joining, splitting and repeating: concatenate, stack, split, array_split, tile, repeat,
pad. `kiln.ops.shape` re-exports them all."""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import builtins

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import indexing as _indexing
from . import reduce as _reduce
from . import shape as _shape


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


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
        seq = tuple(_shape.ravel(x) for x in seq)
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
        return tuple(_like(_shape.squeeze(p, ax), x) for p, x in zip(parts, inputs, strict=False))


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
        g = _shape.reshape(cts[0], tuple(split_shape))
        g = _reduce.sum(g, axis=tuple(range(0, 2 * ndim, 2)))
        return (_shape.reshape(g, x_shape),)


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
            gx = _reduce.sum(_shape.reshape(g, tuple(split_shape)), axis=ax + 1)
        else:  # uneven repeats: output position i came from input position owner[i]
            owner = _np.repeat(_np.arange(shape[ax]), repeats)
            gx = _indexing.index_add(g, owner, ax, shape[ax])
        return (_shape.reshape(gx, x.shape),)


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
