"""Every backend computes what eager execution computes: forward, gradients, training.

The `backend` fixture (conftest.py) runs each test on 'numpy' and on 'native' (when a C compiler
is present); eager NumPy is the reference for both.
"""

from __future__ import annotations

import numpy as onp
import pytest

from kiln import autograd, np, npx
from kiln.gluon import HybridBlock, nn

RTOL, ATOL = 2e-5, 2e-5


def close(a, b, rtol=RTOL, atol=ATOL):
    onp.testing.assert_allclose(onp.asarray(a), onp.asarray(b), rtol=rtol, atol=atol)


def data(*shape, seed=0, scale=1.0):
    rng = onp.random.default_rng(seed)
    return np.array((rng.standard_normal(shape) * scale).astype(onp.float32))


def labels(n, classes, seed=1):
    return np.array(onp.random.default_rng(seed).integers(0, classes, n).astype(onp.float32))


class Lambda(HybridBlock):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def mlp(sizes=(32, 16, 4)):
    net = nn.HybridSequential()
    for units in sizes[:-1]:
        net.add(nn.Dense(units, activation="relu"))
    net.add(nn.Dense(sizes[-1]))
    return net


class Classifier(HybridBlock):
    """A network and softmax cross-entropy in one block: one hybridized training step."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x, y):
        out = npx.log_softmax(self.body(x))
        return -npx.pick(out, y).mean()


def params_of(net):
    return list(net.collect_params().values())


def snapshot(net):
    return [p.data()._data.copy() for p in params_of(net)]


def restore(net, values):
    for p, v in zip(params_of(net), values):
        p.data()._data[...] = v


def grads(net):
    return [p.grad()._data.copy() for p in params_of(net) if p.grad_req != "null"]


def compiled_infos(block):
    """Compiled.info of every compiled forward graph of `block` (and its children)."""
    out = []
    stack = [block]
    while stack:
        b = stack.pop()
        cache = getattr(b, "_cache", None)
        if cache is not None:
            out += [e.compiled.info for e in cache.entries.values()]
        stack += list(b._children.values())
    return out


def eager_and_hybrid(block, args, backend, train=False):
    """(eager result, hybridized result) of block(*args)."""
    def run():
        if train:
            with autograd.train_mode():
                return block(*args)
        return block(*args)
    ref = run()
    block.hybridize(backend=backend)
    got = run()
    got2 = run()   # the second call reuses the compiled graph (and its arena)
    return ref, got, got2


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 7])
def test_mlp_forward(backend, batch):
    net = mlp()
    net.initialize()
    x = data(batch, 20)
    ref, got, got2 = eager_and_hybrid(net, (x,), backend)
    close(got, ref)
    close(got2, ref)
    if backend == "native":
        infos = compiled_infos(net)
        assert infos and all(i["backend"] == "native" and not i["python_nodes"] for i in infos)


ELEMENTWISE = {
    "chain": lambda x: np.tanh(x) * 2 + np.exp(-x) / (1 + x * x) - np.maximum(x, 0.5),
    "activations": lambda x: npx.sigmoid(x) + npx.relu(x - 0.2) + npx.activation(x, "softrelu")
    + npx.activation(x, "softsign"),
    "math": lambda x: np.sqrt(np.abs(x)) + np.log(np.abs(x) + 1) + np.square(x) - np.sin(x)
    * np.cos(x) + np.floor(x * 3) + np.sign(x),
    "scalars": lambda x: (2 - x) / 3 + 1 / (np.abs(x) + 1) + x ** 2 + np.minimum(x, 0.1) * 4,
    "compare": lambda x: (x > 0) * x + (x <= -0.5) * 2.0 + np.where(x > 0.3, x, -x),
    "clip_cast": lambda x: np.clip(x, -0.5, 0.7) + (x * 10).astype("int32").astype("float32"),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise(backend, name):
    block = Lambda(ELEMENTWISE[name])
    x = data(6, 45, seed=3)
    ref, got, _ = eager_and_hybrid(block, (x,), backend)
    close(got, ref, rtol=1e-5, atol=1e-5)


def test_broadcasting(backend):
    block = Lambda(lambda a, b, c: a * b + c - a / (b * b + 1))
    args = (data(4, 1, 5), data(3, 1, seed=1), data(5, seed=2))
    ref, got, _ = eager_and_hybrid(block, args, backend)
    close(got, ref)


REDUCTIONS = {
    "sum_all": lambda x: x.sum(),
    "sum_axis0": lambda x: x.sum(axis=0),
    "sum_12_keep": lambda x: np.sum(x, axis=(1, 2), keepdims=True),
    "sum_02": lambda x: np.sum(x, axis=(0, 2)),
    "mean": lambda x: x.mean(axis=1) + x.mean(),
    "max_min": lambda x: x.max(axis=2) - x.min(axis=0).sum(axis=1),
    "prod": lambda x: np.prod(x * 0.5 + 1, axis=-1),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reductions(backend, name):
    block = Lambda(REDUCTIONS[name])
    x = data(5, 6, 7, seed=4)
    ref, got, _ = eager_and_hybrid(block, (x,), backend)
    close(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("temperature", [None, 2.0])
def test_softmax(backend, axis, temperature):
    block = Lambda(lambda x: npx.softmax(x, axis=axis, temperature=temperature)
                   + npx.log_softmax(x * 3, axis=axis))
    ref, got, _ = eager_and_hybrid(block, (data(4, 9, 3, seed=5),), backend)
    close(got, ref)


def test_matmul_transposes(backend):
    block = Lambda(lambda a, b: np.matmul(a, b.T) + np.matmul(a.T, a).sum()
                   + np.matmul(a, np.ones((11, 1), dtype="float32")))
    ref, got, _ = eager_and_hybrid(block, (data(8, 11), data(5, 11, seed=1)), backend)
    close(got, ref, rtol=1e-5, atol=1e-4)


def test_batched_matmul(backend):
    block = Lambda(lambda a, b: np.matmul(a, b))
    ref, got, _ = eager_and_hybrid(block, (data(3, 4, 6), data(3, 6, 5, seed=1)), backend)
    close(got, ref, rtol=1e-5, atol=1e-4)


def test_batched_matmul_of_transposed_views(backend):
    """Both operands need a contiguous copy in the same node (two generated loops)."""
    block = Lambda(lambda a, b: np.matmul(np.transpose(a, (0, 2, 1)), np.transpose(b, (0, 2, 1))))
    ref, got, _ = eager_and_hybrid(block, (data(3, 6, 4), data(3, 5, 6, seed=1)), backend)
    close(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 5)])
def test_batch_norm_predict_and_train(backend, shape):
    net = nn.BatchNorm(axis=1, in_channels=shape[1])
    net.initialize()
    net.gamma.data()._data[...] = onp.linspace(0.5, 1.5, shape[1])
    x = data(*shape, seed=6, scale=2.0)
    ref, got, _ = eager_and_hybrid(net, (x,), backend)   # predict mode: running statistics
    close(got, ref)
    # train mode: batch statistics, and the running ones move the same way
    net2 = nn.BatchNorm(axis=1, in_channels=shape[1])
    net2.initialize()
    with autograd.train_mode():
        ref = net2(x)
    eager_stats = [net2.running_mean.data()._data.copy(), net2.running_var.data()._data.copy()]
    net2.running_mean.data()._data[...] = 0
    net2.running_var.data()._data[...] = 1
    net2.hybridize(backend=backend)
    with autograd.train_mode():
        got = net2(x)
    close(got, ref)
    close(net2.running_mean.data(), eager_stats[0])
    close(net2.running_var.data(), eager_stats[1])


def test_dropout_predict_mode_is_identity(backend):
    net = nn.HybridSequential()
    net.add(nn.Dense(8), nn.Dropout(0.5), nn.Dense(3))
    net.initialize()
    x = data(5, 4)
    ref, got, _ = eager_and_hybrid(net, (x,), backend)
    close(got, ref)


def test_dropout_train_mask_matches_gradient(backend):
    """In training the mask that zeroes the forward is the mask the backward applies."""
    drop = nn.Dropout(0.5)
    block = Lambda(lambda x: drop(x) * 3)
    block.register_child(drop)
    block.hybridize(backend=backend)
    x = data(40, 30, seed=7)
    x.attach_grad()
    with autograd.record():
        y = block(x)
    y.backward()
    kept = y._data != 0
    assert 0.3 < kept.mean() < 0.7
    close(y._data[kept], (x._data * 2 * 3)[kept])          # scaled by 1 / (1 - p)
    close(x.grad._data, onp.where(kept, 6.0, 0.0))


# --------------------------------------------------------------------------------------------
# gradients and training
# --------------------------------------------------------------------------------------------

def loss_and_grads(net, x, y):
    with autograd.record():
        loss = net(x, y)
    loss.backward()
    return float(loss._data), grads(net)


@pytest.mark.parametrize("batch", [1, 16])
def test_classifier_gradients(backend, batch):
    net = Classifier(mlp((24, 12, 5)))
    net.initialize()
    x, y = data(batch, 10), labels(batch, 5)
    ref_loss, ref_grads = loss_and_grads(net, x, y)
    net.hybridize(backend=backend)
    for _ in range(2):
        loss, got = loss_and_grads(net, x, y)
        assert abs(loss - ref_loss) < 1e-5
        for a, b in zip(got, ref_grads):
            close(a, b)
    if backend == "native":
        for info in compiled_infos(net):
            assert not info["python_nodes"], info["python_nodes"]


def sgd_steps(net, x, y, steps, lr=0.1):
    losses = []
    for _ in range(steps):
        with autograd.record():
            loss = net(x, y)
        loss.backward()
        losses.append(float(loss._data))
        for p in params_of(net):
            if p.grad_req != "null":
                p.data()._data[...] -= lr * p.grad()._data
    return losses


def test_training_matches_eager(backend):
    net = Classifier(mlp((32, 16, 4)))
    net.initialize()
    x, y = data(32, 12, seed=2), labels(32, 4, seed=3)
    net(x, y)    # deferred initialization
    start = snapshot(net)
    ref_losses = sgd_steps(net, x, y, 6)
    ref_params = snapshot(net)
    restore(net, start)
    net.hybridize(backend=backend)
    losses = sgd_steps(net, x, y, 6)
    onp.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(snapshot(net), ref_params):
        close(a, b, rtol=1e-4, atol=1e-5)
    assert losses[-1] < losses[0]


def test_batch_norm_training_gradients(backend):
    net = nn.HybridSequential()
    net.add(nn.Dense(16), nn.BatchNorm(), nn.Activation("relu"), nn.Dense(3))
    cls = Classifier(net)
    cls.initialize()
    x, y = data(12, 8, seed=9), labels(12, 3)
    ref_loss, ref_grads = loss_and_grads(cls, x, y)
    stats = [p.data()._data.copy() for n_, p in cls.collect_params().items() if "running" in n_]
    for n_, p in cls.collect_params().items():
        if "running_mean" in n_:
            p.data()._data[...] = 0
        if "running_var" in n_:
            p.data()._data[...] = 1
    cls.hybridize(backend=backend)
    loss, got = loss_and_grads(cls, x, y)
    assert abs(loss - ref_loss) < 1e-5
    for a, b in zip(got, ref_grads):
        close(a, b, rtol=1e-4, atol=1e-5)
    after = [p.data()._data for n_, p in cls.collect_params().items() if "running" in n_]
    for a, b in zip(after, stats):
        close(a, b)


def test_elementwise_gradients(backend):
    block = Lambda(lambda x: (np.tanh(x) * npx.sigmoid(x * 2) + np.exp(-x * x)
                              + np.maximum(x, 0.1) / (1 + np.abs(x))).sum())
    x = data(7, 9, seed=11)
    x.attach_grad()
    with autograd.record():
        y = block(x)
    y.backward()
    ref = x.grad._data.copy()
    block.hybridize(backend=backend)
    x.attach_grad()
    with autograd.record():
        y2 = block(x)
    y2.backward()
    close(y2, y)
    close(x.grad, ref)


@pytest.mark.parametrize("shape,axis", [((16, 5), -1), ((4, 6, 3), 1)])
def test_softmax_cross_entropy_loss_block(backend, shape, axis):
    """gluon.loss.SoftmaxCrossEntropyLoss (one fused operator) hybridized: loss and input
    gradient as eager, in C on the native backend (float labels, some out of range)."""
    from kiln import gluon

    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(axis=axis)
    x = data(*shape, seed=12, scale=3.0)
    lshape = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    y = np.array(onp.random.default_rng(13).integers(-1, shape[axis] + 1, lshape)
                 .astype(onp.float32))

    def run():
        x.attach_grad()
        with autograd.record():
            loss = loss_fn(x, y)
        loss.backward(np.array(onp.linspace(0.5, 2, loss.size).reshape(loss.shape)
                               .astype(onp.float32)))
        return loss.asnumpy(), x.grad.asnumpy()

    ref = run()
    loss_fn.hybridize(backend=backend)
    for _ in range(2):
        got = run()
        close(got[0], ref[0])
        close(got[1], ref[1])
    if backend == "native":
        for info in compiled_infos(loss_fn):
            assert not info["python_nodes"], info["python_nodes"]
