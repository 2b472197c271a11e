"""Convolution and pooling on every backend against eager execution.

The operators (`convolution`, `deconvolution`, `convolution_weight_grad`, `pooling`,
`pooling_backward`) come from another branch; these tests skip until they are registered.
"""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, np, npx
from kiln.gluon import HybridBlock, Parameter, nn



def data(*shape, seed=0):
    return np.array(onp.random.default_rng(seed).standard_normal(shape).astype(onp.float32))


def close(a, b, rtol=1e-4, atol=1e-4):
    onp.testing.assert_allclose(onp.asarray(a), onp.asarray(b), rtol=rtol, atol=atol)


class Conv(HybridBlock):
    def __init__(self, channels, in_channels, kernel, stride=1, pad=0, dilate=1, groups=1,
                 bias=True, act=None):
        super().__init__()
        nd = len(kernel)
        self.attrs = dict(kernel=kernel, stride=(stride,) * nd, pad=(pad,) * nd,
                          dilate=(dilate,) * nd, num_filter=channels, num_group=groups)
        self.weight = Parameter("weight", shape=(channels, in_channels // groups) + kernel)
        self.bias = Parameter("bias", shape=(channels,), init="zeros") if bias else None
        self.act = act

    def forward(self, x):
        b = self.bias.data() if self.bias is not None else None
        y = npx.convolution(x, self.weight.data(), b, no_bias=b is None, **self.attrs)
        return npx.activation(y, self.act) if self.act else y


class Pool(HybridBlock):
    def __init__(self, **attrs):
        super().__init__()
        self.attrs = attrs

    def forward(self, x):
        return npx.pooling(x, **self.attrs)


def check_block(block, x, backend, rtol=1e-4, atol=1e-4):
    if any(p._data is None for p in block.collect_params().values()):
        block.initialize()
    for p in block.collect_params().values():
        if p._data is not None and p.name.endswith("bias"):
            p.data()._data[...] = onp.linspace(-0.5, 0.5, p.shape[0])
    ref = block(x)._data
    block.hybridize(backend=backend)
    close(block(x)._data, ref, rtol, atol)
    close(block(x)._data, ref, rtol, atol)
    return block


CONVS = {
    "3x3_pad": dict(channels=6, in_channels=3, kernel=(3, 3), pad=1),
    "stride2_groups": dict(channels=8, in_channels=4, kernel=(3, 3), stride=2, pad=1, groups=2),
    "1x1": dict(channels=5, in_channels=4, kernel=(1, 1)),
    "1x1_stride2": dict(channels=5, in_channels=4, kernel=(1, 1), stride=2),
    "depthwise": dict(channels=4, in_channels=4, kernel=(3, 3), pad=1, groups=4),
    "dilated": dict(channels=3, in_channels=2, kernel=(3, 3), pad=2, dilate=2),
    "lenet5x5_relu": dict(channels=6, in_channels=1, kernel=(5, 5), pad=2, act="relu"),
    "conv1d": dict(channels=4, in_channels=3, kernel=(3,), pad=1),
    "no_bias": dict(channels=4, in_channels=3, kernel=(2, 2), bias=False),
}


@pytest.mark.parametrize("name", sorted(CONVS))
@pytest.mark.parametrize("batch", [1, 3])
def test_convolution_forward(backend, name, batch):
    cfg = CONVS[name]
    spatial = (11,) if len(cfg["kernel"]) == 1 else (9, 10)
    x = data(batch, cfg["in_channels"], *spatial, seed=1)
    check_block(Conv(**cfg), x, backend)


POOLS = {
    "max2x2": dict(kernel=(2, 2), stride=(2, 2), pool_type="max"),
    "avg2x2": dict(kernel=(2, 2), stride=(2, 2), pool_type="avg"),
    "max3x3_s2_p1": dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max"),
    "avg_full_nopad": dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
                           pooling_convention="full", count_include_pad=False),
    "sum": dict(kernel=(2, 3), stride=(1, 2), pool_type="sum"),
    "global_avg": dict(global_pool=True, pool_type="avg"),
    "global_max": dict(global_pool=True, pool_type="max"),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pooling_forward_and_gradient(backend, name):
    pool = Pool(**POOLS[name])
    x = data(2, 3, 9, 8, seed=2)
    ref = pool(x)._data
    x.attach_grad()
    with autograd.record():
        y = (pool(x) * data(*ref.shape, seed=3)).sum()
    y.backward()
    ref_grad = x.grad._data.copy()
    pool.hybridize(backend=backend)
    close(pool(x)._data, ref, 1e-5, 1e-6)
    x.attach_grad()
    with autograd.record():
        y = (pool(x) * data(*ref.shape, seed=3)).sum()
    y.backward()
    close(x.grad._data, ref_grad, 1e-5, 1e-6)


class LeNet(HybridBlock):
    def __init__(self):
        super().__init__()
        self.c1 = Conv(6, 1, (5, 5), pad=2, act="sigmoid")
        self.c2 = Conv(16, 6, (5, 5), act="sigmoid")
        self.p = Pool(kernel=(2, 2), stride=(2, 2), pool_type="avg")
        self.d1, self.d2, self.d3 = nn.Dense(120, activation="sigmoid"), \
            nn.Dense(84, activation="sigmoid"), nn.Dense(10)

    def forward(self, x, y):
        h = self.p(self.c2(self.p(self.c1(x))))
        out = npx.log_softmax(self.d3(self.d2(self.d1(h))))
        return -npx.pick(out, y).mean()


def test_lenet_training_gradients(backend):
    net = LeNet()
    net.initialize()
    x, y = data(4, 1, 28, 28, seed=4), np.array(onp.array([1, 3, 5, 7], onp.float32))

    def step():
        with autograd.record():
            loss = net(x, y)
        loss.backward()
        return float(loss._data), [p.grad()._data.copy() for p in
                                   net.collect_params().values()]
    ref_loss, ref_grads = step()
    net.hybridize(backend=backend)
    loss, got = step()
    assert abs(loss - ref_loss) < 1e-5
    for a, b in zip(got, ref_grads):
        close(a, b, 1e-3, 1e-5)
    if backend == "native":
        info = list(net._cache.entries.values())[0].compiled.info
        assert not info["python_nodes"], info


class ResidualBlock(HybridBlock):
    """conv-bn-relu-conv-bn + (1x1 conv-bn shortcut) -> relu, as in ResNet."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = Conv(cout, cin, (3, 3), stride=stride, pad=1, bias=False)
        self.b1 = nn.BatchNorm(in_channels=cout)
        self.c2 = Conv(cout, cout, (3, 3), pad=1, bias=False)
        self.b2 = nn.BatchNorm(in_channels=cout)
        self.sc = Conv(cout, cin, (1, 1), stride=stride, bias=False)
        self.b3 = nn.BatchNorm(in_channels=cout)

    def forward(self, x):
        shortcut = self.b3(self.sc(x))
        h = npx.relu(self.b1(self.c1(x)))
        return npx.relu(self.b2(self.c2(h)) + shortcut)


def test_residual_block_inference_folds_batch_norm(backend):
    block = ResidualBlock(4, 8, 2)
    block.initialize()
    rng = onp.random.default_rng(5)
    for name, p in block.collect_params().items():
        if "running_var" in name or "gamma" in name:
            p.data()._data[...] = rng.uniform(0.5, 2.0, p.shape)
        elif "running_mean" in name or "beta" in name:
            p.data()._data[...] = rng.standard_normal(p.shape)
    x = data(1, 4, 12, 12, seed=6)
    check_block(block, x, backend, 1e-4, 1e-4)
    if backend == "native":
        entry = list(block._cache.entries.values())[0]
        info = entry.compiled.info
        assert not info["python_nodes"], info
        src = entry.compiled.source
        assert "in the convolution's epilogue" in src      # relu / residual add fused
        assert "weight kept unscaled" in src               # batch norm folded into the scale



FIRST_COMPILE = """
import json
from kiln import np
from kiln.gluon import nn
net = nn.HybridSequential()
net.add(nn.Conv2D(8, 3, padding=1, in_channels=3), nn.BatchNorm(in_channels=8),
        nn.Activation("relu"))
net.initialize()
x = np.ones((1, 3, 10, 10))
net(x)
net.hybridize(backend="native")
net(x)
src = list(net._cache.entries.values())[0].compiled.source
print(json.dumps(["weight kept unscaled" in src, "in the convolution's epilogue" in src]))
"""


@pytest.mark.usefixtures("require_native")
def test_the_first_graph_of_a_process_gets_the_convolution_fusions(tmp_path):
    """The fusions are registered when the lowering modules are imported; the first compile of
    a fresh process (here with an empty cache, so the C is generated) must have them too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, KILN_CACHE_DIR=str(tmp_path),
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", FIRST_COMPILE], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True]

def test_deconvolution(backend):
    class Deconv(HybridBlock):
        def __init__(self):
            super().__init__()
            self.weight = Parameter("weight", shape=(4, 2, 3, 3))
            self.bias = Parameter("bias", shape=(4,))

        def forward(self, x):
            return npx.deconvolution(x, self.weight.data(), self.bias.data(), kernel=(3, 3),
                                     stride=(2, 2), pad=(1, 1), adj=(1, 1), num_filter=4,
                                     num_group=2, no_bias=False)
    check_block(Deconv(), data(2, 4, 5, 6, seed=7), backend)
