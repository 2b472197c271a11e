"""Basic layers: containers, Dense, activations, dropout, normalisation, embedding, lambdas."""

from __future__ import annotations

from ... import numpy as _knp
from ... import numpy_extension as npx
from ...base import KilnError, ShapeError
from ...ops import nn as _nn_ops
from ...ops import norm as _norm_ops
from ..block import Block, HybridBlock
from ..parameter import Parameter

__all__ = ["Sequential", "HybridSequential", "Dense", "Activation", "Dropout", "BatchNorm",
           "LayerNorm", "InstanceNorm", "GroupNorm", "Flatten", "Embedding", "Lambda",
           "HybridLambda", "Identity"]


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class _SequentialMixin:
    """What Sequential and HybridSequential share: adding, indexing and running children."""

    def add(self, *blocks) -> None:
        """Append blocks, run in order."""
        for block in blocks:
            self.register_child(block)
            object.__setattr__(self, str(len(self._children) - 1), block)

    def forward(self, x, *args):
        for block in self._children.values():
            x = block(x, *args)
            args = ()
            if isinstance(x, (tuple, list)) and not _is_array_like(x):
                x, *args = x
        return x

    def __getitem__(self, key):
        children = list(self._children.values())
        if isinstance(key, slice):
            net = type(self)()
            net.add(*children[key])
            return net
        return children[key]

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self):
        return iter(self._children.values())


def _is_array_like(x) -> bool:
    return hasattr(x, "shape")


class Sequential(_SequentialMixin, Block):
    """Children run one after another (imperatively)."""


class HybridSequential(_SequentialMixin, HybridBlock):
    """Children run one after another; can be hybridized as a whole."""


class Dense(HybridBlock):
    """A fully connected layer: activation(x W^T + b).

    `in_units` may be left 0: it is learnt from the first input (deferred initialization).
    With `flatten=True` (default) inputs of more than two dimensions are flattened after the
    first axis.
    """

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 flatten: bool = True, dtype="float32", weight_initializer=None,
                 bias_initializer="zeros", in_units: int = 0, prefix=None, params=None):
        super().__init__(prefix, params)
        self._units = int(units)
        self._in_units = int(in_units)
        self._flatten = flatten
        self._activation = activation
        self.weight = Parameter("weight", shape=(units, in_units), init=weight_initializer,
                                dtype=dtype, allow_deferred_init=True)
        self.bias = Parameter("bias", shape=(units,), init=bias_initializer, dtype=dtype,
                              allow_deferred_init=True) if use_bias else None
        if activation is not None and activation not in _nn_ops.ACTIVATIONS:
            raise KilnError(f"Dense: unknown activation {activation!r}; choose one of "
                            f"{_nn_ops.ACTIVATIONS}")

    def forward(self, x):
        w = self.weight
        if w._data is None:
            in_units = _prod(x.shape[1:]) if self._flatten else x.shape[-1]
            w._infer_shape((self._units, in_units))
        bias = self.bias.data() if self.bias is not None else None
        y = _nn_ops.fully_connected(x, w.data(), bias, self._units, bias is None, self._flatten)
        if self._activation is not None:
            y = _nn_ops.activation(y, self._activation)
        return y

    def __repr__(self) -> str:
        shape = self.weight.shape
        in_units = shape[1] if shape and shape[1] > 0 else None
        act = f"Activation({self._activation})" if self._activation else "linear"
        return f"Dense({in_units} -> {self._units}, {act})"


class Activation(HybridBlock):
    """An activation: 'relu', 'sigmoid', 'tanh', 'softrelu', 'softsign', 'log_sigmoid', 'mish'."""

    def __init__(self, activation: str, prefix=None, params=None):
        super().__init__(prefix, params)
        if activation not in _nn_ops.ACTIVATIONS:
            raise KilnError(f"Activation: unknown activation {activation!r}; choose one of "
                            f"{_nn_ops.ACTIVATIONS}")
        self._act_type = activation

    def forward(self, x):
        return _nn_ops.activation(x, self._act_type)

    def _repr_args(self) -> str:
        return self._act_type


class Dropout(HybridBlock):
    """Zero inputs with probability `rate` while training (identity in prediction)."""

    def __init__(self, rate: float, axes=(), prefix=None, params=None):
        super().__init__(prefix, params)
        if not 0.0 <= rate <= 1.0:
            raise KilnError(f"Dropout rate must be in [0, 1], not {rate}")
        self._rate = rate
        self._axes = tuple(axes)

    def forward(self, x):
        return _nn_ops.dropout(x, p=self._rate, axes=self._axes)

    def _repr_args(self) -> str:
        return f"p = {self._rate}, axes={self._axes}"


class BatchNorm(HybridBlock):
    """Batch normalisation over `axis` (channels), with running statistics for prediction."""

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 center: bool = True, scale: bool = True, use_global_stats: bool = False,
                 beta_initializer="zeros", gamma_initializer="ones",
                 running_mean_initializer="zeros", running_variance_initializer="ones",
                 in_channels: int = 0, prefix=None, params=None, **_mxnet_only):
        super().__init__(prefix, params)
        self._axis, self._momentum, self._eps = axis, momentum, epsilon
        self._center, self._scale = center, scale
        self._use_global_stats = use_global_stats
        shape = (in_channels,)
        self.gamma = Parameter("gamma", shape=shape, init=gamma_initializer,
                               grad_req="write" if scale else "null", allow_deferred_init=True)
        self.beta = Parameter("beta", shape=shape, init=beta_initializer,
                              grad_req="write" if center else "null", allow_deferred_init=True)
        self.running_mean = Parameter("running_mean", shape=shape, grad_req="null",
                                      init=running_mean_initializer, allow_deferred_init=True,
                                      differentiable=False)
        self.running_var = Parameter("running_var", shape=shape, grad_req="null",
                                     init=running_variance_initializer, allow_deferred_init=True,
                                     differentiable=False)

    def forward(self, x):
        if self.gamma._data is None:
            c = x.shape[self._axis]
            for p in (self.gamma, self.beta, self.running_mean, self.running_var):
                p._infer_shape((c,))
        return _nn_ops.batch_norm(x, self.gamma.data(), self.beta.data(),
                                  self.running_mean.data(), self.running_var.data(),
                                  eps=self._eps, momentum=self._momentum,
                                  fix_gamma=not self._scale,
                                  use_global_stats=self._use_global_stats, axis=self._axis)

    def _repr_args(self) -> str:
        c = self.gamma.shape[0] if self.gamma.shape else None
        return (f"axis={self._axis}, eps={self._eps}, momentum={self._momentum}, "
                f"fix_gamma={not self._scale}, use_global_stats={self._use_global_stats}, "
                f"in_channels={c if c and c > 0 else None}")


class _AffineNorm(HybridBlock):
    """A normalisation with a per-channel scale (gamma) and shift (beta), whose channel count
    is learnt from the first input when not given."""

    def __init__(self, center: bool, scale: bool, beta_initializer, gamma_initializer,
                 in_channels: int, prefix, params):
        super().__init__(prefix, params)
        self.gamma = Parameter("gamma", shape=(in_channels,), init=gamma_initializer,
                               grad_req="write" if scale else "null", allow_deferred_init=True)
        self.beta = Parameter("beta", shape=(in_channels,), init=beta_initializer,
                              grad_req="write" if center else "null", allow_deferred_init=True)

    def _affine_params(self, x, axis: int):
        if self.gamma._data is None:
            c = x.shape[axis]
            self.gamma._infer_shape((c,))
            self.beta._infer_shape((c,))
        return self.gamma.data(), self.beta.data()


class LayerNorm(_AffineNorm):
    """Normalise each sample over `axis`, then scale and shift."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, prefix=None, params=None):
        super().__init__(center, scale, beta_initializer, gamma_initializer, in_channels,
                         prefix, params)
        self._axis, self._eps = axis, epsilon

    def forward(self, x):
        gamma, beta = self._affine_params(x, self._axis)
        return _nn_ops.layer_norm(x, gamma, beta, axis=self._axis, eps=self._eps)

    def _repr_args(self) -> str:
        return f"axis={self._axis}, eps={self._eps}"


class InstanceNorm(_AffineNorm):
    """Normalise each sample and channel over the spatial axes."""

    def __init__(self, axis: int = 1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = False, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, prefix=None, params=None):
        super().__init__(center, scale, beta_initializer, gamma_initializer, in_channels,
                         prefix, params)
        self._axis, self._eps = axis, epsilon

    def forward(self, x):
        ndim = len(x.shape)
        axis = self._axis % ndim
        if ndim < 3 or axis == 0:
            raise ShapeError(f"InstanceNorm needs spatial axes besides the batch and channel "
                             f"axes; got input of shape {tuple(x.shape)} (channel axis "
                             f"{self._axis})")
        gamma, beta = self._affine_params(x, axis)
        if axis != 1:  # the operator takes channels on axis 1
            return _knp.moveaxis(_norm_ops.instance_norm(_knp.moveaxis(x, axis, 1), gamma,
                                                         beta, eps=self._eps), 1, axis)
        return _norm_ops.instance_norm(x, gamma, beta, eps=self._eps)


class GroupNorm(_AffineNorm):
    """Normalise over groups of channels (axis 1)."""

    def __init__(self, num_groups: int = 1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, prefix=None, params=None):
        super().__init__(center, scale, beta_initializer, gamma_initializer, in_channels,
                         prefix, params)
        self._num_groups, self._eps = num_groups, epsilon

    def forward(self, x):
        c = x.shape[1]
        if c % self._num_groups:
            raise ShapeError(f"GroupNorm: {c} channels cannot be split into "
                             f"{self._num_groups} groups; num_groups must divide the channel "
                             "count")
        gamma, beta = self._affine_params(x, 1)
        # NOTE: composed of np operators rather than npx.group_norm, so that export() writes
        # operators MXNet 1.x reads (its GroupNorm takes one gamma per group, not per channel).
        shape = tuple(x.shape)
        grouped = _knp.reshape(x, (shape[0], self._num_groups, c // self._num_groups)
                               + shape[2:])
        axes = tuple(range(2, len(shape) + 1))
        mean = _knp.mean(grouped, axis=axes, keepdims=True)
        centered = grouped - mean
        var = _knp.mean(_knp.square(centered), axis=axes, keepdims=True)
        y = _knp.reshape(centered / _knp.sqrt(var + self._eps), shape)
        channel = (1, -1) + (1,) * (len(shape) - 2)
        return y * _knp.reshape(gamma, channel) + _knp.reshape(beta, channel)


class Flatten(HybridBlock):
    """Reshape to (batch, everything else)."""

    def forward(self, x):
        return _nn_ops.batch_flatten(x)


class Embedding(HybridBlock):
    """Map integer indices to dense vectors (rows of a learnt table)."""

    def __init__(self, input_dim: int, output_dim: int, dtype="float32",
                 weight_initializer=None, sparse_grad: bool = False, prefix=None, params=None):
        super().__init__(prefix, params)
        self._input_dim, self._output_dim = input_dim, output_dim
        self.weight = Parameter("weight", shape=(input_dim, output_dim), dtype=dtype,
                                init=weight_initializer)

    def forward(self, x):
        return _nn_ops.embedding(x, self.weight.data(), self._input_dim, self._output_dim)

    def _repr_args(self) -> str:
        return f"{self._input_dim} -> {self._output_dim}, {self.weight.dtype.name}"


class Identity(HybridBlock):
    def forward(self, x):
        return x


class Lambda(Block):
    """Wrap a function of arrays (or the name of a `kiln.np`/`npx` function) as a block."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix)
        self._func = _resolve_function(function, symbolic=False)
        self._func_name = getattr(function, "__name__", str(function))

    def forward(self, *args):
        return self._func(*args)

    def _repr_args(self) -> str:
        return self._func_name


class HybridLambda(HybridBlock):
    """Wrap `function(F, x, ...)` (or an operator name) as a hybridizable block."""

    def __init__(self, function, prefix=None):
        super().__init__(prefix)
        self._name_only = isinstance(function, str)
        self._func = _resolve_function(function, symbolic=True) if self._name_only else function
        self._func_name = getattr(function, "__name__", str(function))

    def hybrid_forward(self, F, x, *args):
        if self._name_only:
            return self._func(x, *args)
        return self._func(F, x, *args)

    def _repr_args(self) -> str:
        return self._func_name


def _resolve_function(function, symbolic: bool):
    if callable(function):
        return function
    if isinstance(function, str):
        from ... import numpy as np

        for namespace in (npx, np):
            fn = getattr(namespace, function, None)
            if callable(fn):
                return fn
        raise KilnError(f"Lambda: no kiln.np or kiln.npx function named {function!r}")
    raise KilnError(f"Lambda needs a function or a function name, not {function!r}")
