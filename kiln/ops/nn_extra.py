
"""More operators of `kiln.npx`: SequenceMask, topk, smooth_l1, masked_softmax, arange_like,
and MXNet's reshape with special codes.
"""

from __future__ import annotations

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import reduce as _reduce
from . import shape as _shape


def _float(dtype) -> _np.dtype:
    dtype = _np.dtype(dtype)
    return dtype if dtype.kind == "f" else _np.dtype(_np.float32)


# ----------------------------------------------------------------------------------------------
# SequenceMask
# ----------------------------------------------------------------------------------------------

class SequenceMask(Op):
    """Set the steps at or past each sequence's length to `value`.

    data has the time axis `axis` (0 or 1) and the batch axis the other of the two;
    sequence_length has one length per batch entry.
    """

    name = "sequence_mask"
    mx_name = "SequenceMask"
    attrs = {"use_sequence_length": True, "value": 0.0, "axis": 0}
    inputs = ("data", "sequence_length")

    def impl(x, lengths, *, use_sequence_length, value, axis):
        SequenceMask.infer(x, lengths, use_sequence_length=use_sequence_length, value=value,
                           axis=axis)
        t = x.shape[axis]
        steps = _np.arange(t)
        lens = _np.asarray(lengths).astype(_np.int64, copy=False)
        keep = steps[:, None] < lens[None, :] if axis == 0 else lens[:, None] > steps[None, :]
        keep = keep.reshape(keep.shape + (1,) * (x.ndim - 2))
        return _np.where(keep, x, _np.asarray(value, x.dtype))

    def infer(x, lengths, *, use_sequence_length, value, axis):
        if axis not in (0, 1) or len(x.shape) < 2:
            raise ShapeError(f"sequence_mask: axis must be 0 or 1 on data of at least 2 "
                             f"dimensions, not axis={axis} on {tuple(x.shape)}")
        batch = x.shape[1 - axis]
        if tuple(lengths.shape) != (batch,):
            raise ShapeError(f"sequence_mask: sequence_length of shape {tuple(lengths.shape)} "
                             f"for data {tuple(x.shape)} with time axis {axis}; expected "
                             f"({batch},)")
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts, *, use_sequence_length, value, axis):
        attrs = {"use_sequence_length": True, "value": 0.0, "axis": axis}
        return (apply(SequenceMask, (cts[0], inputs[1]), attrs), None)


def sequence_mask(data, sequence_length=None, use_sequence_length: bool = False,
                  value: float = 0.0, axis: int = 0, **_mxnet_only):
    """MXNet's SequenceMask: without use_sequence_length it returns data unchanged."""
    if not use_sequence_length:
        return data
    if sequence_length is None:
        raise KilnError("sequence_mask: use_sequence_length=True needs sequence_length")
    return apply(SequenceMask, (data, sequence_length),
                 {"use_sequence_length": True, "value": float(value), "axis": int(axis)})


# ----------------------------------------------------------------------------------------------
# topk
# ----------------------------------------------------------------------------------------------

_RET_TYPES = ("value", "indices", "mask", "both")


def _topk_indices(x, axis, k, is_ascend):
    """Indices of the k smallest (ascending) or largest entries along `axis`; ties go to the
    lower index first."""
    keys = x if is_ascend else -x
    order = _np.argsort(keys, axis=axis, kind="stable")
    return _np.take(order, _np.arange(k), axis=axis)


class TopK(Op):
    """MXNet's topk: the k largest (or smallest) entries along `axis`.

    ret_typ 'value' gives the values, 'indices' their positions (in `dtype`, float32 by default
    as in MXNet), 'both' the two, 'mask' a 0/1 array of the data's shape marking them.
    """

    name = "topk"
    mx_name = "topk"
    attrs = {"axis": -1, "k": 1, "ret_typ": "indices", "is_ascend": False, "dtype": "float32"}

    def num_outputs_for(*, axis, k, ret_typ, is_ascend, dtype):
        return 2 if ret_typ == "both" else 1

    def impl(x, *, axis, k, ret_typ, is_ascend, dtype):
        TopK.infer(x, axis=axis, k=k, ret_typ=ret_typ, is_ascend=is_ascend, dtype=dtype)
        shape = x.shape
        if axis is None:
            x = x.reshape(-1)
            axis = 0
        idx = _topk_indices(x, axis, k, is_ascend)
        if ret_typ == "mask":
            mask = _np.zeros(x.shape, x.dtype)
            _np.put_along_axis(mask, idx, 1, axis=axis)
            return mask.reshape(shape)
        if ret_typ == "indices":
            return idx.astype(dtype)
        values = _np.take_along_axis(x, idx, axis=axis)
        if ret_typ == "value":
            return values
        return values, idx.astype(dtype)

    def infer(x, *, axis, k, ret_typ, is_ascend, dtype):
        if ret_typ not in _RET_TYPES:
            raise KilnError(f"topk: ret_typ {ret_typ!r} is not one of {_RET_TYPES}")
        shape = (_np.prod(x.shape, dtype=int),) if axis is None else tuple(x.shape)
        ax = 0 if axis is None else axis % len(shape)
        if not 1 <= k <= shape[ax]:
            raise ShapeError(f"topk: k={k} for an axis of length {shape[ax]} (data "
                             f"{tuple(x.shape)}, axis {axis}); need 1 <= k <= {shape[ax]}")
        if ret_typ == "mask":
            return Aval(tuple(x.shape), x.dtype)
        out = shape[:ax] + (k,) + shape[ax + 1:]
        if ret_typ == "indices":
            return Aval(out, _np.dtype(dtype))
        if ret_typ == "value":
            return Aval(out, x.dtype)
        return Aval(out, x.dtype), Aval(out, _np.dtype(dtype))

    def grad(inputs, outputs, cts, *, axis, k, ret_typ, is_ascend, dtype):
        if ret_typ not in ("value", "both"):
            return (None,)
        x = inputs[0]
        shape = tuple(x.shape)
        idx = apply(TopK, (x,), {"axis": axis, "k": k, "ret_typ": "indices",
                                 "is_ascend": is_ascend, "dtype": "int64"})
        flat_shape = (_np.prod(shape, dtype=int),) if axis is None else shape
        gx = apply(TopKScatter, (cts[0], idx), {"axis": 0 if axis is None else axis,
                                                "shape": flat_shape})
        return (_shape.reshape(gx, shape) if axis is None else gx,)


class TopKScatter(Op):
    """Zeros of `shape` with `grad` placed at `indices` along `axis`: topk's value gradient."""

    name = "topk_scatter"
    mx_name = "_kiln_topk_scatter"
    attrs = {"axis": -1, "shape": ()}
    inputs = ("grad", "indices")

    def impl(g, idx, *, axis, shape):
        out = _np.zeros(shape, g.dtype)
        _np.put_along_axis(out, idx.astype(_np.int64, copy=False), g, axis=axis)
        return out

    def infer(g, idx, *, axis, shape):
        return Aval(tuple(shape), g.dtype)

    def grad(inputs, outputs, cts, *, axis, shape):
        return (apply(TopKGather, (cts[0], inputs[1]), {"axis": axis}), None)


class TopKGather(Op):
    """data at `indices` along `axis` (take_along_axis): the adjoint of `topk_scatter`."""

    name = "topk_gather"
    mx_name = "_kiln_topk_gather"
    attrs = {"axis": -1}
    inputs = ("data", "indices")

    def impl(x, idx, *, axis):
        return _np.take_along_axis(x, idx.astype(_np.int64, copy=False), axis=axis)

    def infer(x, idx, *, axis):
        return Aval(tuple(idx.shape), x.dtype)

    def grad(inputs, outputs, cts, *, axis):
        return (apply(TopKScatter, (cts[0], inputs[1]),
                      {"axis": axis, "shape": tuple(inputs[0].shape)}), None)


def topk(data, axis=-1, k: int = 1, ret_typ: str = "indices", is_ascend: bool = False,
         dtype="float32"):
    """The k largest (is_ascend=False) or smallest entries along `axis` (MXNet's topk)."""
    if ret_typ not in _RET_TYPES:
        raise KilnError(f"topk: ret_typ {ret_typ!r} is not one of {_RET_TYPES}")
    attrs = {"axis": None if axis is None else int(axis), "k": int(k), "ret_typ": ret_typ,
             "is_ascend": bool(is_ascend), "dtype": _np.dtype(dtype).name}
    out = apply(TopK, (data,), attrs)
    return list(out) if ret_typ == "both" else out


# ----------------------------------------------------------------------------------------------
# smooth_l1, masked_softmax, arange_like
# ----------------------------------------------------------------------------------------------

class SmoothL1(Op):
    """0.5 * (sigma*x)**2 where |x| < 1/sigma**2, else |x| - 0.5/sigma**2 (MXNet's
    smooth_l1, sigma given as `scalar`)."""

    name = "smooth_l1"
    mx_name = "smooth_l1"
    attrs = {"scalar": 1.0}

    def impl(x, *, scalar):
        s2 = scalar * scalar
        ax = _np.abs(x)
        out = _np.where(ax < 1.0 / s2, 0.5 * s2 * x * x, ax - 0.5 / s2)
        return out.astype(_float(x.dtype), copy=False)

    def infer(x, *, scalar):
        return Aval(x.shape, _float(x.dtype))

    def grad(inputs, outputs, cts, *, scalar):
        x = inputs[0]
        s2 = scalar * scalar
        inner = _ew.absolute(x) < 1.0 / s2
        return (cts[0] * _ew.where(inner, x * s2, _ew.sign(x)),)


def smooth_l1(data, scalar: float = 1.0):
    return apply(SmoothL1, (data,), {"scalar": float(scalar)})


class MaskedSoftmax(Op):
    """softmax over the entries where `mask` is true; masked entries give 0 (a row with no
    entry left gives all zeros)."""

    name = "masked_softmax"
    mx_name = "masked_softmax"
    attrs = {"axis": -1, "temperature": 1.0, "normalize": True}
    inputs = ("data", "mask")
    save_outputs = True

    def impl(x, mask, *, axis, temperature, normalize):
        dtype = _float(x.dtype)
        x = x.astype(dtype, copy=False)
        keep = _np.broadcast_to(mask.astype(bool, copy=False), x.shape)
        z = _np.where(keep, x / dtype.type(temperature), -_np.inf)
        top = _np.max(z, axis=axis, keepdims=True)
        top = _np.where(_np.isfinite(top), top, 0)
        e = _np.where(keep, _np.exp(z - top), 0)
        total = _np.sum(e, axis=axis, keepdims=True)
        return e / _np.where(total > 0, total, 1)

    def infer(x, mask, *, axis, temperature, normalize):
        try:
            _np.broadcast_shapes(tuple(mask.shape), tuple(x.shape))
        except ValueError:
            raise ShapeError(f"masked_softmax: mask of shape {tuple(mask.shape)} does not "
                             f"broadcast to data {tuple(x.shape)}") from None
        return Aval(x.shape, _float(x.dtype))

    def grad(inputs, outputs, cts, *, axis, temperature, normalize):
        y = outputs[0]
        g = cts[0]
        gx = y * (g - _reduce.sum(g * y, axis=axis, keepdims=True))
        if temperature != 1.0:
            gx = gx / temperature
        return (gx, None)


def masked_softmax(data, mask, axis: int = -1, temperature: float = 1.0,
                   normalize: bool = True):
    """softmax of data along `axis` restricted to where `mask` is true (MXNet 2's
    npx.masked_softmax); masked positions are 0."""
    if not normalize:
        raise KilnError("masked_softmax: normalize=False is not supported")
    return apply(MaskedSoftmax, (data, mask), {"axis": int(axis),
                                              "temperature": float(temperature),
                                              "normalize": True})


class ArangeLike(Op):
    """start, start+step, ... shaped like the data (or along one of its axes); each value
    repeated `repeat` times. Not differentiable."""

    name = "arange_like"
    mx_name = "_contrib_arange_like"
    attrs = {"start": 0.0, "step": 1.0, "repeat": 1, "axis": None}
    differentiable = False

    def impl(x, *, start, step, repeat, axis):
        shape = tuple(x.shape) if axis is None else (x.shape[axis],)
        n = _np.prod(shape, dtype=int)
        vals = start + step * (_np.arange(n) // repeat)
        return vals.astype(_float(x.dtype)).reshape(shape)

    def infer(x, *, start, step, repeat, axis):
        shape = tuple(x.shape) if axis is None else (x.shape[axis],)
        return Aval(shape, _float(x.dtype))


def arange_like(data, start: float = 0.0, step: float = 1.0, repeat: int = 1, axis=None):
    if int(repeat) < 1:
        raise KilnError(f"arange_like: repeat must be at least 1, not {repeat}")
    return apply(ArangeLike, (data,), {"start": float(start), "step": float(step),
                                      "repeat": int(repeat),
                                      "axis": None if axis is None else int(axis)})


# ----------------------------------------------------------------------------------------------
# MXNet's reshape codes
# ----------------------------------------------------------------------------------------------

def mx_reshape_shape(shape: tuple, codes) -> tuple:
    """The shape MXNet's Reshape gives `shape` for `codes`: 0 copies the input dimension,
    -1 infers one dimension, -2 copies all remaining dimensions, -3 merges two consecutive
    input dimensions, -4 splits one input dimension into the two codes that follow (one of
    them may be -1)."""
    codes = tuple(int(c) for c in codes)
    out: list[int] = []
    infer_at = None
    i = 0          # position in the input shape
    j = 0          # position in the codes
    while j < len(codes):
        code = codes[j]
        if code > 0:
            out.append(code)
            i += 1
        elif code == 0:
            if i >= len(shape):
                raise ShapeError(f"reshape: code 0 at position {j} of {codes} copies a "
                                 f"dimension that input shape {shape} does not have")
            out.append(shape[i])
            i += 1
        elif code == -1:
            if infer_at is not None:
                raise ShapeError(f"reshape: {codes} has more than one dimension to infer (-1)")
            infer_at = len(out)
            out.append(-1)
            i += 1
        elif code == -2:
            out.extend(shape[i:])
            i = len(shape)
        elif code == -3:
            if i + 1 >= len(shape):
                raise ShapeError(f"reshape: code -3 at position {j} of {codes} merges two "
                                 f"dimensions that input shape {shape} does not have")
            out.append(shape[i] * shape[i + 1])
            i += 2
        elif code == -4:
            if j + 2 >= len(codes) or i >= len(shape):
                raise ShapeError(f"reshape: code -4 at position {j} of {codes} must be "
                                 "followed by two sizes and split an existing dimension")
            a, b = codes[j + 1], codes[j + 2]
            d = shape[i]
            if a == -1 and b > 0 and d % b == 0:
                a = d // b
            elif b == -1 and a > 0 and d % a == 0:
                b = d // a
            if a <= 0 or b <= 0 or a * b != d:
                raise ShapeError(f"reshape: -4 splits dimension {d} of {shape} into "
                                 f"({codes[j + 1]}, {codes[j + 2]}), which do not multiply to "
                                 f"{d}")
            out.extend((a, b))
            i += 1
            j += 2
        else:
            raise ShapeError(f"reshape: unknown code {code} in {codes}")
        j += 1
    size = _np.prod(shape, dtype=int)
    if infer_at is not None:
        known = _np.prod([d for k, d in enumerate(out) if k != infer_at], dtype=int)
        if known == 0 or size % known:
            raise ShapeError(f"reshape: cannot infer the -1 of {codes} for input {shape}")
        out[infer_at] = size // known
    if _np.prod(out, dtype=int) != size:
        raise ShapeError(f"reshape: {codes} gives shape {tuple(out)} ({_np.prod(out)} "
                         f"elements) for input {shape} ({size} elements)")
    return tuple(int(d) for d in out)


def reshape(a, newshape, reverse: bool = False, order: str = "C"):
    """Reshape with MXNet's special codes (npx.reshape / legacy nd.reshape): 0 copy, -1 infer,
    -2 copy the rest, -3 merge two, -4 split one in two. `reverse=True` reads the codes and
    the input shape from the right."""
    if order != "C":
        raise KilnError("reshape: only order='C' is supported")
    if isinstance(newshape, (int, _np.integer)):
        newshape = (int(newshape),)
    shape = tuple(a.shape)
    if reverse:
        codes = list(newshape)
        # -4 a b reads as -4 b a from the right: keep each triple's order of sizes
        rev: list[int] = []
        j = len(codes) - 1
        while j >= 0:
            if j >= 2 and codes[j - 2] == -4:
                rev.extend((-4, codes[j], codes[j - 1]))
                j -= 3
            else:
                rev.append(codes[j])
                j -= 1
        target = mx_reshape_shape(shape[::-1], rev)[::-1]
    else:
        target = mx_reshape_shape(shape, newshape)
    return _shape.reshape(a, target)
