"""Generate the MXNet-exported model files that kiln's tests read (tests/io/data/mxnet/).

Run in an environment with Apache MXNet 1.9.1, not in CI (CI has no MXNet):

    bash ../shared/peers/setup.sh mx          # creates /tmp/kiln-peers/mx
    /tmp/kiln-peers/mx/bin/python tests/io/data/make_mxnet_files.py

For each model and each mode ('legacy': plain MXNet 1.x; 'np': under `npx.set_np()`) it writes
`<model>_<mode>-symbol.json`, `<model>_<mode>-0000.params`, the input `<model>_<mode>_x.npy` and
MXNet's prediction `<model>_<mode>_y.npy`. Channel counts are small to keep the folder small.
It also writes `registered_ops.txt`, the names of every operator MXNet 1.9.1 registers, which a
test uses to check that kiln only writes operators MXNet has.
"""

import os
import sys

import numpy as np

import mxnet as mx
from mxnet import autograd, gluon, npx
from mxnet.gluon import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mxnet")


def mlp():
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu"), nn.Dropout(0.2), nn.Dense(12, activation="tanh"),
            nn.Dense(4))
    return net, (3, 10)


def lenet():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(6, 5, activation="relu"), nn.MaxPool2D(2, 2),
            nn.Conv2D(8, 3, activation="sigmoid"), nn.AvgPool2D(2, 2, ceil_mode=True),
            nn.Flatten(), nn.Dense(20, activation="relu"), nn.Dense(10))
    return net, (2, 1, 20, 20)


def resnet():
    from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1, ResNetV1

    # the model zoo's resnet18_v1 (thumbnail stem) with 1 block per stage and few channels
    net = ResNetV1(BasicBlockV1, [1, 1, 1, 1], [8, 8, 12, 16, 24], classes=5, thumbnail=True)
    return net, (2, 3, 16, 16)


class Misc(gluon.HybridBlock):
    """Grouped convolution, 'full' pooling, BatchNorm, Dropout, Concat, LeakyReLU, arithmetic."""

    def __init__(self, numpy_mode, **kwargs):
        super().__init__(**kwargs)
        self.numpy_mode = numpy_mode
        self.conv1 = nn.Conv2D(8, 3, padding=1, in_channels=4)
        self.conv2 = nn.Conv2D(8, 3, padding=1, groups=4, use_bias=False, in_channels=8)
        self.bn = nn.BatchNorm(in_channels=8)
        self.pool = nn.MaxPool2D(3, 2, ceil_mode=True)
        self.avg = nn.AvgPool2D(3, 2, padding=1, count_include_pad=False)
        self.leaky = nn.LeakyReLU(0.1)
        self.drop = nn.Dropout(0.5)
        self.flat = nn.Flatten()
        self.dense = nn.Dense(6)

    def hybrid_forward(self, F, x):
        y = self.conv1(x)
        z = self.bn(self.conv2(y))
        if self.numpy_mode:
            z = F.npx.relu(z) * 0.5 + 1
            c = F.np.concatenate([self.pool(z), self.avg(y) - 2.0], axis=1)
            c = self.leaky(c)
            h = self.dense(self.flat(self.drop(c)))
            return F.npx.softmax(h * h + h / 3, axis=-1)
        z = F.relu(z) * 0.5 + 1
        c = F.Concat(self.pool(z), self.avg(y) - 2.0, dim=1)
        c = self.leaky(c)
        h = self.dense(self.flat(self.drop(c)))
        return F.softmax(F.broadcast_add(h * h, h / 3), axis=-1)


def misc(numpy_mode):
    return Misc(numpy_mode), (2, 4, 10, 10)


def build(name, numpy_mode):
    if name == "misc":
        return misc(numpy_mode)
    return {"mlp": mlp, "lenet": lenet, "resnet": resnet}[name]()


def generate(mode: str) -> None:
    numpy_mode = mode == "np"
    for name in ("mlp", "lenet", "resnet", "misc"):
        mx.random.seed(1)
        np.random.seed(1)
        net, shape = build(name, numpy_mode)
        net.initialize(mx.init.Xavier(magnitude=2.0))
        rng = np.random.default_rng(7)
        x_np = rng.standard_normal(shape).astype(np.float32)
        x = mx.np.array(x_np) if numpy_mode else mx.nd.array(x_np)
        for _ in range(3):  # move BatchNorm's running statistics away from 0 and 1
            with autograd.record():
                net(x)
        net.hybridize()
        y = net(x)
        prefix = os.path.join(OUT, f"{name}_{mode}")
        net.export(prefix, 0)
        np.save(f"{prefix}_x.npy", x_np)
        np.save(f"{prefix}_y.npy", y.asnumpy())
        print("wrote", prefix)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("all", "legacy"):
        generate("legacy")
    if which in ("all", "np"):
        npx.set_np()
        generate("np")
    with open(os.path.join(OUT, "registered_ops.txt"), "w") as f:
        f.write("\n".join(sorted(mx.operator.get_all_registered_operators())) + "\n")


if __name__ == "__main__":
    main()
