"""Shape operators: reshape, transpose, concatenate, split, broadcast, flip, tile, repeat, and
indexing (getitem, take) with their scatter-add gradients.
"""

from __future__ import annotations

import builtins

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply, is_array
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
        axes = _reduce.norm_axis(axes, a.ndim if is_array(a) else None)
        if is_array(a) and sorted(axes) != list(range(a.ndim)):
            raise ShapeError(f"transpose: axes {axes} are not a permutation of {a.ndim} axes")
    return apply(Transpose, (a,), {"axes": axes})


def swapaxes(a, axis1: int, axis2: int):
    ndim = len(a.shape)
    axes = list(range(ndim))
    i, j = _reduce.norm_axis((axis1, axis2), ndim)
    axes[i], axes[j] = axes[j], axes[i]
    return transpose(a, tuple(axes))


def moveaxis(a, source, destination):
    ndim = len(a.shape)
    src = _reduce.norm_axis(source, ndim)
    dst = _reduce.norm_axis(destination, ndim)
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
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
    return apply(Squeeze, (a,), {"axis": _reduce.norm_axis(axis)})


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
                    d != e for i, (d, e) in enumerate(zip(x.shape, first)) if i != ax):
                raise ShapeError(f"concatenate: shapes {[tuple(x.shape) for x in xs]} differ "
                                 f"outside axis {axis}")
        shape = list(first)
        shape[ax] = builtins.sum(x.shape[ax] for x in xs)
        return Aval(tuple(shape), _np.result_type(*[x.dtype for x in xs]))

    def grad(inputs, outputs, cts, *, axis):
        sizes = [x.shape[axis] for x in inputs]
        bounds = _np.cumsum(sizes)[:-1].tolist()
        parts = split(cts[0], bounds, axis=axis)
        return tuple(parts) if isinstance(parts, (list, tuple)) else (parts,)


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
        parts = parts if isinstance(parts, (list, tuple)) else [parts]
        return tuple(squeeze(p, ax) for p in parts)


def stack(arrays, axis: int = 0):
    """Join arrays along a new axis."""
    arrays = tuple(arrays)
    if not arrays:
        raise ShapeError("stack: need at least one array")
    return apply(Stack, arrays, {"axis": int(axis)})


def _split_bounds(length: int, sections) -> list[int]:
    if isinstance(sections, (int, _np.integer)):
        if sections <= 0 or length % sections:
            raise ShapeError(f"split: an axis of length {length} does not divide into "
                             f"{sections} equal sections")
        step = length // sections
        return [step * i for i in range(1, sections)]
    return [int(b) for b in sections]


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
        bounds = [0] + [builtins.min(builtins.max(b, 0), x.shape[ax]) for b in indices]
        bounds.append(x.shape[ax])
        outs = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            shape = list(x.shape)
            shape[ax] = builtins.max(hi - lo, 0)
            outs.append(Aval(tuple(shape), x.dtype))
        return tuple(outs)

    def grad(inputs, outputs, cts, *, indices, axis):
        return (concatenate(cts, axis=axis),)


def split(ary, indices_or_sections, axis: int = 0):
    """Split into equal sections or at the given indices; returns a list."""
    bounds = _split_bounds(ary.shape[axis], indices_or_sections)
    out = apply(Split, (ary,), {"indices": tuple(bounds), "axis": int(axis)})
    return list(out) if isinstance(out, tuple) else [out]


def array_split(ary, indices_or_sections, axis: int = 0):
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
    shape = (int(shape),) if isinstance(shape, (int, _np.integer)) else tuple(int(d) for d in shape)
    if tuple(array.shape) == shape:
        return array
    return apply(BroadcastTo, (array,), {"shape": shape})


def broadcast_arrays(*args):
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
    return apply(Flip, (m,), {"axis": _reduce.norm_axis(axis)})


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
        return Aval(tuple(d * r for d, r in zip(shape, reps)), x.dtype)

    def grad(inputs, outputs, cts, *, reps):
        # Each output axis is (rep, original): view it that way and sum the reps away.
        x_shape = tuple(inputs[0].shape)
        ndim = builtins.max(len(x_shape), len(reps))
        shape = (1,) * (ndim - len(x_shape)) + x_shape
        reps = (1,) * (ndim - len(reps)) + tuple(reps)
        split_shape = []
        for r, d in zip(reps, shape):
            split_shape += [r, d]
        g = reshape(cts[0], tuple(split_shape))
        g = _reduce.sum(g, axis=tuple(range(0, 2 * ndim, 2)))
        return (reshape(g, x_shape),)


def tile(A, reps):
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
            gx = index_add(g, owner, ax, shape[ax])
        return (reshape(gx, x.shape),)


def repeat(a, repeats, axis=None):
    if not isinstance(repeats, (int, _np.integer)):
        repeats = tuple(int(r) for r in _np.asarray(repeats).ravel())
        if len(repeats) == 1:
            repeats = repeats[0]
    else:
        repeats = int(repeats)
    return apply(Repeat, (a,), {"repeats": repeats, "axis": None if axis is None else int(axis)})


# ----------------------------------------------------------------------------------------------
# indexing
# ----------------------------------------------------------------------------------------------

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
            g = index_add(ravel(cts[0]), ravel(indices), 0, _prod(a.shape), mode)
            return (reshape(g, a.shape), None)
        return (index_add(cts[0], indices, axis % len(a.shape), a.shape[axis], mode), None)


def take(a, indices, axis=None, mode: str = "raise"):
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
    idx = apply(Nonzero, (a,))
    return tuple(idx[:, i] for i in range(idx.shape[1]))


class Pad(Op):
    name = "pad"
    mx_name = "_npi_pad"
    attrs = {"pad_width": (), "mode": "constant", "constant_value": 0.0}

    def impl(x, *, pad_width, mode, constant_value):
        if mode == "constant":
            return _np.pad(x, pad_width, mode="constant", constant_values=constant_value)
        return _np.pad(x, pad_width, mode=mode)

    def infer(x, *, pad_width, mode, constant_value):
        return Aval(tuple(d + lo + hi for d, (lo, hi) in zip(x.shape, pad_width)), x.dtype)

    def grad(inputs, outputs, cts, *, pad_width, mode, constant_value):
        if mode != "constant":
            raise KilnError(f"pad: the gradient of mode {mode!r} is not implemented; "
                            "mode='constant' is differentiable")
        key = tuple(slice(lo, lo + d) for d, (lo, _) in zip(inputs[0].shape, pad_width))
        return (getitem(cts[0], key),)


def pad(x, pad_width, mode: str = "constant", constant_values=0):
    ndim = len(x.shape)
    pw = _np.broadcast_to(_np.asarray(pad_width, dtype=_np.int64), (ndim, 2))
    return apply(Pad, (x,), {"pad_width": tuple(tuple(int(v) for v in row) for row in pw),
                             "mode": mode, "constant_value": float(constant_values)})
