"""The benchmark workloads, kiln's side: each builds the candidates to time for one workload.

A builder returns {mode name: zero-argument callable}; `bench/__main__.py` times them
interleaved with each other and runs the peers (PyTorch, ONNX Runtime, JAX, MXNet) in their own
environments on the same workloads.
"""

from __future__ import annotations

import numpy as onp

from kiln import autograd, gluon, init, np
from kiln.gluon import nn

WORKLOADS = {
    "W1": "seed MLP 512-256-128-2, batch 1, net(x)",
    "W2": "MLP 784-256-128-10 training step, batch 256",
    "W3t": "LeNet training step, batch 256",
    "W3i": "LeNet inference, batch 1",
    "W4": "ResNet-18 inference, batch 1, 224x224",
}
# calls per timing round: enough to dwarf timer overhead, few enough for a quick suite
CALLS = {"W1": 1000, "W2": 20, "W3t": 3, "W3i": 200, "W4": 3}


def seed_mlp() -> nn.HybridSequential:
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize()
    return net


def _native_available() -> bool:
    try:
        from kiln.backend import get_backend

        return get_backend("native") is not None
    except Exception:
        return False


def _hybrid_modes(make, example, train: bool = False) -> dict:
    """kiln eager, hybridized on each available backend, with and without static_alloc."""
    modes = {"kiln eager": make()}
    backends = ["numpy"] + (["native"] if _native_available() else [])
    for backend in backends:
        net = make()
        net.hybridize(backend=backend)
        modes[f"kiln hybridize ({backend})"] = net
        net = make()
        net.hybridize(backend=backend, static_alloc=True, static_shape=True)
        modes[f"kiln hybridize ({backend}, static_alloc)"] = net
    return modes


def w1() -> dict:
    x = np.random.normal(size=(1, 512))
    base = seed_mlp()
    base(x)
    params = [p.data() for p in base.collect_params().values()]

    def make():
        net = seed_mlp()
        net(x)
        for p, v in zip(net.collect_params().values(), params):
            p.set_data(v)
        return net

    w1t, b1, w2t, b2, w3t, b3 = [onp.ascontiguousarray(p.asnumpy().T) if p.ndim == 2 else
                                 p.asnumpy() for p in params]
    xd = x.asnumpy()

    def numpy_mlp():
        h = onp.maximum(xd @ w1t + b1, 0)
        h = onp.maximum(h @ w2t + b2, 0)
        return h @ w3t + b3

    candidates = {"numpy (hand-written)": numpy_mlp}
    for name, net in _hybrid_modes(make, x).items():
        candidates[name] = (lambda n: lambda: n(x))(net)
    return candidates


def _training_modes(build, X, lr: float) -> dict:
    """One SGD training step (softmax cross-entropy, batch 256) of `build()` in every mode.

    A hybridized mode hybridizes the loss block too, on the same backend, as a user who
    hybridizes a training step does (the loss is a HybridBlock like the network)."""
    y = np.array(onp.random.randint(0, 10, size=X.shape[0]), dtype="int64")

    def make():
        net = build()
        net.initialize(init.Xavier())
        return net

    candidates = {}
    for name, net in _hybrid_modes(make, X, train=True).items():
        net(X)
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
        if net._active:
            loss_fn.hybridize(**net._hybrid_options)

        def step(net=net, trainer=trainer, loss_fn=loss_fn):
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            trainer.step(X.shape[0])
        candidates[name] = step
    return candidates


def w2() -> dict:
    return _training_modes(_models().train_mlp, np.random.normal(size=(256, 784)), 0.1)


def _models():
    import os
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from bench import models

    return models


def _copy_params(src, dst) -> None:
    for p, q in zip(src.collect_params().values(), dst.collect_params().values()):
        q.set_data(p.data())


def _inference_modes(build, x) -> dict:
    base = build()
    base.initialize(init.Xavier())
    base(x)

    def make():
        net = build()
        net.initialize(init.Xavier())
        net(x)
        _copy_params(base, net)
        return net
    return {name: (lambda n: lambda: n(x))(net) for name, net in _hybrid_modes(make, x).items()}


def w3t() -> dict:
    return _training_modes(_models().lenet, np.random.normal(size=(256, 1, 28, 28)), 0.9)


def w3i() -> dict:
    return _inference_modes(_models().lenet, np.random.normal(size=(1, 1, 28, 28)))


def w4() -> dict:
    return _inference_modes(_models().resnet18, np.random.normal(size=(1, 3, 224, 224)))


BUILDERS = {"W1": w1, "W2": w2, "W3t": w3t, "W3i": w3i, "W4": w4}


def compile_latency() -> dict[str, float]:
    """Seconds from hybridize() to the first result, seed MLP, per available backend."""
    import time

    out = {}
    x = np.random.normal(size=(1, 512))
    backends = ["numpy"] + (["native"] if _native_available() else [])
    for backend in backends:
        net = seed_mlp()
        net(x)
        net.hybridize(backend=backend)
        start = time.perf_counter()
        net(x)
        out[f"kiln hybridize ({backend}) first call"] = time.perf_counter() - start
    return out
