"""Convolution and pooling layers: shapes, deferred initialization, parameter layout, and values
against the npx operators and against plain NumPy loops."""

import numpy as onp
import pytest

from kiln import KilnError, autograd, np, npx
from kiln.gluon import nn
from kiln.test_utils import assert_almost_equal


def _conv_reference(x, w, b, stride, pad):
    """2-D cross-correlation by loops (batch, out channel, output pixel)."""
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = onp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = onp.zeros((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = onp.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def test_conv2d_deferred_init_shapes_and_values():
    layer = nn.Conv2D(4, kernel_size=3, strides=2, padding=1)
    layer.initialize()
    assert layer.weight.shape == (4, -1, 3, 3)
    with pytest.raises(KilnError, match="deferred"):
        layer.weight.data()
    x = np.random.normal(size=(2, 3, 7, 7))
    y = layer(x)
    assert y.shape == (2, 4, 4, 4) and layer.weight.shape == (4, 3, 3, 3)
    ref = _conv_reference(x.asnumpy().astype("f8"), layer.weight.data().asnumpy(),
                          layer.bias.data().asnumpy(), stride=2, pad=1)
    assert_almost_equal(y, ref, rtol=1e-4, atol=1e-5)


def test_grouped_and_1d_3d_convolutions():
    g = nn.Conv2D(6, 3, groups=3, in_channels=6, use_bias=False)
    g.initialize()
    assert g.weight.shape == (6, 2, 3, 3) and g.bias is None
    assert g(np.ones((1, 6, 5, 5))).shape == (1, 6, 3, 3)
    c1 = nn.Conv1D(5, 3, dilation=2)
    c1.initialize()
    assert c1(np.ones((2, 4, 10))).shape == (2, 5, 6)
    c3 = nn.Conv3D(2, (1, 2, 3))
    c3.initialize()
    assert c3(np.ones((1, 3, 4, 4, 4))).shape == (1, 2, 4, 3, 2)
    with pytest.raises(KilnError, match="groups"):
        nn.Conv2D(5, 3, groups=2)
    with pytest.raises(KilnError, match="channel-first"):
        nn.Conv2D(5, 3, layout="NHWC")


def test_conv2d_transpose_upsamples_and_inverts_conv_shapes():
    up = nn.Conv2DTranspose(3, kernel_size=4, strides=2, padding=1)
    up.initialize()
    x = np.random.normal(size=(2, 5, 6, 6))
    y = up(x)
    assert y.shape == (2, 3, 12, 12) and up.weight.shape == (5, 3, 4, 4)
    manual = npx.deconvolution(x, up.weight.data(), up.bias.data(), kernel=(4, 4),
                               stride=(2, 2), pad=(1, 1), num_filter=3, no_bias=False)
    assert_almost_equal(y, manual)


@pytest.mark.parametrize("cls, pool_type", [(nn.MaxPool2D, "max"), (nn.AvgPool2D, "avg")])
def test_pooling_layers_match_the_operator(cls, pool_type):
    x = np.random.normal(size=(2, 3, 7, 7))
    layer = cls(pool_size=3, strides=2, padding=1, ceil_mode=True)
    y = layer(x)
    ref = npx.pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type=pool_type,
                      pooling_convention="full")
    assert y.shape == (2, 3, 4, 4)
    assert_almost_equal(y, ref)
    assert cls()(x).shape == (2, 3, 3, 3)  # default: 2x2 windows, stride = window


def test_global_pooling_and_1d_pooling():
    x = np.random.normal(size=(2, 3, 5, 4))
    assert_almost_equal(nn.GlobalAvgPool2D()(x), x.asnumpy().mean(axis=(2, 3), keepdims=True),
                        rtol=1e-5)
    assert_almost_equal(nn.GlobalMaxPool2D()(x), x.asnumpy().max(axis=(2, 3), keepdims=True))
    assert nn.MaxPool1D(2)(np.ones((1, 2, 9))).shape == (1, 2, 4)
    assert nn.AvgPool3D(2)(np.ones((1, 2, 4, 4, 4))).shape == (1, 2, 2, 2, 2)


def test_lenet_trains_eagerly_and_hybridized_alike():
    def lenet():
        net = nn.HybridSequential()
        net.add(nn.Conv2D(6, 5, padding=2, activation="sigmoid"), nn.AvgPool2D(2, 2),
                nn.Conv2D(16, 5, activation="sigmoid"), nn.AvgPool2D(2, 2),
                nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
                nn.Dense(10))
        return net

    x = np.random.normal(size=(4, 1, 28, 28))
    eager, hybrid = lenet(), lenet()
    for net in (eager, hybrid):
        net.initialize()
        net(x)
    for p, q in zip(eager.collect_params().values(), hybrid.collect_params().values()):
        q.set_data(p.data())
    hybrid.hybridize()
    grads = []
    for net in (eager, hybrid):
        with autograd.record():
            loss = (net(x) ** 2).sum()
        loss.backward()
        grads.append([p.grad().asnumpy() for p in net.collect_params().values()])
    for a, b in zip(*grads):
        assert_almost_equal(b, a, rtol=1e-4, atol=1e-6)
    assert str(hybrid[0]).startswith("Conv2D(1 -> 6, kernel_size=(5, 5)")
