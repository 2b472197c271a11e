"""The benchmark models, written with kiln's operators (Gluon's Dense and BatchNorm, and small
convolution / pooling blocks over npx.convolution and npx.pooling until Gluon's Conv2D lands).

    seed_mlp()         512-256-128-2, the seed's benchmark (W1)
    train_mlp()        784-256-128-10 with softmax cross-entropy (W2)
    lenet()            D2L's LeNet: sigmoid, average pooling (W3)
    resnet18()         D2L's ResNet-18 (conv with bias + batch norm), 1000 classes (W4)
"""

from __future__ import annotations

from kiln import npx
from kiln.gluon import HybridBlock, Parameter, nn


class Conv2D(HybridBlock):
    def __init__(self, channels: int, in_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, activation: str | None = None, use_bias: bool = True):
        super().__init__()
        self._attrs = dict(kernel=(kernel, kernel), stride=(stride, stride),
                           pad=(padding, padding), num_filter=channels)
        self.weight = Parameter("weight", shape=(channels, in_channels, kernel, kernel))
        self.bias = Parameter("bias", shape=(channels,), init="zeros") if use_bias else None
        self._act = activation

    def forward(self, x):
        b = self.bias.data() if self.bias is not None else None
        y = npx.convolution(x, self.weight.data(), b, no_bias=b is None, **self._attrs)
        return npx.activation(y, self._act) if self._act else y


class Pool2D(HybridBlock):
    def __init__(self, pool_type: str, kernel: int = 0, stride: int = 1, padding: int = 0,
                 global_pool: bool = False):
        super().__init__()
        self._attrs = dict(pool_type=pool_type, global_pool=global_pool)
        if not global_pool:
            self._attrs.update(kernel=(kernel, kernel), stride=(stride, stride),
                               pad=(padding, padding))

    def forward(self, x):
        return npx.pooling(x, **self._attrs)


class Flatten(HybridBlock):
    def forward(self, x):
        return npx.batch_flatten(x)


def seed_mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    return net


class WithLoss(HybridBlock):
    """A network and its softmax cross-entropy loss: one hybridized training step."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x, y):
        out = npx.log_softmax(self.body(x))
        return -npx.pick(out, y).mean()


def train_mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(10))
    return net


def lenet():
    net = nn.HybridSequential()
    net.add(Conv2D(6, 1, 5, padding=2, activation="sigmoid"), Pool2D("avg", 2, 2),
            Conv2D(16, 6, 5, activation="sigmoid"), Pool2D("avg", 2, 2), Flatten(),
            nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
            nn.Dense(10))
    return net


class Residual(HybridBlock):
    def __init__(self, in_channels: int, channels: int, use_1x1conv: bool = False,
                 strides: int = 1):
        super().__init__()
        self.conv1 = Conv2D(channels, in_channels, 3, stride=strides, padding=1)
        self.conv2 = Conv2D(channels, channels, 3, padding=1)
        self.conv3 = Conv2D(channels, in_channels, 1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm(in_channels=channels)
        self.bn2 = nn.BatchNorm(in_channels=channels)

    def forward(self, x):
        y = npx.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)
        return npx.relu(y + x)


def resnet18(classes: int = 1000):
    net = nn.HybridSequential()
    net.add(Conv2D(64, 3, 7, stride=2, padding=3), nn.BatchNorm(in_channels=64),
            nn.Activation("relu"), Pool2D("max", 3, 2, 1))
    channels = 64
    for i, out in enumerate((64, 128, 256, 512)):
        net.add(Residual(channels, out, use_1x1conv=i > 0, strides=1 if i == 0 else 2),
                Residual(out, out))
        channels = out
    net.add(Pool2D("avg", global_pool=True), Flatten(), nn.Dense(classes))
    return net
