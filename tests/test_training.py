"""End-to-end training on real data: scikit-learn's handwritten digits (1,797 8x8 images).

These tests train with the whole stack (DataLoader, Trainer, SoftmaxCrossEntropyLoss,
metric.Accuracy, autograd.record) and check the accuracy on a held-out split.
"""

import time

import pytest

import kiln
from kiln import autograd, gluon, init, metric, np, npx
from kiln.gluon import nn

pytest.importorskip("sklearn", reason="the digits data ship with scikit-learn")


def evaluate(net, dataset, batch_size=512) -> float:
    acc = metric.Accuracy()
    for x, y in gluon.data.DataLoader(dataset, batch_size=batch_size):
        acc.update(y, net(x))
    return acc.get()[1]


def fit(net, train, epochs, batch_size, optimizer, optimizer_params):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), optimizer, optimizer_params)
    loader = gluon.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    train_acc = metric.Accuracy()
    losses = []
    for _ in range(epochs):
        train_acc.reset()
        total = 0.0
        for x, y in loader:
            with autograd.record():
                out = net(x)
                loss = loss_fn(out, y)
            loss.backward()
            trainer.step(x.shape[0])
            train_acc.update(y, out)
            total += float(loss.sum())
        losses.append(total / len(train))
    return losses, train_acc.get()[1], trainer


def test_mlp_reaches_95_percent_on_digits():
    np.random.seed(0)
    train, test = gluon.data.load_digits(test_fraction=0.2, seed=0)
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="relu"), nn.Dense(64, activation="relu"), nn.Dense(10))
    net.initialize(init.Xavier())
    start = time.perf_counter()
    losses, train_acc, _ = fit(net, train, epochs=20, batch_size=32, optimizer="sgd",
                            optimizer_params={"learning_rate": 0.05, "momentum": 0.9,
                                              "wd": 5e-4})
    elapsed = time.perf_counter() - start
    test_acc = evaluate(net, test)
    print(f"MLP on digits: test accuracy {test_acc:.4f}, train accuracy {train_acc:.4f}, "
          f"{elapsed:.2f} s")
    assert losses[-1] < 0.25 * losses[0]
    assert test_acc >= 0.95, f"test accuracy {test_acc:.4f}"


def test_mlp_with_adam_and_schedule():
    np.random.seed(1)
    train, test = gluon.data.load_digits(test_fraction=0.2, seed=1)
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="tanh"), nn.Dropout(0.1), nn.Dense(10))
    net.initialize(init.Xavier())
    steps = 15 * ((len(train) + 63) // 64)
    sched = kiln.lr_scheduler.CosineScheduler(max_update=steps, base_lr=0.005, final_lr=1e-4,
                                              warmup_steps=20)
    _, _, trainer = fit(net, train, epochs=15, batch_size=64, optimizer="adam",
                        optimizer_params={"lr_scheduler": sched, "wd": 1e-4})
    assert trainer.optimizer.num_update == steps
    assert trainer.learning_rate == pytest.approx(1e-4)     # the schedule ran to its end
    assert evaluate(net, test) >= 0.95


# ---- a small convolutional net ------------------------------------------------------------------

HAS_CONV = hasattr(npx, "convolution") and hasattr(npx, "pooling")


class _Conv(gluon.HybridBlock):
    """A 2-D convolution with ReLU written directly on npx.convolution (used when gluon.nn has
    no Conv2D layer yet)."""

    def __init__(self, channels, kernel, pad):
        super().__init__()
        self._channels, self._kernel, self._pad = channels, kernel, pad
        self.weight = gluon.Parameter("weight", shape=(channels, 0, kernel, kernel),
                                      allow_deferred_init=True)
        self.bias = gluon.Parameter("bias", shape=(channels,), init="zeros")

    def forward(self, x):
        if self.weight._data is None:
            self.weight._infer_shape((self._channels, x.shape[1], self._kernel, self._kernel))
        y = npx.convolution(x, self.weight.data(), self.bias.data(),
                            kernel=(self._kernel, self._kernel), pad=(self._pad, self._pad),
                            num_filter=self._channels)
        return npx.relu(y)


def _conv(channels, kernel=3, pad=1):
    if hasattr(nn, "Conv2D"):
        return nn.Conv2D(channels, kernel, padding=pad, activation="relu")
    return _Conv(channels, kernel, pad)


def _max_pool():
    if hasattr(nn, "MaxPool2D"):
        return nn.MaxPool2D(pool_size=2, strides=2)
    return nn.HybridLambda(lambda F, x: F.npx.pooling(x, kernel=(2, 2), stride=(2, 2),
                                                      pool_type="max"))


@pytest.mark.skipif(not HAS_CONV, reason="conv ops not merged yet")
def test_convnet_on_digits():
    np.random.seed(0)
    train, test = gluon.data.load_digits(test_fraction=0.2, seed=0, flatten=False)
    net = nn.HybridSequential()
    net.add(_conv(16), _max_pool(), _conv(32), _max_pool(), nn.Dense(64, activation="relu"),
            nn.Dense(10))
    net.initialize(init.Xavier())
    start = time.perf_counter()
    fit(net, train, epochs=12, batch_size=32, optimizer="sgd",
        optimizer_params={"learning_rate": 0.05, "momentum": 0.9, "wd": 5e-4})
    elapsed = time.perf_counter() - start
    test_acc = evaluate(net, test)
    print(f"conv net on digits: test accuracy {test_acc:.4f}, {elapsed:.2f} s")
    assert net[0].collect_params()["weight"].shape[1] == 1       # learnt from (N, 1, 8, 8)
    assert test_acc >= 0.95, f"test accuracy {test_acc:.4f}"
