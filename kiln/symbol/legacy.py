"""MXNet 1.x operator spellings (`F.FullyConnected`, `F.Activation`, `F.broadcast_add` ...).

Seed-style `hybrid_forward(self, F, x)` code calls these on `F`, which is `kiln.ndarray` eagerly
and `kiln.symbol` while tracing; both resolve them here. Each is a thin adapter onto kiln's own
operator front, so broadcasting and gradients are exactly those of `kiln.np`/`npx`.
"""

from __future__ import annotations

from .. import numpy as _knp
from .. import numpy_extension as _npx
from ..base import KilnError


def _tuple(v):
    if v is None:
        return None
    return (int(v),) if isinstance(v, int) else tuple(int(d) for d in v)


def FullyConnected(data, weight, bias=None, num_hidden=None, no_bias=False, flatten=True,
                   **_ignored):
    return _npx.fully_connected(data, weight, None if no_bias else bias, num_hidden, no_bias,
                                flatten)


def Activation(data, act_type="relu", **_ignored):
    return _npx.activation(data, act_type)


def LeakyReLU(data, gamma=None, act_type="leaky", slope=0.25, **_ignored):
    return _npx.leaky_relu(data, gamma, act_type=act_type, slope=slope)


def Convolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                num_filter=None, num_group=1, no_bias=False, layout=None, **_ignored):
    return _npx.convolution(data, weight, None if no_bias else bias, kernel=_tuple(kernel),
                            stride=_tuple(stride), dilate=_tuple(dilate), pad=_tuple(pad),
                            num_filter=num_filter, num_group=num_group, no_bias=no_bias,
                            layout=layout)


def Deconvolution(data, weight, bias=None, kernel=None, stride=None, dilate=None, pad=None,
                  adj=None, num_filter=None, num_group=1, no_bias=True, layout=None,
                  **_ignored):
    return _npx.deconvolution(data, weight, None if no_bias else bias, kernel=_tuple(kernel),
                              stride=_tuple(stride), dilate=_tuple(dilate), pad=_tuple(pad),
                              adj=_tuple(adj), num_filter=num_filter, num_group=num_group,
                              no_bias=no_bias, layout=layout)


def Pooling(data, kernel=None, pool_type="max", global_pool=False, stride=None, pad=None,
            pooling_convention="valid", count_include_pad=True, layout=None, **_ignored):
    return _npx.pooling(data, kernel=_tuple(kernel), pool_type=pool_type,
                        global_pool=global_pool, stride=_tuple(stride), pad=_tuple(pad),
                        pooling_convention=pooling_convention,
                        count_include_pad=count_include_pad, layout=layout)


def BatchNorm(data, gamma, beta, moving_mean, moving_var, eps=1e-3, momentum=0.9,
              fix_gamma=True, use_global_stats=False, output_mean_var=False, axis=1,
              **_ignored):
    return _npx.batch_norm(data, gamma, beta, moving_mean, moving_var, eps=eps,
                           momentum=momentum, fix_gamma=fix_gamma,
                           use_global_stats=use_global_stats, output_mean_var=output_mean_var,
                           axis=axis)


def LayerNorm(data, gamma, beta, axis=-1, eps=1e-5, output_mean_var=False, **_ignored):
    return _npx.layer_norm(data, gamma, beta, axis=axis, eps=eps,
                           output_mean_var=output_mean_var)


def Dropout(data, p=0.5, mode="training", axes=(), **_ignored):
    return _npx.dropout(data, p=p, mode=mode, axes=axes)


def Embedding(data, weight, input_dim=None, output_dim=None, **_ignored):
    return _npx.embedding(data, weight, input_dim, output_dim)


def Flatten(data, **_ignored):
    return _npx.batch_flatten(data)


def Cast(data, dtype, **_ignored):
    return _knp.astype(data, dtype)


def BlockGrad(data, **_ignored):
    return _npx.stop_gradient(data)


def Reshape(data, shape=None, reverse=False, **_ignored):
    if reverse:
        raise KilnError("Reshape(reverse=True) is not supported; use npx.reshape")
    return _npx.reshape(data, _tuple(shape))


def SliceChannel(data, num_outputs, axis=1, squeeze_axis=False, **_ignored):
    parts = _knp.split(data, num_outputs, axis=axis)
    if squeeze_axis:
        parts = [_knp.squeeze(p, axis) for p in parts]
    return parts


def Concat(*data, dim=1, **_ignored):
    return _knp.concatenate(data, axis=dim)


def concat(*data, dim=1, **_ignored):
    return _knp.concatenate(data, axis=dim)


def slice_axis(data, axis, begin, end):
    key = [slice(None)] * len(data.shape)
    key[axis] = slice(begin, end)
    return data[tuple(key)]


def batch_dot(lhs, rhs, transpose_a=False, transpose_b=False, **_ignored):
    if transpose_a:
        lhs = _knp.swapaxes(lhs, -1, -2)
    if transpose_b:
        rhs = _knp.swapaxes(rhs, -1, -2)
    return _knp.matmul(lhs, rhs)


def dot(lhs, rhs, transpose_a=False, transpose_b=False, **_ignored):
    if transpose_a:
        lhs = _knp.transpose(lhs)
    if transpose_b:
        rhs = _knp.transpose(rhs)
    return _knp.dot(lhs, rhs)


def SequenceMask(data, sequence_length=None, use_sequence_length=False, value=0.0, axis=0,
                 **_ignored):
    return _npx.sequence_mask(data, sequence_length, use_sequence_length=use_sequence_length,
                              value=value, axis=axis)


# Elementwise and broadcasting arithmetic: kiln always broadcasts as NumPy does.
elemwise_add = broadcast_add = broadcast_plus = _knp.add
elemwise_sub = broadcast_sub = broadcast_minus = _knp.subtract
elemwise_mul = broadcast_mul = _knp.multiply
elemwise_div = broadcast_div = _knp.true_divide
broadcast_maximum = _knp.maximum
broadcast_minimum = _knp.minimum
broadcast_power = _knp.power
broadcast_equal = _knp.equal
broadcast_greater = _knp.greater
broadcast_lesser = _knp.less
relu, sigmoid, tanh = _npx.relu, _npx.sigmoid, _npx.tanh
softmax, log_softmax = _npx.softmax, _npx.log_softmax
exp, log, sqrt, square, abs, sign = (_knp.exp, _knp.log, _knp.sqrt, _knp.square, _knp.abs,
                                     _knp.sign)
sum, mean, max, min, prod = _knp.sum, _knp.mean, _knp.max, _knp.min, _knp.prod
argmax, argmin, clip, where = _knp.argmax, _knp.argmin, _knp.clip, _knp.where
transpose, reshape, expand_dims, stack = (_knp.transpose, _knp.reshape, _knp.expand_dims,
                                          _knp.stack)
zeros_like, ones_like = _knp.zeros_like, _knp.ones_like
one_hot, pick = _npx.one_hot, _npx.pick
stop_gradient = _npx.stop_gradient
negative = _knp.negative


def __getattr__(name: str):
    # Operators added to npx later (topk, leaky_relu ...) under their MXNet 1.x names.
    fn = getattr(_npx, name, None)
    if fn is not None:
        return fn
    raise AttributeError(f"kiln has no MXNet 1.x operator named {name!r}")
