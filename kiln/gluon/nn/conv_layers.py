"""Convolution and pooling layers (MXNet Gluon's `Conv2D`, `MaxPool2D` ...), channel-first.

Weights are (channels, in_channels / groups, *kernel_size) for convolutions and
(in_channels, channels / groups, *kernel_size) for transposed convolutions, as in MXNet, so
parameter files move between the two. `in_channels=0` defers the weight's shape to the first
forward.
"""

from __future__ import annotations

from ...base import KilnError
from ...ops import conv as _conv
from ...ops import nn as _nn_ops
from ...ops import pooling as _pool
from ..block import HybridBlock
from ..parameter import Parameter

__all__ = ["Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
           "Conv3DTranspose", "MaxPool1D", "MaxPool2D", "MaxPool3D", "AvgPool1D", "AvgPool2D",
           "AvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D", "GlobalMaxPool3D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalAvgPool3D"]

_LAYOUTS = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


def _tuple(value, n: int, what: str) -> tuple:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise KilnError(f"{what} needs {n} values for a {n}-D layer, not {value}")
    return value


def _check_layout(layout: str | None, n: int, cls: str) -> str:
    expected = _LAYOUTS[n]
    if layout not in (None, expected):
        raise KilnError(f"{cls}: kiln computes channel-first layouts only ({expected}), not "
                        f"{layout!r}; transpose the input instead")
    return expected


class _Conv(HybridBlock):
    """What convolutions and transposed convolutions share: geometry, parameters, repr."""

    _dims = 2
    _transpose = False

    def __init__(self, channels: int, kernel_size, strides=1, padding=0, dilation=1,
                 groups: int = 1, layout: str | None = None, activation: str | None = None,
                 use_bias: bool = True, weight_initializer=None, bias_initializer="zeros",
                 in_channels: int = 0, output_padding=0, prefix=None, params=None):
        super().__init__(prefix, params)
        n = self._dims
        cls = type(self).__name__
        self._layout = _check_layout(layout, n, cls)
        self._channels = int(channels)
        self._in_channels = int(in_channels)
        self._kernel = _tuple(kernel_size, n, f"{cls} kernel_size")
        self._strides = _tuple(strides, n, f"{cls} strides")
        self._padding = _tuple(padding, n, f"{cls} padding")
        self._dilation = _tuple(dilation, n, f"{cls} dilation")
        self._output_padding = _tuple(output_padding, n, f"{cls} output_padding")
        self._groups = int(groups)
        if self._channels % self._groups:
            raise KilnError(f"{cls}: {channels} channels do not split into {groups} groups")
        if activation is not None and activation not in _nn_ops.ACTIVATIONS:
            raise KilnError(f"{cls}: unknown activation {activation!r}; choose one of "
                            f"{_nn_ops.ACTIVATIONS}")
        self._activation = activation
        self.weight = Parameter("weight", shape=self._weight_shape(self._in_channels),
                                init=weight_initializer, allow_deferred_init=True)
        self.bias = Parameter("bias", shape=(self._channels,), init=bias_initializer,
                              allow_deferred_init=True) if use_bias else None

    def _weight_shape(self, in_channels: int) -> tuple:
        if self._transpose:
            return (in_channels, self._channels // self._groups) + self._kernel
        per_group = in_channels // self._groups if in_channels else 0
        return (self._channels, per_group) + self._kernel

    def forward(self, x):
        if self.weight._data is None:
            c = x.shape[1]
            if c % self._groups:
                raise KilnError(f"{type(self).__name__}: input with {c} channels does not "
                                f"split into {self._groups} groups")
            self.weight._infer_shape(self._weight_shape(c))
        bias = self.bias.data() if self.bias is not None else None
        y = self._apply(x, self.weight.data(), bias)
        if self._activation is not None:
            y = _nn_ops.activation(y, self._activation)
        return y

    def _apply(self, x, w, b):
        return _conv.convolution(x, w, b, kernel=self._kernel, stride=self._strides,
                                 dilate=self._dilation, pad=self._padding,
                                 num_filter=self._channels, num_group=self._groups,
                                 no_bias=b is None)

    def __repr__(self) -> str:
        shape = self.weight.shape
        c_in = (shape[0] if self._transpose else shape[1] * self._groups) if shape else 0
        c_in = c_in if c_in and c_in > 0 else None
        text = (f"{type(self).__name__}({c_in} -> {self._channels}, "
                f"kernel_size={self._kernel}, stride={self._strides}")
        if any(self._padding):
            text += f", padding={self._padding}"
        if any(d != 1 for d in self._dilation):
            text += f", dilation={self._dilation}"
        if self._groups != 1:
            text += f", groups={self._groups}"
        if self.bias is None:
            text += ", bias=False"
        if self._activation:
            text += f", Activation({self._activation})"
        return text + ")"


class _ConvTranspose(_Conv):
    _transpose = True

    def _apply(self, x, w, b):
        return _conv.deconvolution(x, w, b, kernel=self._kernel, stride=self._strides,
                                   dilate=self._dilation, pad=self._padding,
                                   adj=self._output_padding, num_filter=self._channels,
                                   num_group=self._groups, no_bias=b is None)


class Conv1D(_Conv):
    """1-D convolution over (batch, channels, width)."""

    _dims = 1


class Conv2D(_Conv):
    """2-D convolution over (batch, channels, height, width)."""

    _dims = 2


class Conv3D(_Conv):
    """3-D convolution over (batch, channels, depth, height, width)."""

    _dims = 3


class Conv1DTranspose(_ConvTranspose):
    _dims = 1


class Conv2DTranspose(_ConvTranspose):
    """2-D transposed convolution (upsampling); `output_padding` adds to one side."""

    _dims = 2


class Conv3DTranspose(_ConvTranspose):
    _dims = 3


class _Pool(HybridBlock):
    _dims = 2
    _type = "max"
    _global = False

    def __init__(self, pool_size=2, strides=None, padding=0, ceil_mode: bool = False,
                 layout: str | None = None, count_include_pad: bool = True, prefix=None,
                 params=None):
        super().__init__(prefix, params)
        n = self._dims
        cls = type(self).__name__
        self._layout = _check_layout(layout, n, cls)
        self._size = _tuple(pool_size, n, f"{cls} pool_size")
        self._strides = self._size if strides is None else _tuple(strides, n, f"{cls} strides")
        self._padding = _tuple(padding, n, f"{cls} padding")
        self._ceil_mode = bool(ceil_mode)
        self._count_include_pad = bool(count_include_pad)

    def forward(self, x):
        if self._global:
            return _pool.pooling(x, kernel=(1,) * self._dims, pool_type=self._type,
                                 global_pool=True)
        return _pool.pooling(x, kernel=self._size, pool_type=self._type, stride=self._strides,
                             pad=self._padding,
                             pooling_convention="full" if self._ceil_mode else "valid",
                             count_include_pad=self._count_include_pad)

    def __repr__(self) -> str:
        if self._global:
            return f"{type(self).__name__}()"
        return (f"{type(self).__name__}(size={self._size}, stride={self._strides}, "
                f"padding={self._padding}, ceil_mode={self._ceil_mode})")


class _GlobalPool(_Pool):
    _global = True

    def __init__(self, layout: str | None = None, prefix=None, params=None):
        super().__init__(1, None, 0, False, layout, True, prefix, params)


def _pool_class(name: str, dims: int, pool_type: str, is_global: bool, doc: str):
    base = _GlobalPool if is_global else _Pool
    return type(name, (base,), {"_dims": dims, "_type": pool_type, "__doc__": doc,
                                "__module__": __name__})


MaxPool1D = _pool_class("MaxPool1D", 1, "max", False, "Max pooling over (N, C, W).")
MaxPool2D = _pool_class("MaxPool2D", 2, "max", False, "Max pooling over (N, C, H, W).")
MaxPool3D = _pool_class("MaxPool3D", 3, "max", False, "Max pooling over (N, C, D, H, W).")
AvgPool1D = _pool_class("AvgPool1D", 1, "avg", False, "Average pooling over (N, C, W).")
AvgPool2D = _pool_class("AvgPool2D", 2, "avg", False, "Average pooling over (N, C, H, W).")
AvgPool3D = _pool_class("AvgPool3D", 3, "avg", False, "Average pooling over (N, C, D, H, W).")
GlobalMaxPool1D = _pool_class("GlobalMaxPool1D", 1, "max", True, "Max over the width.")
GlobalMaxPool2D = _pool_class("GlobalMaxPool2D", 2, "max", True, "Max over height and width.")
GlobalMaxPool3D = _pool_class("GlobalMaxPool3D", 3, "max", True, "Max over D, H and W.")
GlobalAvgPool1D = _pool_class("GlobalAvgPool1D", 1, "avg", True, "Mean over the width.")
GlobalAvgPool2D = _pool_class("GlobalAvgPool2D", 2, "avg", True,
                              "Mean over height and width.")
GlobalAvgPool3D = _pool_class("GlobalAvgPool3D", 3, "avg", True, "Mean over D, H and W.")
