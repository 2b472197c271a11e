"""The ten-second smoke test: if this fails, nothing else will pass."""

import numpy as onp

from kiln import autograd, np, npx
from kiln.gluon import nn
from kiln.test_utils import assert_almost_equal


def test_arrays_autograd_and_hybridize_agree():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    x.attach_grad()
    with autograd.record():
        y = (np.tanh(x) * x).sum()
    y.backward()
    xd = onp.array([[1.0, 2.0], [3.0, 4.0]])
    assert_almost_equal(x.grad, onp.tanh(xd) + xd * (1 - onp.tanh(xd) ** 2))

    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="relu"), nn.Dense(2))
    net.initialize()
    data = np.random.normal(size=(3, 5))
    eager = net(data)
    net.hybridize()
    assert_almost_equal(net(data), eager)
    assert_almost_equal(net(data), eager)  # the cached graph


def test_npx_ops_exist():
    x = np.random.normal(size=(2, 3))
    assert npx.relu(x).shape == (2, 3)
    assert_almost_equal(npx.softmax(x).sum(axis=-1), onp.ones(2))
