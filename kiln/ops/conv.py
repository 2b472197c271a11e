
"""Convolution operators of `kiln.npx`: convolution, deconvolution (transposed convolution) and the
weight gradient of convolution, for 1-D, 2-D and 3-D data in channel-first layout (NCW, NCHW,
NCDHW), with strides, dilation, zero padding and groups.

The three operators are the three faces of one bilinear map. With ``conv(x, w)`` the convolution,
``deconv(g, w)`` the transposed convolution and ``wgrad(x, g)`` the weight gradient, for every x, w
and g of fitting shapes

    <conv(x, w), g> = <x, deconv(g, w)> = <w, wgrad(x, g)>

so each operator's gradient is written with the other two, and gradients of any order follow.

The NumPy work (im2col, one BLAS matrix product per chunk, col2im) is in `im2col.py`; this
module holds the operators, their checks and their gradients.
"""

from __future__ import annotations

import numpy as _np

from ..base import KilnError, ShapeError
from ..ndarray import apply, is_array
from .registry import Aval, Op
from . import _native
from . import im2col as _im2col
from . import reduce as _reduce

__all__ = ["convolution", "deconvolution", "convolution_weight_grad"]

_LAYOUTS = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


# ----------------------------------------------------------------------------------------------
# geometry
# ----------------------------------------------------------------------------------------------

def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def spatial_tuple(value, nd: int, what: str, op: str, default: int) -> tuple:
    """`value` (None, an int or a sequence) as a tuple of `nd` ints."""
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return (default,) * nd
    if isinstance(value, (int, _np.integer)):
        return (int(value),) * nd
    out = tuple(int(v) for v in value)
    if len(out) != nd:
        raise ShapeError(f"{op}: {what}={tuple(value)} has {len(out)} entries; a {nd}-D "
                         f"{op} (kernel {nd}-D) needs {nd}")
    return out


def check_layout(layout, ndim: int, op: str) -> None:
    """Only channel-first layouts are implemented; say so clearly for the others."""
    nd = ndim - 2
    if nd not in _LAYOUTS:
        raise ShapeError(f"{op}: data must have 3, 4 or 5 dimensions (N, C, spatial...), "
                         f"not {ndim}")
    if layout is not None and layout != _LAYOUTS[nd]:
        raise KilnError(f"{op}: layout {layout!r} is not supported; kiln computes in "
                        f"channel-first layout {_LAYOUTS[nd]!r}. Transpose the data (and weight) "
                        "to channel-first, or pass layout=None")


conv_out_size = _im2col.out_size


def _deconv_pad_adj(in_sizes, kernel, stride, dilate, pad, adj, target_shape):
    """The (pad, adj) a deconvolution uses: given, or derived from `target_shape` as MXNet does."""
    if not target_shape:
        return pad, adj
    pads, adjs = [], []
    for i, t in enumerate(target_shape):
        full = stride[i] * (in_sizes[i] - 1) + dilate[i] * (kernel[i] - 1) + 1
        total = full - t
        if total < 0:
            raise ShapeError(f"deconvolution: target_shape {tuple(target_shape)} is larger than "
                             f"the largest output {full} this input allows along axis {i + 2}")
        pads.append((total + 1) // 2)
        adjs.append(total % 2)
    return tuple(pads), tuple(adjs)


def deconv_out_size(size: int, k: int, s: int, d: int, p: int, a: int) -> int:
    return s * (size - 1) + d * (k - 1) + 1 - 2 * p + a


def _wants_grad(x) -> bool:
    """Whether anybody can use a cotangent for `x`.

    NOTE: eager autograd drops cotangents of arrays that are neither recorded results nor
    variables, so computing them is wasted work (for a first convolution, its data gradient
    costs as much as the weight gradient). Symbols and recorded arrays always want one.
    """
    if not is_array(x):
        return True
    return x._node is not None or x._grad_req is not None


# ----------------------------------------------------------------------------------------------
# operators
# ----------------------------------------------------------------------------------------------

_CONV_ATTRS = {"kernel": (), "stride": (), "dilate": (), "pad": (), "num_filter": 0,
               "num_group": 1, "no_bias": False, "layout": None}


def _check_group_split(op, c, f, groups, data_shape, what_f="num_filter"):
    if groups < 1:
        raise ShapeError(f"{op}: num_group must be at least 1, not {groups}")
    if c % groups:
        raise ShapeError(f"{op}: {c} input channels (data {tuple(data_shape)}) do not split "
                         f"into num_group={groups} groups; make the channels a multiple of "
                         "num_group")
    if f % groups:
        raise ShapeError(f"{op}: {what_f}={f} does not split into num_group={groups} groups; "
                         "make it a multiple of num_group")


def _check_spatial(op, x, kernel, stride, dilate, pad):
    nd = len(x.shape) - 2
    if len(kernel) != nd:
        raise ShapeError(f"{op}: a {len(kernel)}-D kernel {tuple(kernel)} for data of shape "
                         f"{tuple(x.shape)} ({nd} spatial axes); give a {nd}-D kernel")
    for name, vals, low in (("kernel", kernel, 1), ("stride", stride, 1),
                            ("dilate", dilate, 1), ("pad", pad, 0)):
        if len(vals) != nd or any(v < low for v in vals):
            raise ShapeError(f"{op}: {name}={tuple(vals)} must have {nd} entries, each at "
                             f"least {low}")


# ----------------------------------------------------------------------------------------------
# the kernel library's convolution, for 1-D and 2-D float32 data
# ----------------------------------------------------------------------------------------------

_F32 = _np.dtype(_np.float32)


def as_2d(values, fill: int) -> tuple:
    """A 1-D geometry as the 2-D one of a single row: `fill` (1 for sizes, 0 for padding)
    before a lone value."""
    return (fill,) * (2 - len(values)) + tuple(values)


def _native_conv(mode: int, a, b, bias, data_shape, num_filter, out_spatial, kernel, stride,
                 dilate, pad, groups):
    """The convolution (mode 0), its data gradient (1) or weight gradient (2) in the kernel
    library (kiln_conv2d_f32 and its two gradients), or None where it does not apply: another
    dtype or layout, 3-D data, no native code. `data_shape` is the convolution's input shape and
    `out_spatial` its output's spatial shape, whichever the mode. Eagerly the NumPy engine
    (im2col, a BLAS product, col2im) took 25 of 44 ms of a LeNet training step at batch 256."""
    nd = len(kernel)
    if nd not in (1, 2) or a.dtype is not _F32 or b.dtype is not _F32 or \
            (bias is not None and bias.dtype is not _F32) or _native.function("conv2d_f32") is None:
        return None     # (before the copies below: without native code they would be waste)
    geometry = (data_shape[0], data_shape[1], *as_2d(data_shape[2:], 1), num_filter,
                *as_2d(kernel, 1), *as_2d(stride, 1), *as_2d(pad, 0), *as_2d(dilate, 1), groups,
                *as_2d(out_spatial, 1))
    out = _native.call("conv2d_f32", mode, geometry, _np.ascontiguousarray(a),
                       _np.ascontiguousarray(b),
                       None if bias is None else _np.ascontiguousarray(bias))
    if out is None or nd == 2:
        return out
    return out.reshape(out.shape[:2] + out.shape[3:])     # drop the row axis again


class Convolution(Op):
    """N-D convolution (cross-correlation, as every framework computes it) with groups.

    data (N, C, *spatial), weight (num_filter, C/num_group, *kernel), bias (num_filter,);
    out[i] = floor((spatial[i] + 2*pad[i] - dilate[i]*(kernel[i]-1) - 1) / stride[i]) + 1.
    """

    name = "convolution"
    mx_name = "Convolution"
    attrs = dict(_CONV_ATTRS)
    inputs = ("data", "weight", "bias")

    def impl(x, w, b=None, *, kernel, stride, dilate, pad, num_filter, num_group, no_bias,
             layout):
        Convolution.infer(x, w, b, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                          num_filter=num_filter, num_group=num_group, no_bias=no_bias,
                          layout=layout)   # NumPy would not catch every mismatch
        out = tuple(conv_out_size(x.shape[2 + i], kernel[i], stride[i], dilate[i], pad[i])
                    for i in range(len(kernel)))
        y = _native_conv(0, x, w, b, x.shape, num_filter, out, kernel, stride, dilate, pad,
                         num_group)
        if y is not None:
            return y
        return _im2col.conv_forward(x, w, b, kernel, stride, dilate, pad, num_group)

    def infer(x, w, b=None, *, kernel, stride, dilate, pad, num_filter, num_group, no_bias,
              layout):
        op = "convolution"
        check_layout(layout, len(x.shape), op)
        _check_spatial(op, x, kernel, stride, dilate, pad)
        c = x.shape[1]
        _check_group_split(op, c, num_filter, num_group, x.shape)
        expected = (num_filter, c // num_group) + tuple(kernel)
        if tuple(w.shape) != expected:
            raise ShapeError(f"convolution: weight of shape {tuple(w.shape)} for data "
                             f"{tuple(x.shape)}; expected (num_filter, channels/num_group, "
                             f"*kernel) = {expected}")
        if b is not None and tuple(b.shape) != (num_filter,):
            raise ShapeError(f"convolution: bias of shape {tuple(b.shape)}, expected "
                             f"({num_filter},)")
        out = []
        for i in range(len(kernel)):
            size = x.shape[2 + i]
            o = conv_out_size(size, kernel[i], stride[i], dilate[i], pad[i])
            if o < 1:
                raise ShapeError(
                    f"convolution: the dilated kernel ({dilate[i] * (kernel[i] - 1) + 1}) is "
                    f"larger than the padded input ({size} + 2*{pad[i]}) along axis {i + 2} "
                    f"of data {tuple(x.shape)}; use a smaller kernel or more padding")
            out.append(o)
        dtype = _np.result_type(x.dtype, w.dtype)
        return Aval((x.shape[0], num_filter) + tuple(out),
                    dtype if dtype.kind == "f" else _np.dtype(_np.float32))

    def grad(inputs, outputs, cts, *, kernel, stride, dilate, pad, num_filter, num_group,
             no_bias, layout):
        x, w = inputs[0], inputs[1]
        g = cts[0]
        geometry = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
                    "num_group": num_group, "layout": layout}
        gx = gw = gb = None
        if _wants_grad(x):
            adj = tuple(x.shape[2 + i] + 2 * pad[i] - (stride[i] * (g.shape[2 + i] - 1)
                        + dilate[i] * (kernel[i] - 1) + 1) for i in range(len(kernel)))
            gx = deconvolution(g, w, adj=adj, num_filter=x.shape[1], no_bias=True, **geometry)
        if _wants_grad(w):
            gw = convolution_weight_grad(x, g, num_filter=num_filter, **geometry)
        if len(inputs) > 2 and inputs[2] is not None and _wants_grad(inputs[2]):
            gb = _reduce.sum(g, axis=(0,) + tuple(range(2, len(g.shape))))
        return (gx, gw, gb) if len(inputs) > 2 else (gx, gw)


class Deconvolution(Op):
    """Transposed convolution: the adjoint of `convolution` in its data, plus a bias.

    data (N, C, *spatial), weight (C, num_filter/num_group, *kernel), bias (num_filter,);
    out[i] = stride[i]*(spatial[i]-1) + dilate[i]*(kernel[i]-1) + 1 - 2*pad[i] + adj[i].
    With `target_shape`, pad and adj are chosen to give that output size (MXNet's rule).
    """

    name = "deconvolution"
    mx_name = "Deconvolution"
    attrs = {"kernel": (), "stride": (), "dilate": (), "pad": (), "adj": (),
             "target_shape": (), "num_filter": 0, "num_group": 1, "no_bias": True,
             "layout": None}
    inputs = ("data", "weight", "bias")

    def impl(x, w, b=None, *, kernel, stride, dilate, pad, adj, target_shape, num_filter,
             num_group, no_bias, layout):
        Deconvolution.infer(x, w, b, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                            adj=adj, target_shape=target_shape, num_filter=num_filter,
                            num_group=num_group, no_bias=no_bias, layout=layout)
        pad, adj = _deconv_pad_adj(x.shape[2:], kernel, stride, dilate, pad, adj, target_shape)
        nd = len(kernel)
        out = tuple(deconv_out_size(x.shape[2 + i], kernel[i], stride[i], dilate[i], pad[i],
                                    adj[i]) for i in range(nd))
        # the data gradient of the convolution of (N, C_out, *out) data into x's shape
        y = _native_conv(1, x, w, None, (x.shape[0], num_filter) + out, x.shape[1],
                         x.shape[2:], kernel, stride, dilate, pad, num_group)
        if y is None:
            y = _im2col.conv_data_grad(x, w, out, kernel, stride, dilate, pad, num_group)
        if b is not None:
            y += b.astype(y.dtype, copy=False).reshape((num_filter,) + (1,) * nd)
        return y

    def infer(x, w, b=None, *, kernel, stride, dilate, pad, adj, target_shape, num_filter,
              num_group, no_bias, layout):
        op = "deconvolution"
        check_layout(layout, len(x.shape), op)
        _check_spatial(op, x, kernel, stride, dilate, pad)
        nd = len(kernel)
        c = x.shape[1]
        _check_group_split(op, c, num_filter, num_group, x.shape)
        expected = (c, num_filter // num_group) + tuple(kernel)
        if tuple(w.shape) != expected:
            raise ShapeError(f"deconvolution: weight of shape {tuple(w.shape)} for data "
                             f"{tuple(x.shape)}; expected (channels, num_filter/num_group, "
                             f"*kernel) = {expected}")
        if b is not None and tuple(b.shape) != (num_filter,):
            raise ShapeError(f"deconvolution: bias of shape {tuple(b.shape)}, expected "
                             f"({num_filter},)")
        if target_shape and len(target_shape) != nd:
            raise ShapeError(f"deconvolution: target_shape {tuple(target_shape)} needs {nd} "
                             "entries")
        pad, adj = _deconv_pad_adj(x.shape[2:], kernel, stride, dilate, pad, adj, target_shape)
        if len(adj) != nd:
            raise ShapeError(f"deconvolution: adj={tuple(adj)} needs {nd} entries")
        out = []
        for i in range(nd):
            if not 0 <= adj[i] < stride[i]:
                raise ShapeError(f"deconvolution: adj={tuple(adj)} must be smaller than the "
                                 f"stride {tuple(stride)} along every axis")
            o = deconv_out_size(x.shape[2 + i], kernel[i], stride[i], dilate[i], pad[i], adj[i])
            if o < 1:
                raise ShapeError(f"deconvolution: pad={tuple(pad)} crops the whole output "
                                 f"along axis {i + 2} of data {tuple(x.shape)}")
            out.append(o)
        dtype = _np.result_type(x.dtype, w.dtype)
        return Aval((x.shape[0], num_filter) + tuple(out),
                    dtype if dtype.kind == "f" else _np.dtype(_np.float32))

    def grad(inputs, outputs, cts, *, kernel, stride, dilate, pad, adj, target_shape,
             num_filter, num_group, no_bias, layout):
        x, w = inputs[0], inputs[1]
        g = cts[0]
        pad, adj = _deconv_pad_adj(x.shape[2:], kernel, stride, dilate, pad, adj, target_shape)
        geometry = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
                    "num_group": num_group, "layout": layout}
        gx = gw = gb = None
        if _wants_grad(x):
            gx = convolution(g, w, num_filter=x.shape[1], no_bias=True, **geometry)
        if _wants_grad(w):
            gw = convolution_weight_grad(g, x, num_filter=x.shape[1], **geometry)
        if len(inputs) > 2 and inputs[2] is not None and _wants_grad(inputs[2]):
            gb = _reduce.sum(g, axis=(0,) + tuple(range(2, len(g.shape))))
        return (gx, gw, gb) if len(inputs) > 2 else (gx, gw)


class ConvolutionWeightGrad(Op):
    """The weight cotangent of `convolution`: wgrad(data, grad) of shape
    (num_filter, C/num_group, *kernel), bilinear in data (N, C, *spatial) and grad
    (N, num_filter, *out)."""

    name = "convolution_weight_grad"
    mx_name = "_kiln_convolution_weight_grad"
    attrs = {"kernel": (), "stride": (), "dilate": (), "pad": (), "num_filter": 0,
             "num_group": 1, "layout": None}
    inputs = ("data", "grad")

    def impl(x, g, *, kernel, stride, dilate, pad, num_filter, num_group, layout):
        ConvolutionWeightGrad.infer(x, g, kernel=kernel, stride=stride, dilate=dilate, pad=pad,
                                    num_filter=num_filter, num_group=num_group, layout=layout)
        dw = _native_conv(2, x, g, None, x.shape, num_filter, g.shape[2:], kernel, stride,
                          dilate, pad, num_group)
        if dw is not None:
            return dw
        return _im2col.conv_weight_grad(x, g, kernel, stride, dilate, pad, num_group)

    def infer(x, g, *, kernel, stride, dilate, pad, num_filter, num_group, layout):
        op = "convolution_weight_grad"
        check_layout(layout, len(x.shape), op)
        _check_spatial(op, x, kernel, stride, dilate, pad)
        c = x.shape[1]
        _check_group_split(op, c, num_filter, num_group, x.shape)
        out = tuple(conv_out_size(x.shape[2 + i], kernel[i], stride[i], dilate[i], pad[i])
                    for i in range(len(kernel)))
        if tuple(g.shape) != (x.shape[0], num_filter) + out:
            raise ShapeError(f"convolution_weight_grad: grad of shape {tuple(g.shape)} for "
                             f"data {tuple(x.shape)}; expected {(x.shape[0], num_filter) + out}")
        return Aval((num_filter, c // num_group) + tuple(kernel),
                    _np.result_type(x.dtype, g.dtype))

    def grad(inputs, outputs, cts, *, kernel, stride, dilate, pad, num_filter, num_group,
             layout):
        x, g = inputs
        c = cts[0]
        geometry = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
                    "num_group": num_group, "layout": layout}
        gx = gg = None
        if _wants_grad(x):
            adj = tuple(x.shape[2 + i] + 2 * pad[i] - (stride[i] * (g.shape[2 + i] - 1)
                        + dilate[i] * (kernel[i] - 1) + 1) for i in range(len(kernel)))
            gx = deconvolution(g, c, adj=adj, num_filter=x.shape[1], no_bias=True, **geometry)
        if _wants_grad(g):
            gg = convolution(x, c, num_filter=num_filter, no_bias=True, **geometry)
        return (gx, gg)


# ----------------------------------------------------------------------------------------------
# functional fronts (npx)
# ----------------------------------------------------------------------------------------------

def _geometry(op, data_ndim, kernel, stride, dilate, pad):
    nd = data_ndim - 2
    if nd not in _LAYOUTS:
        raise ShapeError(f"{op}: data must have 3, 4 or 5 dimensions (N, C, spatial...), "
                         f"not {data_ndim}")
    kernel = spatial_tuple(kernel, nd, "kernel", op, 1)
    return (kernel, spatial_tuple(stride, nd, "stride", op, 1),
            spatial_tuple(dilate, nd, "dilate", op, 1), spatial_tuple(pad, nd, "pad", op, 0))


def convolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                num_filter=None, num_group: int = 1, no_bias: bool = False, layout=None,
                **_mxnet_only):
    """N-D convolution (MXNet's Convolution): data (N, C, *spatial), weight
    (num_filter, C/num_group, *kernel). `kernel` and `num_filter` default to the weight's."""
    if kernel is None:
        kernel = tuple(weight.shape[2:])
    kernel, stride, dilate, pad = _geometry("convolution", len(data.shape), kernel, stride,
                                            dilate, pad)
    if num_filter is None:
        num_filter = weight.shape[0]
    no_bias = bool(no_bias or bias is None)
    attrs = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
             "num_filter": int(num_filter), "num_group": int(num_group), "no_bias": no_bias,
             "layout": layout}
    args = (data, weight) if no_bias else (data, weight, bias)
    return apply(Convolution, args, attrs)


def deconvolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                  adj=None, target_shape=None, num_filter=None, num_group: int = 1,
                  no_bias: bool = True, layout=None, **_mxnet_only):
    """N-D transposed convolution (MXNet's Deconvolution): data (N, C, *spatial), weight
    (C, num_filter/num_group, *kernel). Like MXNet, it ignores `bias` unless no_bias=False."""
    if kernel is None:
        kernel = tuple(weight.shape[2:])
    kernel, stride, dilate, pad = _geometry("deconvolution", len(data.shape), kernel, stride,
                                            dilate, pad)
    nd = len(kernel)
    adj = spatial_tuple(adj, nd, "adj", "deconvolution", 0)
    target_shape = () if not target_shape else spatial_tuple(target_shape, nd, "target_shape",
                                                               "deconvolution", 0)
    if num_filter is None:
        num_filter = weight.shape[1] * int(num_group)
    no_bias = bool(no_bias or bias is None)
    attrs = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad, "adj": adj,
             "target_shape": target_shape, "num_filter": int(num_filter),
             "num_group": int(num_group), "no_bias": no_bias, "layout": layout}
    args = (data, weight) if no_bias else (data, weight, bias)
    return apply(Deconvolution, args, attrs)


def convolution_weight_grad(data, grad, kernel=None, stride=None, dilate=None, pad=None,
                            num_filter=None, num_group: int = 1, layout=None):
    """The gradient of convolution(data, w) with respect to w, for output cotangent `grad`."""
    kernel, stride, dilate, pad = _geometry("convolution_weight_grad", len(data.shape), kernel,
                                            stride, dilate, pad)
    if num_filter is None:
        num_filter = grad.shape[1]
    attrs = {"kernel": kernel, "stride": stride, "dilate": dilate, "pad": pad,
             "num_filter": int(num_filter), "num_group": int(num_group), "layout": layout}
    return apply(ConvolutionWeightGrad, (data, grad), attrs)
