# ruff: noqa: N805  (operator methods take no self: Op.__init_subclass__ makes them static)
"""More neural-network operators of `kiln.npx`: LeakyReLU and its relatives (ELU, SELU, GELU,
PReLU), erf, SequenceMask, topk, GroupNorm, InstanceNorm, smooth_l1, masked_softmax,
arange_like, and MXNet's reshape with special codes.
"""

from __future__ import annotations

import math

import numpy as _np
from numpy.polynomial import chebyshev as _cheb

from ..base import KilnError, ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import nn as _nn
from . import reduce as _reduce
from . import shape as _shape


def _float(dtype) -> _np.dtype:
    dtype = _np.dtype(dtype)
    return dtype if dtype.kind == "f" else _np.dtype(_np.float32)


# ----------------------------------------------------------------------------------------------
# erf
# ----------------------------------------------------------------------------------------------
# NumPy has no erf. On [0, 2], erf(x)/x is a smooth function of x*x; on [2, 6],
# exp(x*x) * erfc(x) is smooth and slowly varying; past 6, erf is 1 to double precision.
# Both are interpolated at Chebyshev points from Python's math.erf/erfc when kiln loads
# (degree 18 each, max abs error about 1e-15 against math.erf).

def _erf_over_x(s):
    x = _np.sqrt(2.0 * (s + 1.0))        # s in [-1, 1] <-> x*x in [0, 4]
    safe = _np.where(x > 0, x, 1.0)
    ratio = _np.array([math.erf(v) for v in safe.ravel()]).reshape(safe.shape) / safe
    return _np.where(x > 0, ratio, 2.0 / math.sqrt(math.pi))


def _erfcx(s):
    x = 4.0 + 2.0 * s                    # s in [-1, 1] <-> x in [2, 6]
    return _np.array([math.erfc(v) * math.exp(v * v) for v in _np.ravel(x)]).reshape(x.shape)


_ERF_SMALL = _cheb.chebinterpolate(_erf_over_x, 18)
_ERF_LARGE = _cheb.chebinterpolate(_erfcx, 18)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf_numpy(x):
    """erf of a NumPy array, to about 1e-15 (float64) or float32 rounding (float32)."""
    x = _np.asarray(x)
    dtype = _float(x.dtype)
    x = x.astype(dtype, copy=False)
    ax = _np.abs(x)
    out = _np.empty_like(x)
    small = ax < 2.0
    xs = x[small]
    out[small] = xs * _cheb.chebval(xs * xs * dtype.type(0.5) - dtype.type(1.0),
                                    _ERF_SMALL.astype(dtype))
    mid = ~small & (ax < 6.0)
    if mid.any():
        xm = ax[mid]
        tail = _np.exp(-xm * xm) * _cheb.chebval((xm - dtype.type(4.0)) * dtype.type(0.5),
                                                 _ERF_LARGE.astype(dtype))
        out[mid] = _np.copysign(1.0 - tail, x[mid])
    big = ax >= 6.0
    if big.any():
        out[big] = _np.sign(x[big])
    nan = _np.isnan(x)
    if nan.any():
        out[nan] = _np.nan
    return out


class Erf(Op):
    """The error function, elementwise."""

    name = "erf"
    mx_name = "erf"

    def impl(x):
        return erf_numpy(x)

    def infer(x):
        return Aval(x.shape, _float(x.dtype))

    def grad(inputs, outputs, cts):
        x = inputs[0]
        return (cts[0] * _ew.exp(-(x * x)) * _TWO_OVER_SQRT_PI,)


def erf(data):
    """The error function, elementwise."""
    return apply(Erf, (data,))


# ----------------------------------------------------------------------------------------------
# LeakyReLU family
# ----------------------------------------------------------------------------------------------

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_LEAKY_TYPES = ("leaky", "elu", "selu", "gelu", "prelu")


def _prelu_gamma_shape(x_shape, gamma_shape):
    """gamma broadcast against data: per channel (axis 1) or a single slope."""
    if tuple(gamma_shape) in ((1,), ()):
        return tuple(gamma_shape)
    return (gamma_shape[0],) + (1,) * (len(x_shape) - 2)


class LeakyReLU(Op):
    """MXNet's LeakyReLU: leaky (x or slope*x), elu (slope*(exp(x)-1) below 0), selu, gelu
    (x * Phi(x), with erf) and prelu (a learned slope `gamma` per channel)."""

    name = "leaky_relu"
    mx_name = "LeakyReLU"
    attrs = {"act_type": "leaky", "slope": 0.25, "lower_bound": 0.125, "upper_bound": 0.334}
    inputs = ("data", "gamma")

    def impl(x, gamma=None, *, act_type, slope, lower_bound, upper_bound):
        if act_type == "prelu":
            LeakyReLU.infer(x, gamma, act_type=act_type, slope=slope, lower_bound=lower_bound,
                            upper_bound=upper_bound)
        dtype = _float(x.dtype)
        x = x.astype(dtype, copy=False)
        s = dtype.type(slope)
        if act_type == "leaky":
            return _np.where(x > 0, x, x * s)
        if act_type == "elu":
            return _np.where(x > 0, x, s * _np.expm1(_np.minimum(x, 0)))
        if act_type == "selu":
            neg = dtype.type(_SELU_ALPHA) * _np.expm1(_np.minimum(x, 0))
            return dtype.type(_SELU_LAMBDA) * _np.where(x > 0, x, neg)
        if act_type == "gelu":
            return dtype.type(0.5) * x * (1 + erf_numpy(x * dtype.type(_SQRT_HALF)))
        g = gamma.astype(dtype, copy=False).reshape(_prelu_gamma_shape(x.shape, gamma.shape))
        return _np.where(x > 0, x, x * g)

    def infer(x, gamma=None, *, act_type, slope, lower_bound, upper_bound):
        if act_type not in _LEAKY_TYPES:
            raise KilnError(f"leaky_relu: act_type {act_type!r} is not supported; choose one of "
                            f"{_LEAKY_TYPES} (rrelu is not implemented)")
        if act_type == "prelu":
            if gamma is None:
                raise ShapeError("leaky_relu: act_type='prelu' needs gamma (one slope per "
                                 "channel, shape (C,), or shape (1,))")
            c = x.shape[1] if len(x.shape) > 1 else 1
            if tuple(gamma.shape) not in ((1,), (c,)):
                raise ShapeError(f"leaky_relu: prelu gamma of shape {tuple(gamma.shape)} for "
                                 f"data {tuple(x.shape)}; expected ({c},) or (1,)")
        return Aval(x.shape, _float(x.dtype))

    def grad(inputs, outputs, cts, *, act_type, slope, lower_bound, upper_bound):
        x = inputs[0]
        g = cts[0]
        pos = x > 0
        if act_type == "leaky":
            return (_ew.where(pos, g, g * slope), None) if len(inputs) > 1 else (
                _ew.where(pos, g, g * slope),)
        if act_type == "elu":
            gx = _ew.where(pos, g, g * slope * _ew.exp(_ew.minimum(x, 0.0)))
        elif act_type == "selu":
            gx = _ew.where(pos, g * _SELU_LAMBDA,
                           g * (_SELU_LAMBDA * _SELU_ALPHA) * _ew.exp(_ew.minimum(x, 0.0)))
        elif act_type == "gelu":
            cdf = 0.5 + 0.5 * erf(x * _SQRT_HALF)
            pdf = _ew.exp(-0.5 * (x * x)) * _INV_SQRT_2PI
            gx = g * (cdf + x * pdf)
        else:
            gamma = inputs[1]
            gshape = _prelu_gamma_shape(x.shape, gamma.shape)
            gb = _shape.reshape(gamma, gshape)
            gx = _ew.where(pos, g, g * gb)
            neg = _ew.where(pos, _ew.zeros_like(g), g * x)
            if gshape in ((1,), ()):
                ggamma = _shape.reshape(_reduce.sum(neg), tuple(gamma.shape))
            else:
                axes = (0,) + tuple(range(2, len(x.shape)))
                ggamma = _reduce.sum(neg, axis=axes)
            return (gx, ggamma)
        return (gx, None) if len(inputs) > 1 else (gx,)


def leaky_relu(data, gamma=None, act_type: str = "leaky", slope: float = 0.25,
               lower_bound: float = 0.125, upper_bound: float = 0.334, **_mxnet_only):
    """MXNet's LeakyReLU: act_type 'leaky' (default, slope 0.25), 'elu', 'selu', 'gelu' or
    'prelu' (with `gamma`, one slope per channel of axis 1)."""
    if act_type not in _LEAKY_TYPES:
        raise KilnError(f"leaky_relu: act_type {act_type!r} is not supported; choose one of "
                        f"{_LEAKY_TYPES} (rrelu is not implemented)")
    attrs = {"act_type": act_type, "slope": float(slope), "lower_bound": float(lower_bound),
             "upper_bound": float(upper_bound)}
    if act_type == "prelu":
        if gamma is None:
            raise KilnError("leaky_relu: act_type='prelu' needs gamma")
        return apply(LeakyReLU, (data, gamma), attrs)
    return apply(LeakyReLU, (data,), attrs)


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
# GroupNorm and InstanceNorm
# ----------------------------------------------------------------------------------------------

def _group_stats(x, groups, eps):
    """x (N, C, ...) as (N, G, M), with per-(n, g) mean and std (keepdims)."""
    xr = x.reshape(x.shape[0], groups, -1)
    mean = xr.mean(axis=-1, keepdims=True)
    centered = xr - mean
    std = _np.sqrt((centered * centered).mean(axis=-1, keepdims=True) + eps)
    return xr, mean, std


def _affine_shape(x_shape, groups, param_shape):
    """How gamma/beta broadcast over x viewed as (N, G, C/G, rest): per group or channel."""
    c = x_shape[1]
    if tuple(param_shape) == (groups,) and groups != c:
        return (1, groups, 1, 1)
    return (1, groups, c // groups, 1)


def _norm_impl(x, gamma, beta, groups, eps):
    dtype = _float(x.dtype)
    x = x.astype(dtype, copy=False)
    xr, mean, std = _group_stats(x, groups, eps)
    xhat = ((xr - mean) / std).reshape(x.shape[0], groups, x.shape[1] // groups, -1)
    ashape = _affine_shape(x.shape, groups, gamma.shape)
    y = xhat * gamma.astype(dtype, copy=False).reshape(ashape) + beta.astype(
        dtype, copy=False).reshape(ashape)
    return y.reshape(x.shape), mean.reshape(x.shape[0], groups), std.reshape(x.shape[0], groups)


def _norm_infer(op, x, gamma, beta, groups):
    if len(x.shape) < 2:
        raise ShapeError(f"{op}: data must have at least 2 dimensions (N, C, ...), not "
                         f"{tuple(x.shape)}")
    c = x.shape[1]
    if groups < 1 or c % groups:
        raise ShapeError(f"{op}: {c} channels (data {tuple(x.shape)}) do not split into "
                         f"{groups} groups; make num_groups divide the channels")
    for pname, p in (("gamma", gamma), ("beta", beta)):
        if tuple(p.shape) not in ((c,), (groups,)):
            raise ShapeError(f"{op}: {pname} of shape {tuple(p.shape)}; expected ({c},) (per "
                             f"channel) or ({groups},) (per group, MXNet 1.x GroupNorm)")
    if tuple(gamma.shape) != tuple(beta.shape):
        raise ShapeError(f"{op}: gamma {tuple(gamma.shape)} and beta {tuple(beta.shape)} "
                         "must have the same shape")
    stat = Aval((x.shape[0], groups), _float(x.dtype))
    return Aval(x.shape, _float(x.dtype)), stat, stat


def _norm_grad(inputs, outputs, cts, groups, eps):
    """Gradient of y = xhat * gamma + beta with xhat normalised per (sample, group).

    The cotangents of the mean and std outputs are included, so the rule is exact when those
    outputs are used (and for gradients of gradients, which differentiate through them).
    """
    x, gamma = inputs[0], inputs[1]
    _, mean, std = outputs
    g, cmean, cstd = cts
    n, c = x.shape[0], x.shape[1]
    m = _np.prod(x.shape[1:], dtype=int) // groups
    split = (n, groups, c // groups, -1)
    ashape = _affine_shape(x.shape, groups, gamma.shape)
    x4 = _shape.reshape(x, split)
    if _nn.differentiable_stats(x):
        mean3 = _reduce.mean(x4, axis=(2, 3), keepdims=True)
        std3 = _ew.sqrt(_reduce.var(x4, axis=(2, 3), keepdims=True) + eps)
    else:
        mean3 = _shape.reshape(mean, (n, groups, 1, 1))
        std3 = _shape.reshape(std, (n, groups, 1, 1))
    g4 = _shape.reshape(g, split)
    xhat = (x4 - mean3) / std3
    gxhat = g4 * _shape.reshape(gamma, ashape)
    a = _reduce.mean(gxhat, axis=(2, 3), keepdims=True)
    b = _reduce.mean(gxhat * xhat, axis=(2, 3), keepdims=True)
    shift = -a / std3
    slope = -b / std3
    if cmean is not None:
        shift = shift + _shape.reshape(cmean, (n, groups, 1, 1)) / m
    if cstd is not None:
        slope = slope + _shape.reshape(cstd, (n, groups, 1, 1)) / m
    gx = _shape.reshape(gxhat / std3 + shift + xhat * slope, tuple(x.shape))
    if ashape[2] == 1:          # per-group affine parameters
        ggamma = _reduce.sum(g4 * xhat, axis=(0, 2, 3))
        gbeta = _reduce.sum(g4, axis=(0, 2, 3))
    else:
        ggamma = _shape.reshape(_reduce.sum(g4 * xhat, axis=(0, 3)), (c,))
        gbeta = _shape.reshape(_reduce.sum(g4, axis=(0, 3)), (c,))
    return (gx, ggamma, gbeta)


class GroupNorm(Op):
    """Normalise each sample over groups of channels (and all spatial positions), then scale
    and shift. gamma/beta have one entry per channel, or per group (MXNet 1.x's GroupNorm).
    Outputs (y, mean, std), the statistics of shape (N, num_groups)."""

    name = "group_norm"
    mx_name = "GroupNorm"
    attrs = {"num_groups": 1, "eps": 1e-5, "output_mean_var": False}
    inputs = ("data", "gamma", "beta")
    num_outputs = 3
    save_outputs = True

    def impl(x, gamma, beta, *, num_groups, eps, output_mean_var):
        _norm_infer("group_norm", x, gamma, beta, num_groups)
        return _norm_impl(x, gamma, beta, num_groups, eps)

    def infer(x, gamma, beta, *, num_groups, eps, output_mean_var):
        return _norm_infer("group_norm", x, gamma, beta, num_groups)

    def grad(inputs, outputs, cts, *, num_groups, eps, output_mean_var):
        return _norm_grad(inputs, outputs, cts, num_groups, eps)


def group_norm(data, gamma, beta, num_groups: int = 1, eps: float = 1e-5,
               output_mean_var: bool = False):
    """Group normalisation (MXNet's GroupNorm); gamma/beta per channel or per group."""
    y, mean, std = apply(GroupNorm, (data, gamma, beta),
                         {"num_groups": int(num_groups), "eps": float(eps),
                          "output_mean_var": bool(output_mean_var)})
    return (y, mean, std) if output_mean_var else y


class InstanceNorm(Op):
    """Normalise each (sample, channel) over its spatial positions, then scale and shift per
    channel. Outputs (y, mean, std), the statistics of shape (N, C)."""

    name = "instance_norm"
    mx_name = "InstanceNorm"
    attrs = {"eps": 1e-3}
    inputs = ("data", "gamma", "beta")
    num_outputs = 3
    save_outputs = True

    def impl(x, gamma, beta, *, eps):
        InstanceNorm.infer(x, gamma, beta, eps=eps)
        return _norm_impl(x, gamma, beta, x.shape[1], eps)

    def infer(x, gamma, beta, *, eps):
        c = x.shape[1] if len(x.shape) > 1 else 0
        if len(x.shape) < 3:
            raise ShapeError(f"instance_norm: data must be (N, C, spatial...), not "
                             f"{tuple(x.shape)}")
        return _norm_infer("instance_norm", x, gamma, beta, c)

    def grad(inputs, outputs, cts, *, eps):
        return _norm_grad(inputs, outputs, cts, inputs[0].shape[1], eps)


def instance_norm(data, gamma, beta, eps: float = 1e-3):
    """Instance normalisation (MXNet's InstanceNorm)."""
    return apply(InstanceNorm, (data, gamma, beta), {"eps": float(eps)})[0]


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
