
"""Activations beyond `activation`'s: MXNet's LeakyReLU family (leaky, elu, selu, gelu, prelu)
and the error function erf that GELU is built on.
"""

from __future__ import annotations

import math

import numpy as _np
from numpy.polynomial import chebyshev as _cheb

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
