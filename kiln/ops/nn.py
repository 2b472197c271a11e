
"""Neural-network operators of `kiln.npx`: dense layers, softmax, normalisation, dropout,
embeddings and index picking. Convolution is in `conv.py` (its NumPy engine in `im2col.py`),
pooling in `pooling.py`, LeakyReLU and erf in `activations.py`, GroupNorm and InstanceNorm in
`norm.py`, the rest (SequenceMask, topk, MXNet reshape codes ...) in `nn_extra.py`.
"""

from __future__ import annotations

import numpy as _np

from .. import autograd as _autograd
from ..base import KilnError, ShapeError
from ..ndarray import apply, assign, is_array
from .registry import Aval, Op
from . import _gemm, _native
from . import elementwise as _ew
from . import linalg as _linalg
from . import reduce as _reduce
from . import shape as _shape


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ----------------------------------------------------------------------------------------------
# fully connected
# ----------------------------------------------------------------------------------------------

class FullyConnected(Op):
    """y = x W^T + b, with W of shape (num_hidden, in_units).

    `flatten=True` folds every axis after the first into the input features (MXNet's default);
    `flatten=False` applies the layer to the last axis only.
    """

    name = "fully_connected"
    mx_name = "FullyConnected"
    attrs = {"num_hidden": 0, "no_bias": False, "flatten": True}
    inputs = ("data", "weight", "bias")

    def impl(x, w, b=None, *, num_hidden, no_bias, flatten):
        if flatten and x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        return _gemm.matmul(x, w.T, bias=b)

    def infer(x, w, b=None, *, num_hidden, no_bias, flatten):
        in_units = _prod(x.shape[1:]) if flatten else x.shape[-1]
        if tuple(w.shape) != (num_hidden, in_units):
            raise ShapeError(f"fully_connected: weight of shape {tuple(w.shape)} for input "
                             f"{tuple(x.shape)}; expected ({num_hidden}, {in_units})")
        if b is not None and tuple(b.shape) != (num_hidden,):
            raise ShapeError(f"fully_connected: bias of shape {tuple(b.shape)}, expected "
                             f"({num_hidden},)")
        shape = (x.shape[0], num_hidden) if flatten else tuple(x.shape[:-1]) + (num_hidden,)
        return Aval(shape, _np.result_type(x.dtype, w.dtype))

    def grad(inputs, outputs, cts, *, num_hidden, no_bias, flatten):
        x, w = inputs[0], inputs[1]
        g = cts[0]
        x_shape = tuple(x.shape)
        if flatten:
            x2 = _shape.reshape(x, (x_shape[0], -1)) if len(x_shape) != 2 else x
            g2 = g
        else:
            x2 = _shape.reshape(x, (-1, x_shape[-1]))
            g2 = _shape.reshape(g, (-1, num_hidden))
        gx = gw = None
        if _autograd.needs_cotangent(x):    # not for a first layer's data: its largest product
            gx = _linalg.matmul(g2, w)
            if tuple(gx.shape) != x_shape:
                gx = _shape.reshape(gx, x_shape)
        if _autograd.needs_cotangent(w):
            gw = _linalg.matmul(_shape.transpose(g2), x2)
        grads = [gx, gw]
        if len(inputs) > 2 and inputs[2] is not None:
            grads.append(_reduce.sum(g2, axis=0) if _autograd.needs_cotangent(inputs[2])
                         else None)
        return tuple(grads)


def fully_connected(x, weight, bias=None, num_hidden: int | None = None, no_bias: bool = False,
                    flatten: bool = True):
    """Dense layer: x W^T + b. `num_hidden` defaults to the weight's first dimension."""
    if num_hidden is None:
        num_hidden = weight.shape[0]
    attrs = {"num_hidden": int(num_hidden), "no_bias": bool(no_bias or bias is None),
             "flatten": bool(flatten)}
    if bias is None or no_bias:
        return apply(FullyConnected, (x, weight), attrs)
    return apply(FullyConnected, (x, weight, bias), attrs)


# ----------------------------------------------------------------------------------------------
# activations and softmax
# ----------------------------------------------------------------------------------------------

ACTIVATIONS = ("relu", "sigmoid", "tanh", "softrelu", "softsign", "log_sigmoid", "mish")


def activation(data, act_type: str = "relu"):
    """Apply the activation named `act_type` (MXNet's Activation operator)."""
    if act_type == "relu":
        return _ew.relu(data)
    if act_type == "sigmoid":
        return _ew.sigmoid(data)
    if act_type == "tanh":
        return _ew.tanh(data)
    if act_type == "softrelu":
        return _ew.softrelu(data)
    if act_type == "softsign":
        return _ew.softsign(data)
    if act_type == "log_sigmoid":
        return -_ew.softrelu(-data)
    if act_type == "mish":
        return data * _ew.tanh(_ew.softrelu(data))
    raise KilnError(f"activation: unknown act_type {act_type!r}; choose one of {ACTIVATIONS}")


def _as_float(x):
    """Integer data computes (and comes out) as float32, as the operators' `infer` says."""
    return x if x.dtype.kind == "f" else x.astype(_np.float32)


class Softmax(Op):
    name = "softmax"
    mx_name = "softmax"
    attrs = {"axis": -1, "temperature": None}
    save_outputs = True

    def impl(x, *, axis, temperature):
        x = _as_float(x)
        if temperature is not None and temperature != 1.0:
            x = x / x.dtype.type(temperature)
        z = x - _np.max(x, axis=axis, keepdims=True)
        _np.exp(z, out=z)
        z /= _np.sum(z, axis=axis, keepdims=True)
        return z

    def infer(x, *, axis, temperature):
        return Aval(x.shape, x.dtype if x.dtype.kind == "f" else _np.dtype(_np.float32))

    def grad(inputs, outputs, cts, *, axis, temperature):
        y = outputs[0]
        g = cts[0]
        gx = y * (g - _reduce.sum(g * y, axis=axis, keepdims=True))
        if temperature is not None and temperature != 1.0:
            gx = gx / temperature
        return (gx,)


class LogSoftmax(Op):
    name = "log_softmax"
    mx_name = "log_softmax"
    attrs = {"axis": -1, "temperature": None}
    save_outputs = True

    def impl(x, *, axis, temperature):
        x = _as_float(x)
        if temperature is not None and temperature != 1.0:
            x = x / x.dtype.type(temperature)
        z = x - _np.max(x, axis=axis, keepdims=True)
        z -= _np.log(_np.sum(_np.exp(z), axis=axis, keepdims=True))
        return z

    def infer(x, *, axis, temperature):
        return Aval(x.shape, x.dtype if x.dtype.kind == "f" else _np.dtype(_np.float32))

    def grad(inputs, outputs, cts, *, axis, temperature):
        y = outputs[0]
        g = cts[0]
        gx = g - _ew.exp(y) * _reduce.sum(g, axis=axis, keepdims=True)
        if temperature is not None and temperature != 1.0:
            gx = gx / temperature
        return (gx,)


def _check_no_length(op: str, mxnet_only: dict) -> None:
    if mxnet_only.get("use_length") or mxnet_only.get("length") is not None:
        raise KilnError(f"{op}: length/use_length are not supported; mask the padded "
                        "positions with npx.masked_softmax(data, mask) instead")


def _temperature(temperature):
    return None if temperature is None else float(temperature)


def softmax(data, axis: int = -1, temperature: float | None = None, **_mxnet_only):
    """exp(x) / sum(exp(x)) along `axis`, computed stably."""
    _check_no_length("softmax", _mxnet_only)
    return apply(Softmax, (data,), {"axis": int(axis), "temperature": _temperature(temperature)})


def log_softmax(data, axis: int = -1, temperature: float | None = None, **_mxnet_only):
    """log(softmax(x)) along `axis`, computed stably."""
    _check_no_length("log_softmax", _mxnet_only)
    return apply(LogSoftmax, (data,), {"axis": int(axis),
                                       "temperature": _temperature(temperature)})


# ----------------------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------------------

class Dropout(Op):
    """Zero each element with probability p and scale the rest by 1/(1-p).

    Outputs (result, mask); the mask (already scaled) is what the gradient multiplies by.
    `axes` share one draw along those axes (variational dropout).
    """

    name = "dropout"
    mx_name = "Dropout"
    attrs = {"p": 0.5, "axes": ()}
    num_outputs = 2
    random = True
    save_outputs = True

    def impl(x, *, p, axes):
        from .random import generator

        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        dtype = x.dtype if x.dtype.kind == "f" else _np.dtype(_np.float32)
        keep = generator().random(shape, dtype=_np.float32) >= p
        mask = keep.astype(dtype) * dtype.type(1.0 / (1.0 - p)) if p < 1 else \
            _np.zeros(shape, dtype)
        return x.astype(dtype, copy=False) * mask, mask

    def infer(x, *, p, axes):
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        dtype = x.dtype if x.dtype.kind == "f" else _np.dtype(_np.float32)
        return Aval(x.shape, dtype), Aval(shape, dtype)

    def grad(inputs, outputs, cts, *, p, axes):
        return (cts[0] * outputs[1],)


def dropout(data, p: float = 0.5, mode: str = "training", axes=(), **_mxnet_only):
    """Dropout in training mode (or always, with mode='always'); identity otherwise."""
    if not 0.0 <= p <= 1.0:
        raise KilnError(f"dropout: p must be in [0, 1], not {p}")
    if p == 0.0 or (mode == "training" and not _autograd.STATE.training):
        return data
    axes = tuple(a % len(data.shape) for a in axes)
    return apply(Dropout, (data,), {"p": float(p), "axes": axes})[0]


# ----------------------------------------------------------------------------------------------
# normalisation
# ----------------------------------------------------------------------------------------------

def differentiable_stats(x) -> bool:
    """Whether a normalisation's gradient must recompute its statistics from x with kiln
    operators instead of reading the saved outputs.

    The saved mean/std outputs are constants when the caller dropped them, which is right for
    a first-order gradient but cuts the path from x through the statistics that a gradient of
    the gradient (autograd recording the backward pass) or a traced backward graph needs.
    """
    return _autograd.STATE.recording or not is_array(x)


def _channel_shape(ndim: int, axis: int, c: int) -> tuple:
    shape = [1] * ndim
    shape[axis] = c
    return tuple(shape)


class BatchNorm(Op):
    """Batch normalisation over every axis but `axis`.

    Outputs (y, mean, var): with `training`, the statistics of this batch (the caller folds
    them into the running averages); otherwise the running statistics that were used.
    """

    name = "batch_norm"
    mx_name = "BatchNorm"
    # momentum and use_global_stats do not change this node's value (the caller folds the batch
    # statistics into the running ones); they are kept so exported graphs say how to train.
    attrs = {"eps": 1e-3, "momentum": 0.9, "fix_gamma": True, "use_global_stats": False,
             "axis": 1, "training": False}
    inputs = ("data", "gamma", "beta", "moving_mean", "moving_var")
    aux_inputs = (3, 4)
    num_outputs = 3
    save_outputs = True

    def impl(x, gamma, beta, running_mean, running_var, *, eps, momentum, fix_gamma,
             use_global_stats, axis, training):
        ax = axis % x.ndim
        bshape = _channel_shape(x.ndim, ax, x.shape[ax])
        if training:
            axes = tuple(i for i in range(x.ndim) if i != ax)
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
        else:
            mean, var = running_mean, running_var
        inv_std = 1.0 / _np.sqrt(var + eps)
        scale = inv_std if fix_gamma else gamma * inv_std
        shift = beta - mean * scale
        y = x * scale.reshape(bshape).astype(x.dtype, copy=False)
        y += shift.reshape(bshape).astype(x.dtype, copy=False)
        # copies: the statistics outputs must not alias the running-statistics inputs
        return y, _np.array(mean, dtype=x.dtype), _np.array(var, dtype=x.dtype)

    def infer(x, gamma, beta, running_mean, running_var, *, eps, momentum, fix_gamma,
              use_global_stats, axis, training):
        c = x.shape[axis % len(x.shape)]
        for name, p in (("gamma", gamma), ("beta", beta), ("moving_mean", running_mean),
                        ("moving_var", running_var)):
            if tuple(p.shape) != (c,):
                raise ShapeError(f"batch_norm: {name} has shape {tuple(p.shape)}, expected "
                                 f"({c},) for input {tuple(x.shape)} (axis {axis})")
        stat = Aval((c,), x.dtype)
        return Aval(x.shape, x.dtype), stat, stat

    def grad(inputs, outputs, cts, *, eps, momentum, fix_gamma, use_global_stats, axis,
             training):
        # In training mode the mean and var outputs are functions of x too: their cotangents
        # (nonzero when the caller uses them, and in gradients of gradients, which
        # differentiate through them) flow into x as well.
        x, gamma = inputs[0], inputs[1]
        _, mean, var = outputs
        g, cmean, cvar = cts
        ndim = len(x.shape)
        ax = axis % ndim
        c = x.shape[ax]
        bshape = _channel_shape(ndim, ax, c)
        axes = tuple(i for i in range(ndim) if i != ax)
        n = _prod(x.shape) // c
        if training and differentiable_stats(x):
            mean, var = _reduce.mean(x, axis=axes), _reduce.var(x, axis=axes)
        inv_std = 1.0 / _ew.sqrt(var + eps)
        xhat = (x - _shape.reshape(mean, bshape)) * _shape.reshape(inv_std, bshape)
        gbeta = _reduce.sum(g, axis=axes)
        ggamma = _reduce.sum(g * xhat, axis=axes)
        scale = inv_std if fix_gamma else gamma * inv_std
        if training:
            # gx = scale * (g - gbeta/n - xhat*ggamma/n) + cmean/n + cvar * 2(x - mean)/n,
            # with the per-channel factors gathered first: three passes over x.
            shift = -scale * gbeta / n
            slope = -scale * ggamma / n
            if cmean is not None:
                shift = shift + cmean / n
            if cvar is not None:
                slope = slope + cvar * (2.0 / n) / inv_std
            gx = (g * _shape.reshape(scale, bshape) + _shape.reshape(shift, bshape)
                  + xhat * _shape.reshape(slope, bshape))
        else:
            gx = g * _shape.reshape(scale, bshape)
        return (gx, None if fix_gamma else ggamma, gbeta, None, None)


def batch_norm(x, gamma, beta, running_mean, running_var, eps: float = 1e-3,
               momentum: float = 0.9, fix_gamma: bool = True, use_global_stats: bool = False,
               output_mean_var: bool = False, axis: int = 1, **_mxnet_only):
    """Batch normalisation. In training mode it normalises with the batch statistics and
    updates `running_mean`/`running_var` in place (running = momentum * running +
    (1 - momentum) * batch); otherwise it uses the running statistics."""
    training = _autograd.STATE.training and not use_global_stats
    y, mean, var = apply(BatchNorm, (x, gamma, beta, running_mean, running_var),
                         {"eps": float(eps), "momentum": float(momentum),
                          "fix_gamma": bool(fix_gamma), "use_global_stats": bool(use_global_stats),
                          "axis": int(axis), "training": training})
    if training:
        with _autograd.pause():
            assign(running_mean, running_mean * momentum + _ew.stop_gradient(mean) * (1 - momentum))
            assign(running_var, running_var * momentum + _ew.stop_gradient(var) * (1 - momentum))
    if output_mean_var:
        return y, mean, var
    return y


class LayerNorm(Op):
    """Normalise over `axis`, then scale by gamma and shift by beta. Outputs (y, mean, std)."""

    name = "layer_norm"
    mx_name = "LayerNorm"
    attrs = {"axis": -1, "eps": 1e-5}
    inputs = ("data", "gamma", "beta")
    num_outputs = 3
    save_outputs = True

    def impl(x, gamma, beta, *, axis, eps):
        mean = x.mean(axis=axis, keepdims=True)
        centered = x - mean
        std = _np.sqrt((centered * centered).mean(axis=axis, keepdims=True) + eps)
        ax = axis % x.ndim
        bshape = _channel_shape(x.ndim, ax, x.shape[ax])
        y = centered / std * gamma.reshape(bshape) + beta.reshape(bshape)
        return y.astype(x.dtype, copy=False), mean, std

    def infer(x, gamma, beta, *, axis, eps):
        ax = axis % len(x.shape)
        c = x.shape[ax]
        if tuple(gamma.shape) != (c,) or tuple(beta.shape) != (c,):
            raise ShapeError(f"layer_norm: gamma {tuple(gamma.shape)} and beta "
                             f"{tuple(beta.shape)} must have shape ({c},)")
        stat = Aval(tuple(1 if i == ax else d for i, d in enumerate(x.shape)), x.dtype)
        return Aval(x.shape, x.dtype), stat, stat

    def grad(inputs, outputs, cts, *, axis, eps):
        # The mean and std outputs depend on x: their cotangents flow into x too (see
        # BatchNorm.grad); dmean/dx = 1/m and dstd/dx = xhat/m along `axis`.
        x, gamma = inputs[0], inputs[1]
        _, mean, std = outputs
        g, cmean, cstd = cts
        ndim = len(x.shape)
        ax = axis % ndim
        m = x.shape[ax]
        if differentiable_stats(x):
            mean = _reduce.mean(x, axis=ax, keepdims=True)
            std = _ew.sqrt(_reduce.var(x, axis=ax, keepdims=True) + eps)
        bshape = _channel_shape(ndim, ax, m)
        other = tuple(i for i in range(ndim) if i != ax)
        xhat = (x - mean) / std
        gxhat = g * _shape.reshape(gamma, bshape)
        shift = -_reduce.mean(gxhat, axis=ax, keepdims=True) / std
        slope = -_reduce.mean(gxhat * xhat, axis=ax, keepdims=True) / std
        if cmean is not None:
            shift = shift + cmean / m
        if cstd is not None:
            slope = slope + cstd / m
        gx = gxhat / std + shift + xhat * slope
        return (gx, _reduce.sum(g * xhat, axis=other), _reduce.sum(g, axis=other))


def layer_norm(data, gamma, beta, axis: int = -1, eps: float = 1e-5,
               output_mean_var: bool = False):
    y, mean, std = apply(LayerNorm, (data, gamma, beta), {"axis": int(axis), "eps": float(eps)})
    return (y, mean, std) if output_mean_var else y


# ----------------------------------------------------------------------------------------------
# embeddings, one-hot, pick
# ----------------------------------------------------------------------------------------------

class Embedding(Op):
    """Rows of `weight` at integer `data` (clipped into range)."""

    name = "embedding"
    mx_name = "Embedding"
    attrs = {"input_dim": 0, "output_dim": 0}
    inputs = ("data", "weight")

    def impl(indices, weight, *, input_dim, output_dim):
        return _np.take(weight, indices.astype(_np.int64, copy=False), axis=0, mode="clip")

    def infer(indices, weight, *, input_dim, output_dim):
        if tuple(weight.shape) != (input_dim, output_dim):
            raise ShapeError(f"embedding: weight of shape {tuple(weight.shape)}, expected "
                             f"({input_dim}, {output_dim})")
        return Aval(tuple(indices.shape) + (output_dim,), weight.dtype)

    def grad(inputs, outputs, cts, *, input_dim, output_dim):
        return (None, _shape.index_add(cts[0], inputs[0], 0, input_dim, "clip"))


def embedding(data, weight, input_dim: int | None = None, output_dim: int | None = None,
              dtype=None, sparse_grad: bool = False, **_mxnet_only):
    input_dim = weight.shape[0] if input_dim is None else input_dim
    output_dim = weight.shape[1] if output_dim is None else output_dim
    return apply(Embedding, (data, weight),
                 {"input_dim": int(input_dim), "output_dim": int(output_dim)})


class OneHot(Op):
    name = "one_hot"
    mx_name = "one_hot"
    attrs = {"depth": 1, "on_value": 1.0, "off_value": 0.0, "dtype": "float32"}
    inputs = ("indices",)
    differentiable = False

    def impl(indices, *, depth, on_value, off_value, dtype):
        idx = indices.astype(_np.int64, copy=False)
        hot = idx[..., None] == _np.arange(depth)
        out = _np.where(hot, _np.asarray(on_value, dtype), _np.asarray(off_value, dtype))
        return out.astype(dtype, copy=False)

    def infer(indices, *, depth, on_value, off_value, dtype):
        return Aval(tuple(indices.shape) + (depth,), _np.dtype(dtype))


def one_hot(indices, depth: int, on_value: float = 1.0, off_value: float = 0.0,
            dtype="float32"):
    return apply(OneHot, (indices,), {"depth": int(depth), "on_value": float(on_value),
                                      "off_value": float(off_value),
                                      "dtype": _np.dtype(dtype).name})


class Pick(Op):
    """data[..., index[...], ...] along `axis`: one element per position of `index`."""

    name = "pick"
    mx_name = "pick"
    attrs = {"axis": -1, "keepdims": False, "mode": "clip"}
    inputs = ("data", "index")

    def impl(data, index, *, axis, keepdims, mode):
        ax = axis % data.ndim
        idx = _pick_index(index, data.shape[ax], mode)
        if idx.ndim < data.ndim:
            idx = _np.expand_dims(idx, ax)
        out = _np.take_along_axis(data, idx, axis=ax)
        return out if keepdims else _np.squeeze(out, ax)

    def infer(data, index, *, axis, keepdims, mode):
        ax = axis % len(data.shape)
        expected = tuple(d for i, d in enumerate(data.shape) if i != ax)
        got = tuple(index.shape)
        if got != expected and got != tuple(1 if i == ax else d for i, d in
                                            enumerate(data.shape)):
            raise ShapeError(f"pick: index of shape {got} for data {tuple(data.shape)} along "
                             f"axis {axis}; expected {expected}")
        shape = tuple(1 if i == ax else d for i, d in enumerate(data.shape)) if keepdims \
            else expected
        return Aval(shape, data.dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, mode):
        data, index = inputs
        return (apply(PickBackward, (cts[0], index),
                      {"axis": axis, "keepdims": keepdims, "mode": mode,
                       "shape": tuple(data.shape)}), None)


def _pick_index(index, size, mode):
    idx = _np.asarray(index).astype(_np.int64, copy=False)
    return _np.clip(idx, 0, size - 1) if mode == "clip" else idx % size


class PickBackward(Op):
    """Scatter `g` into zeros of `shape` at the positions `pick` read."""

    name = "pick_backward"
    mx_name = "_kiln_pick_backward"
    attrs = {"axis": -1, "keepdims": False, "mode": "clip", "shape": ()}
    inputs = ("data", "index")

    def impl(g, index, *, axis, keepdims, mode, shape):
        ax = axis % len(shape)
        idx = _np.expand_dims(_pick_index(index, shape[ax], mode), ax) if index.ndim < len(
            shape) else _pick_index(index, shape[ax], mode)
        out = _np.zeros(shape, g.dtype)
        gg = g if keepdims else _np.expand_dims(g, ax)
        _np.put_along_axis(out, idx, gg, axis=ax)
        return out

    def infer(g, index, *, axis, keepdims, mode, shape):
        return Aval(tuple(shape), g.dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, mode, shape):
        return (pick(cts[0], inputs[1], axis=axis, keepdims=keepdims, mode=mode), None)


def pick(data, index, axis: int = -1, mode: str = "clip", keepdims: bool = False):
    """Pick one element along `axis` for each position of `index` (e.g. the label's score)."""
    if mode not in ("clip", "wrap"):
        raise KilnError(f"pick: mode must be 'clip' or 'wrap', not {mode!r}")
    return apply(Pick, (data, index), {"axis": int(axis), "keepdims": bool(keepdims),
                                       "mode": mode})


# ----------------------------------------------------------------------------------------------
# softmax cross-entropy against class indices, fused
# ----------------------------------------------------------------------------------------------

def _ce_rows(data, label, axis):
    """(rows, labels, positions shape, moved): the data as float (rows, classes) with the class
    axis last (a view when it already is), one label per row clipped into range (pick's 'clip'
    mode), the shape of the positions, and whether the axis had to be moved. Array methods and
    fancy indexing on rows: a loss on a small batch costs microseconds, which take_along_axis
    and NumPy's function wrappers multiply."""
    x = data if data.dtype.kind == "f" else data.astype(_np.float32)
    ax = axis % x.ndim
    shape = x.shape
    positions = shape[:ax] + shape[ax + 1:]
    moved = ax != x.ndim - 1
    if moved:
        x = _np.moveaxis(x, ax, -1)
    classes = shape[ax]
    rows = x.reshape(-1, classes)
    idx = label.reshape(-1)
    if idx.dtype != _np.int64:
        idx = idx.astype(_np.int64)
    idx = _np.minimum(_np.maximum(idx, 0), classes - 1)
    return rows, idx, positions, moved


def _row_max(rows):
    """rows.max(1, keepdims=True). NumPy reduces short rows slowly (18.8 us for 256 rows of 10
    classes, against 6.5 us for this loop over the columns); the maximum is exact either way."""
    if rows.shape[1] > 16 or rows.shape[1] == 0:
        return rows.max(1, keepdims=True)
    m = rows[:, 0].copy()
    for j in range(1, rows.shape[1]):
        _np.maximum(m, rows[:, j], out=m)
    return m[:, None]


def _native_ce(data, label, ct, axis):
    """The loss (ct None) or its gradient from the kernel library, for float32 (rows, classes)
    logits with the classes last and int64 labels; None otherwise (or without native code),
    and NumPy computes. 6 us instead of 35 for 256 rows of 10 classes, each way."""
    if data.ndim != 2 or axis not in (-1, 1):
        return None
    return _native.call("softmax_ce_f32", data, label, ct)


def _ce_infer_index(data, label, axis, op):
    ax = axis % len(data.shape)
    expected = tuple(d for i, d in enumerate(data.shape) if i != ax)
    got = tuple(label.shape)
    if got != expected and got != tuple(1 if i == ax else d for i, d in enumerate(data.shape)):
        raise ShapeError(f"{op}: label of shape {got} for data {tuple(data.shape)} along axis "
                         f"{axis}; expected {expected}")
    return expected, data.dtype if data.dtype.kind == "f" else _np.dtype(_np.float32)


class SoftmaxCrossEntropy(Op):
    """Cross-entropy of softmax(data) along `axis` against class indices, one value per
    position of `label`: logsumexp(data) - data[label], i.e. -pick(log_softmax(data), label)
    with labels clipped into range (pick's default mode).

    `gluon.loss.SoftmaxCrossEntropyLoss` in one operator: eagerly one NumPy pass forward and
    one backward (softmax - one_hot, scaled), where the composite takes four operators forward
    and nine backward; one C loop each on the native backend. MXNet has no per-sample
    operator of this kind (its `softmax_cross_entropy` sums over the batch).
    """

    name = "softmax_cross_entropy"
    attrs = {"axis": -1}
    inputs = ("data", "label")

    def impl(data, label, *, axis):
        fast = _native_ce(data, label, None, axis)
        if fast is not None:
            return fast
        rows, idx, positions, _ = _ce_rows(data, label, axis)
        z = rows - _row_max(rows)
        lse = _np.log(_np.exp(z).sum(1))
        lse -= z[_np.arange(len(z)), idx]
        return lse.reshape(positions)

    def infer(data, label, *, axis):
        shape, dtype = _ce_infer_index(data, label, axis, "softmax_cross_entropy")
        return Aval(shape, dtype)

    def grad(inputs, outputs, cts, *, axis):
        data, label = inputs
        if not _autograd.needs_cotangent(data):
            return (None, None)
        return (apply(SoftmaxCrossEntropyBackward, (data, label, cts[0]), {"axis": axis}),
                None)


class SoftmaxCrossEntropyBackward(Op):
    """(softmax(data) - one_hot(label)) * ct along `axis`: the gradient of
    softmax_cross_entropy with respect to its data, for the output cotangent `ct`."""

    name = "softmax_cross_entropy_backward"
    mx_name = None
    attrs = {"axis": -1}
    inputs = ("data", "label", "ct")

    def impl(data, label, ct, *, axis):
        fast = _native_ce(data, label, ct, axis)
        if fast is not None:
            return fast
        rows, idx, positions, moved = _ce_rows(data, label, axis)
        p = rows - _row_max(rows)
        _np.exp(p, out=p)
        p /= p.sum(1, keepdims=True)
        p[_np.arange(len(p)), idx] -= 1
        p *= ct.reshape(-1, 1)
        if not moved:
            return p.reshape(data.shape)
        ax = axis % data.ndim
        return _np.ascontiguousarray(_np.moveaxis(p.reshape(positions + p.shape[-1:]), -1, ax))

    def infer(data, label, ct, *, axis):
        _, dtype = _ce_infer_index(data, label, axis, "softmax_cross_entropy_backward")
        return Aval(tuple(data.shape), dtype)

    def grad(inputs, outputs, cts, *, axis):
        # out = ct' * (p - onehot), ct' = ct with the axis restored, p = softmax(data)
        data, label, ct = inputs
        u = cts[0]
        gdata = gct = None
        if _autograd.needs_cotangent(data):
            v = u * _shape.expand_dims(ct, axis)
            p = softmax(data, axis=axis)
            gdata = p * (v - _reduce.sum(v * p, axis=axis, keepdims=True))
        if _autograd.needs_cotangent(ct):
            unit = apply(SoftmaxCrossEntropyBackward, (data, label, _ew.ones_like(ct)),
                         {"axis": axis})
            gct = _reduce.sum(u * unit, axis=axis)
        return (gdata, None, gct)


def softmax_cross_entropy(data, label, axis: int = -1):
    """Per-position cross-entropy of softmax(data) along `axis` against class indices `label`
    (clipped into range): -pick(log_softmax(data, axis), label, axis), in one operator."""
    return apply(SoftmaxCrossEntropy, (data, label), {"axis": int(axis)})


def batch_flatten(x):
    """Reshape to (batch, everything else)."""
    return _shape.reshape(x, (x.shape[0], -1))


flatten = batch_flatten
