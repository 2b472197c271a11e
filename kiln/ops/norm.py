
"""GroupNorm and InstanceNorm (BatchNorm and LayerNorm are in nn.py)."""

from __future__ import annotations

import numpy as _np

from ..base import ShapeError
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
