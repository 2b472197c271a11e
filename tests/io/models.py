"""Small kiln models for the file-format tests, the ONNX tests and the MXNet round trip.

Convolution and pooling blocks call `npx.convolution` / `npx.pooling`; `HAS_CONV` says whether
this build of kiln has those operators (tests that need them skip otherwise).
"""

from __future__ import annotations

import numpy as onp

import kiln
from kiln import autograd, np, npx
from kiln.gluon import nn
from kiln.gluon.parameter import Parameter

HAS_CONV = "convolution" in kiln.ops.REGISTRY and "pooling" in kiln.ops.REGISTRY


class Conv2D(nn.HybridBlock):
    """A 2-D convolution layer (in_channels learnt at the first forward)."""

    def __init__(self, channels, kernel, stride=1, padding=0, groups=1, use_bias=True,
                 activation=None):
        super().__init__()
        self._args = dict(kernel=(kernel, kernel), stride=(stride, stride),
                          pad=(padding, padding), num_filter=channels, num_group=groups)
        self._act = activation
        self.weight = Parameter("weight", shape=(channels, -1, kernel, kernel),
                                allow_deferred_init=True, init=kiln.init.Xavier(magnitude=2.0))
        self.bias = Parameter("bias", shape=(channels,), init="zeros",
                              allow_deferred_init=True) if use_bias else None

    def forward(self, x):
        if self.weight._data is None:
            k = self._args["kernel"]
            self.weight._infer_shape((self._args["num_filter"], x.shape[1] // self._args[
                "num_group"]) + k)
        bias = self.bias.data() if self.bias is not None else None
        y = npx.convolution(x, self.weight.data(), bias, no_bias=bias is None, **self._args)
        return npx.activation(y, self._act) if self._act else y


class Pool2D(nn.HybridBlock):
    def __init__(self, kind="max", size=2, stride=None, padding=0, ceil_mode=False,
                 global_pool=False, count_include_pad=True):
        super().__init__()
        self._args = dict(kernel=None if global_pool else (size, size), pool_type=kind,
                          global_pool=global_pool,
                          stride=None if global_pool else (stride or size,) * 2,
                          pad=None if global_pool else (padding, padding),
                          pooling_convention="full" if ceil_mode else "valid",
                          count_include_pad=count_include_pad)

    def forward(self, x):
        return npx.pooling(x, **self._args)


def mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dropout(0.3), nn.Dense(12, activation="tanh"),
            nn.Dense(4))
    return net, (3, 10)


def lenet():
    net = nn.HybridSequential()
    net.add(Conv2D(6, 5, activation="relu"), Pool2D("max", 2),
            Conv2D(8, 3, activation="sigmoid"), Pool2D("avg", 2, ceil_mode=True),
            nn.Flatten(), nn.Dense(20, activation="relu"), nn.Dense(10))
    return net, (2, 1, 20, 20)


class BasicBlock(nn.HybridBlock):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm, a 1x1 downsample."""

    def __init__(self, channels, stride, downsample):
        super().__init__()
        self.body = nn.HybridSequential()
        self.body.add(Conv2D(channels, 3, stride, 1, use_bias=False), nn.BatchNorm(),
                      nn.Activation("relu"), Conv2D(channels, 3, 1, 1, use_bias=False),
                      nn.BatchNorm())
        self.downsample = None
        if downsample:
            self.downsample = nn.HybridSequential()
            self.downsample.add(Conv2D(channels, 1, stride, use_bias=False), nn.BatchNorm())

    def forward(self, x):
        residual = self.downsample(x) if self.downsample is not None else x
        return npx.relu(self.body(x) + residual)


def resnet():
    net = nn.HybridSequential()
    net.add(Conv2D(8, 3, 1, 1, use_bias=False), nn.BatchNorm(), nn.Activation("relu"),
            BasicBlock(8, 1, False), BasicBlock(12, 2, True), BasicBlock(16, 2, True),
            Pool2D(global_pool=True, kind="avg"), nn.Flatten(), nn.Dense(5))
    return net, (2, 3, 16, 16)


class Relu6(nn.HybridBlock):
    def forward(self, x):
        return np.clip(x, 0, 6)


def mobilenet():
    net = nn.HybridSequential()
    net.add(Conv2D(8, 3, 2, 1, use_bias=False), nn.BatchNorm(), Relu6())
    for channels, stride in ((16, 1), (24, 2)):
        in_ch = 8 if channels == 16 else 16
        net.add(Conv2D(in_ch, 3, stride, 1, groups=in_ch, use_bias=False), nn.BatchNorm(),
                Relu6(), Conv2D(channels, 1, use_bias=False), nn.BatchNorm(), Relu6())
    net.add(Pool2D(global_pool=True, kind="avg"), nn.Flatten(), nn.Dense(5))
    return net, (2, 3, 16, 16)


class Elementwise(nn.HybridBlock):
    """Arithmetic (array and scalar forms, broadcasting), shapes, reductions and softmax."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(8, flatten=False)
        self.norm = nn.LayerNorm()

    def forward(self, x):
        h = self.dense(x)                                    # (N, 4, 8)
        a = npx.relu(h) * 2.0 + 1 - h / 4.0
        b = 3.0 - npx.sigmoid(h) ** 2 + np.maximum(h, 0.1) * np.tanh(h)
        c = np.concatenate([a, b], axis=-1)                  # (N, 4, 16)
        c = np.transpose(c, (0, 2, 1)).reshape(c.shape[0], 8, 8)
        s = c.sum(axis=1, keepdims=True) + c.mean(axis=2).reshape(c.shape[0], 1, 8)
        e = np.expand_dims(npx.softmax(s, axis=-1), 1)
        f = np.squeeze(e, axis=1) + npx.log_softmax(self.norm(c), axis=-1)
        return np.exp(-np.abs(f)) + np.sqrt(np.square(f) + 1)


def elementwise():
    return Elementwise(), (2, 4, 5)


MODELS = {"mlp": mlp, "elementwise": elementwise, "lenet": lenet, "resnet": resnet,
          "mobilenet": mobilenet}
CONV_MODELS = {"lenet", "resnet", "mobilenet"}


def build(name: str, seed: int = 0):
    """The model, an input batch, after three training steps' worth of BatchNorm updates."""
    onp.random.seed(seed)
    kiln.npx.seed(seed) if hasattr(kiln.npx, "seed") else None
    net, shape = MODELS[name]()
    net.initialize(kiln.init.Xavier(magnitude=2.0))
    x = np.array(onp.random.default_rng(seed).standard_normal(shape).astype(onp.float32))
    for _ in range(3):
        with autograd.record():
            net(x)
    return net, x
