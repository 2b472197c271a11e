
"""Pooling operators of `kiln.npx`: max, average and sum pooling (and Lp pooling built from
them) over 1-D, 2-D and 3-D windows in channel-first layout, with MXNet's conventions.

- Output size: ``valid`` gives floor((size + 2*pad - kernel) / stride) + 1, ``full`` the same
  with ceil; a ``full`` window may run past the padded input, and that part counts for nothing.
- Average pooling divides by the window clipped to the padded input when
  ``count_include_pad`` (the window's overhang past the padding is not counted), or by the number
  of real input elements it covers otherwise.
- Max pooling sends each window's gradient to the first position (in row-major window order)
  holding the maximum, as MXNet does; padding never wins unless the window holds nothing else.

The forward loops over the kernel offsets, each one a whole-array strided NumPy operation.
`pooling_backward` is the gradient; it is linear in the output cotangent, and its own gradient
is average pooling again (average/sum) or `pooling_max_gather` (max), which reads a cotangent at
the positions max pooling chose. So pooling has gradients of every order.
"""

from __future__ import annotations

import itertools

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import _native
from . import elementwise as _ew
from .conv import _LAYOUTS, as_2d, check_layout, spatial_tuple

__all__ = ["pooling"]

_POOL_TYPES = ("max", "avg", "sum")
_CONVENTIONS = ("valid", "full")


# ----------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------

def pool_geometry(spatial, kernel, stride, pad, global_pool, convention):
    """(kernel, stride, pad, out) actually used for input spatial shape `spatial`."""
    nd = len(spatial)
    if global_pool:
        return tuple(spatial), (1,) * nd, (0,) * nd, (1,) * nd
    out = []
    for i in range(nd):
        span = spatial[i] + 2 * pad[i] - kernel[i]
        if convention == "full":
            out.append(-(-span // stride[i]) + 1)
        else:
            out.append(span // stride[i] + 1)
    return tuple(kernel), tuple(stride), tuple(pad), tuple(out)


def _single_window(spatial, kernel, pad) -> bool:
    """One window covering the whole input, no padding (global pooling)."""
    return tuple(kernel) == tuple(spatial) and not any(pad)


def _non_overlapping(spatial, kernel, stride, pad, out) -> bool:
    """Windows that tile the input exactly: stride == kernel, no padding, no remainder."""
    return (not any(pad) and tuple(kernel) == tuple(stride)
            and all(o * k == s for o, k, s in zip(out, kernel, spatial, strict=True)))


def _padded(x, pad, out, kernel, stride, fill):
    """x padded so that every window (including `full` overhang) lies inside the buffer."""
    spatial = x.shape[2:]
    hi = [max(pad[i], (out[i] - 1) * stride[i] + kernel[i] - spatial[i] - pad[i])
          for i in range(len(spatial))]
    if not any(pad) and not any(hi):
        return x
    shape = x.shape[:2] + tuple(s + p + h for s, p, h in zip(spatial, pad, hi, strict=True))
    buf = _np.full(shape, fill, x.dtype)
    buf[(Ellipsis,) + tuple(slice(p, p + s) for p, s in zip(pad, spatial, strict=True))] = x
    return buf


def _windows(kernel, stride, out):
    """For each kernel offset (row-major), the strided slice of the padded input it reads."""
    for offset in itertools.product(*(range(k) for k in kernel)):
        yield (slice(None), slice(None)) + tuple(
            slice(o, o + s * (n - 1) + 1, s) for o, s, n in zip(offset, stride, out, strict=True))


def _divisor(spatial, kernel, stride, pad, out, count_include_pad):
    """What each average-pooling window divides by: a number, or an array of shape `out`."""
    counts = []
    for i in range(len(spatial)):
        start = _np.arange(out[i]) * stride[i] - pad[i]
        if count_include_pad:
            cnt = _np.minimum(start + kernel[i], spatial[i] + pad[i]) - start
        else:
            cnt = _np.minimum(start + kernel[i], spatial[i]) - _np.maximum(start, 0)
        counts.append(_np.maximum(cnt, 1))
    if all((c == kernel[i]).all() for i, c in enumerate(counts)):
        return float(_np.prod(kernel))
    div = counts[0]
    for c in counts[1:]:
        div = _np.multiply.outer(div, c)
    return div.astype(_np.float64)


def _fill_value(dtype):
    if dtype.kind == "f":
        return _np.finfo(dtype).min
    if dtype.kind in "iu":
        return _np.iinfo(dtype).min
    return False


def _out_dtype(dtype, pool_type):
    dtype = _np.dtype(dtype)
    if pool_type == "avg" and dtype.kind != "f":
        return _np.dtype(_np.float32)
    return dtype


# ----------------------------------------------------------------------------------------------
# NumPy kernels
# ----------------------------------------------------------------------------------------------

def _pool_forward(x, kernel, stride, pad, out, pool_type, count_include_pad):
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    dtype = _out_dtype(x.dtype, pool_type)
    nd = len(spatial)
    if _single_window(spatial, kernel, pad):
        flat = x.reshape(n, c, -1)
        if pool_type == "max":
            y = flat.max(axis=-1)
        else:
            y = flat.sum(axis=-1, dtype=dtype)
            if pool_type == "avg":
                y /= flat.shape[-1]
        return y.reshape((n, c) + (1,) * nd)
    fill = _fill_value(x.dtype) if pool_type == "max" else 0
    xp = _padded(x, pad, out, kernel, stride, fill)
    y = None
    for window in _windows(kernel, stride, out):
        v = xp[window]
        if y is None:
            y = v.astype(dtype, copy=True)
        elif pool_type == "max":
            _np.maximum(y, v, out=y)
        else:
            y += v
    if pool_type == "avg":
        div = _divisor(spatial, kernel, stride, pad, out, count_include_pad)
        if isinstance(div, float):
            y *= dtype.type(1.0 / div)
        else:
            y /= div.astype(dtype)
    return y


def _first_hits(xp, y, kernel, stride, out):
    """For each window slice, where it holds its window's maximum for the first time."""
    taken = None
    for window in _windows(kernel, stride, out):
        hit = xp[window] == y
        if taken is None:
            taken = hit.copy()
        else:
            hit &= ~taken
            taken |= hit
        yield window, hit


def _crop(buf, pad, spatial):
    if buf.shape[2:] == tuple(spatial):
        return buf
    crop = tuple(slice(p, p + s) for p, s in zip(pad, spatial, strict=True))
    return _np.ascontiguousarray(buf[(Ellipsis,) + crop])


def _pool_backward(g, x, y, kernel, stride, pad, out, pool_type, count_include_pad):
    """The input cotangent of pooling for output cotangent `g` (shape of y)."""
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    dtype = g.dtype
    if pool_type == "max":
        if _single_window(spatial, kernel, pad):
            idx = _np.argmax(x.reshape(n, c, -1), axis=-1)[..., None]
            gx = _np.zeros((n, c, _np.prod(spatial, dtype=int)), dtype)
            _np.put_along_axis(gx, idx, g.reshape(n, c, 1), axis=-1)
            return gx.reshape(x.shape)
        xp = _padded(x, pad, out, kernel, stride, _fill_value(x.dtype))
        gxp = _np.zeros(xp.shape, dtype)
        overlap = not _non_overlapping(spatial, kernel, stride, pad, out)
        for window, hit in _first_hits(xp, y, kernel, stride, out):
            if overlap:
                gxp[window] += g * hit
            else:
                _np.multiply(g, hit, out=gxp[window])
        return _crop(gxp, pad, spatial)
    if pool_type == "avg":
        div = _divisor(spatial, kernel, stride, pad, out, count_include_pad)
        gd = g * dtype.type(1.0 / div) if isinstance(div, float) else g / div.astype(dtype)
    else:
        gd = g
    if _single_window(spatial, kernel, pad):
        gx = _np.empty(x.shape, dtype)
        gx[...] = gd
        return gx
    if _non_overlapping(spatial, kernel, stride, pad, out):
        # every input element in exactly one window: one strided write per kernel offset
        gx = _np.empty(x.shape, dtype)
        for window in _windows(kernel, stride, out):
            gx[window] = gd
        return gx
    padded = _padded(_np.empty((1, 1) + tuple(spatial), dtype), pad, out, kernel, stride, 0)
    gxp = _np.zeros((n, c) + padded.shape[2:], dtype)
    for window in _windows(kernel, stride, out):
        gxp[window] += gd
    return _crop(gxp, pad, spatial)


def _max_gather(ct, x, y, kernel, stride, pad, out):
    """ct (shape of x) read at the position each max-pooling window sends its gradient to."""
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    if _single_window(spatial, kernel, pad):
        idx = _np.argmax(x.reshape(n, c, -1), axis=-1)[..., None]
        return _np.take_along_axis(ct.reshape(n, c, -1), idx, axis=-1).reshape(y.shape)
    xp = _padded(x, pad, out, kernel, stride, _fill_value(x.dtype))
    cp = _padded(ct, pad, out, kernel, stride, 0)
    res = _np.zeros(y.shape, ct.dtype)
    for window, hit in _first_hits(xp, y, kernel, stride, out):
        res += cp[window] * hit
    return res


# ----------------------------------------------------------------------------------------------
# operators
# ----------------------------------------------------------------------------------------------

_POOL_ATTRS = {"kernel": (), "pool_type": "max", "global_pool": False, "stride": (), "pad": (),
               "pooling_convention": "valid", "count_include_pad": True, "layout": None}


def _geometry_of(x_shape, kernel, stride, pad, global_pool, pooling_convention):
    return pool_geometry(tuple(x_shape[2:]), kernel, stride, pad, global_pool,
                         pooling_convention)


_F32 = _np.dtype(_np.float32)
_NATIVE_TYPES = {"max": 0, "avg": 1, "sum": 2}     # enum kiln_pool


def _native_pool(x, k, s, p, out, pool_type, count_include_pad, g=None, y=None):
    """1-D or 2-D float32 pooling (g None) or its gradient in the kernel library
    (kiln_pool2d_f32 and its backward), or None where it does not apply. Eagerly the NumPy
    loops over the window's offsets took 7 of 44 ms of a LeNet training step at batch 256."""
    nd = len(k)
    if nd not in (1, 2) or x.dtype is not _F32 or (g is not None and g.dtype is not _F32) or \
            _native.function("pool2d_f32") is None:
        return None     # (before the copies below: without native code they would be waste)
    geometry = (x.shape[0], x.shape[1], *as_2d(x.shape[2:], 1), *as_2d(k, 1), *as_2d(s, 1),
                *as_2d(p, 0), *as_2d(out, 1))           # 1-D as 2-D pooling of one row
    r = _native.call("pool2d_f32", geometry, _NATIVE_TYPES[pool_type],
                     int(bool(count_include_pad)), _np.ascontiguousarray(x),
                     None if g is None else _np.ascontiguousarray(g),
                     None if y is None else _np.ascontiguousarray(y))
    if r is None or nd == 2:
        return r
    return r.reshape(r.shape[:2] + r.shape[3:])


class Pooling(Op):
    """Max, average or sum pooling over windows of `kernel` (see the module docstring)."""

    name = "pooling"
    mx_name = "Pooling"
    attrs = dict(_POOL_ATTRS)
    save_outputs = True   # max pooling's gradient compares the input with the output

    def impl(x, *, kernel, pool_type, global_pool, stride, pad, pooling_convention,
             count_include_pad, layout):
        Pooling.infer(x, kernel=kernel, pool_type=pool_type, global_pool=global_pool,
                      stride=stride, pad=pad, pooling_convention=pooling_convention,
                      count_include_pad=count_include_pad, layout=layout)
        k, s, p, out = _geometry_of(x.shape, kernel, stride, pad, global_pool,
                                    pooling_convention)
        y = _native_pool(x, k, s, p, out, pool_type, count_include_pad)
        if y is not None:
            return y
        return _pool_forward(x, k, s, p, out, pool_type, count_include_pad)

    def infer(x, *, kernel, pool_type, global_pool, stride, pad, pooling_convention,
              count_include_pad, layout):
        check_layout(layout, len(x.shape), "pooling")
        nd = len(x.shape) - 2
        if pool_type not in _POOL_TYPES:
            raise KilnError(f"pooling: pool_type {pool_type!r} is not one of {_POOL_TYPES}")
        if pooling_convention not in _CONVENTIONS:
            raise KilnError(f"pooling: pooling_convention {pooling_convention!r} is not one "
                            f"of {_CONVENTIONS}")
        if not global_pool:
            for name, vals, low in (("kernel", kernel, 1), ("stride", stride, 1),
                                    ("pad", pad, 0)):
                if len(vals) != nd or any(v < low for v in vals):
                    raise ShapeError(f"pooling: {name}={tuple(vals)} for data of shape "
                                     f"{tuple(x.shape)} needs {nd} entries, each at least "
                                     f"{low}")
            for i in range(nd):
                if kernel[i] > x.shape[2 + i] + 2 * pad[i]:
                    raise ShapeError(f"pooling: kernel {tuple(kernel)} is larger than the "
                                     f"padded input along axis {i + 2} of data "
                                     f"{tuple(x.shape)} (pad {tuple(pad)}); use a smaller "
                                     "kernel, more padding or global_pool=True")
        _, _, _, out = _geometry_of(x.shape, kernel, stride, pad, global_pool,
                                    pooling_convention)
        return Aval(tuple(x.shape[:2]) + out, _out_dtype(x.dtype, pool_type))

    def grad(inputs, outputs, cts, **attrs):
        return (apply(PoolingBackward, (cts[0], inputs[0], outputs[0]), attrs),)


class PoolingBackward(Op):
    """The gradient of `pooling`: input cotangent from the output cotangent `grad`, the
    pooling input `data` and its output `output` (MXNet's _backward_Pooling)."""

    name = "pooling_backward"
    mx_name = "_kiln_pooling_backward"
    attrs = dict(_POOL_ATTRS)
    inputs = ("grad", "data", "output")

    def impl(g, x, y, *, kernel, pool_type, global_pool, stride, pad, pooling_convention,
             count_include_pad, layout):
        k, s, p, out = _geometry_of(x.shape, kernel, stride, pad, global_pool,
                                    pooling_convention)
        dx = _native_pool(x, k, s, p, out, pool_type, count_include_pad, g, y)
        if dx is not None:
            return dx
        return _pool_backward(g, x, y, k, s, p, out, pool_type, count_include_pad)

    def infer(g, x, y, **attrs):
        return Aval(tuple(x.shape), g.dtype)

    def grad(inputs, outputs, cts, **attrs):
        # Linear in `grad`; piecewise constant (zero almost everywhere) in data and output.
        if attrs["pool_type"] == "max":
            gg = apply(PoolingMaxGather, (cts[0], inputs[1], inputs[2]), attrs)
        else:
            gg = apply(Pooling, (cts[0],), attrs)
        return (gg, None, None)


class PoolingMaxGather(Op):
    """`ct` (shaped like max pooling's input) at the positions the pooling of `data` sends its
    gradient to: the adjoint of max pooling's backward in its output cotangent."""

    name = "pooling_max_gather"
    mx_name = "_kiln_pooling_max_gather"
    attrs = dict(_POOL_ATTRS)
    inputs = ("data", "pool_data", "pool_output")

    def impl(ct, x, y, *, kernel, pool_type, global_pool, stride, pad, pooling_convention,
             count_include_pad, layout):
        k, s, p, out = _geometry_of(x.shape, kernel, stride, pad, global_pool,
                                    pooling_convention)
        return _max_gather(ct, x, y, k, s, p, out)

    def infer(ct, x, y, **attrs):
        return Aval(tuple(y.shape), ct.dtype)

    def grad(inputs, outputs, cts, **attrs):
        return (apply(PoolingBackward, (cts[0], inputs[1], inputs[2]), attrs), None, None)


# ----------------------------------------------------------------------------------------------
# functional front (npx)
# ----------------------------------------------------------------------------------------------

def pooling(data, kernel=None, pool_type: str = "max", global_pool: bool = False,
            stride=None, pad=None, pooling_convention: str = "valid",
            count_include_pad: bool = True, layout=None, p_value=None, **_mxnet_only):
    """Pooling over windows of `kernel` (MXNet's Pooling). `stride` defaults to 1 and `pad` to
    0, as in MXNet (Gluon's pooling layers pass stride=kernel). `pool_type='lp'` computes
    (sum over the window of x**p_value) ** (1/p_value) for p_value 1, 2 or 3."""
    ndim = len(data.shape)
    nd = ndim - 2
    if nd not in _LAYOUTS:
        raise ShapeError(f"pooling: data must have 3, 4 or 5 dimensions (N, C, spatial...), "
                         f"not {ndim} (shape {tuple(data.shape)})")
    if pool_type == "lp":
        return _lp_pooling(data, kernel, global_pool, stride, pad, pooling_convention,
                           count_include_pad, layout, p_value)
    if pool_type not in _POOL_TYPES:
        raise KilnError(f"pooling: pool_type {pool_type!r} is not one of "
                        f"{_POOL_TYPES + ('lp',)}")
    if kernel is None and not global_pool:
        raise KilnError("pooling: give a kernel, or global_pool=True")
    attrs = {
        "kernel": () if kernel is None else spatial_tuple(kernel, nd, "kernel", "pooling", 1),
        "pool_type": pool_type,
        "global_pool": bool(global_pool),
        "stride": spatial_tuple(stride, nd, "stride", "pooling", 1),
        "pad": spatial_tuple(pad, nd, "pad", "pooling", 0),
        "pooling_convention": str(pooling_convention),
        "count_include_pad": bool(count_include_pad),
        "layout": layout,
    }
    return apply(Pooling, (data,), attrs)


def _lp_pooling(data, kernel, global_pool, stride, pad, pooling_convention, count_include_pad,
                layout, p_value):
    p = 2 if p_value is None else p_value
    if p not in (1, 2, 3):
        raise KilnError(f"pooling: Lp pooling supports p_value 1, 2 or 3 (as MXNet), not "
                        f"{p_value!r}")
    powered = data if p == 1 else (data * data if p == 2 else data * data * data)
    total = pooling(powered, kernel, "sum", global_pool, stride, pad, pooling_convention,
                    count_include_pad, layout)
    if p == 1:
        return total
    return _ew.sqrt(total) if p == 2 else _ew.cbrt(total)
