"""Peer workloads on Apache MXNet 1.9.1 (the seed's system), run in its own environment
(`../shared/peers/setup.sh mx`), served to `python -m bench` like torch_peer.py.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import serve

import mxnet as mx
from mxnet import autograd, gluon, init, np, npx
from mxnet.gluon import nn

npx.set_np()


def _modes(make):
    eager = make()
    hybrid = make()
    hybrid.hybridize()
    static = make()
    static.hybridize(static_alloc=True, static_shape=True)
    return {"mxnet eager": eager, "mxnet hybridize()": hybrid,
            "mxnet hybridize(static_alloc)": static}


def w1():
    def make():
        net = nn.HybridSequential()
        net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"),
                nn.Dense(2))
        net.initialize()
        return net
    x = np.random.normal(size=(1, 512))

    def call(net):
        def run():
            net(x)
            npx.waitall()
        return run
    return {k: call(v) for k, v in _modes(make).items()}


def w2():
    X = np.random.normal(size=(256, 784))
    Y = np.random.randint(0, 10, size=(256,))
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def make():
        net = nn.HybridSequential()
        net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"),
                nn.Dense(10))
        net.initialize(init.Xavier())
        return net

    def step_of(net):
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})

        def step():
            with autograd.record():
                loss = loss_fn(net(X), Y)
            loss.backward()
            trainer.step(256)
            npx.waitall()
        return step
    return {k: step_of(v) for k, v in _modes(make).items()}


BUILDERS = {"W1": w1, "W2": w2}

if __name__ == "__main__":
    serve(BUILDERS, {"system": "mxnet", "version": mx.__version__})
