"""The benchmark models, written with Gluon layers as a kiln user would.

    seed_mlp()         512-256-128-2, the seed's benchmark (W1)
    train_mlp()        784-256-128-10 with softmax cross-entropy (W2)
    lenet()            D2L's LeNet: sigmoid, average pooling (W3)
    resnet18()         D2L's ResNet-18 (conv with bias + batch norm), 1000 classes (W4)
"""

from __future__ import annotations

from kiln import npx
from kiln.gluon import HybridBlock, nn


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
    net.add(nn.Conv2D(6, 5, padding=2, activation="sigmoid", in_channels=1),
            nn.AvgPool2D(2, 2), nn.Conv2D(16, 5, activation="sigmoid", in_channels=6),
            nn.AvgPool2D(2, 2), nn.Flatten(),
            nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
            nn.Dense(10))
    return net


class Residual(HybridBlock):
    def __init__(self, in_channels: int, channels: int, use_1x1conv: bool = False,
                 strides: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2D(channels, 3, strides=strides, padding=1, in_channels=in_channels)
        self.conv2 = nn.Conv2D(channels, 3, padding=1, in_channels=channels)
        self.conv3 = nn.Conv2D(channels, 1, strides=strides, in_channels=in_channels) \
            if use_1x1conv else None
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
    net.add(nn.Conv2D(64, 7, strides=2, padding=3, in_channels=3), nn.BatchNorm(in_channels=64),
            nn.Activation("relu"), nn.MaxPool2D(3, 2, 1))
    channels = 64
    for i, out in enumerate((64, 128, 256, 512)):
        net.add(Residual(channels, out, use_1x1conv=i > 0, strides=1 if i == 0 else 2),
                Residual(out, out))
        channels = out
    net.add(nn.GlobalAvgPool2D(), nn.Flatten(), nn.Dense(classes))
    return net
