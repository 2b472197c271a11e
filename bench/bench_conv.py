"""Convolution and pooling timings: LeNet training step (batch 256) and ResNet-18 convolutions
(batch 1, 224x224), kiln against PyTorch eager when PyTorch is importable.

    PYTHONPATH=. python bench/bench_conv.py            # kiln only
    PYTHONPATH=. /path/to/torch-venv/bin/python bench/bench_conv.py   # kiln and PyTorch

Both use every core (OpenBLAS and PyTorch defaults); the median of several repeats is printed.
"""

from __future__ import annotations

import time

import numpy as onp

from kiln import autograd, npx
from kiln import np as knp

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: only a reference
    torch = None


def median_ms(fn, n=10, reps=5, warm=3) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e3)
    times.sort()
    return times[len(times) // 2]


def lenet_params(rng):
    shapes = {"c1w": (6, 1, 5, 5), "c1b": (6,), "c2w": (16, 6, 5, 5), "c2b": (16,),
              "f1w": (120, 400), "f1b": (120,), "f2w": (84, 120), "f2b": (84,),
              "f3w": (10, 84), "f3b": (10,)}
    return {k: (rng.standard_normal(s) * 0.1).astype(onp.float32) for k, s in shapes.items()}


def kiln_lenet_step(params, x, y, lr=0.1):
    p = params

    def step():
        with autograd.record():
            h = npx.sigmoid(npx.convolution(x, p["c1w"], p["c1b"], kernel=(5, 5), pad=(2, 2),
                                            num_filter=6))
            h = npx.pooling(h, kernel=(2, 2), stride=(2, 2), pool_type="avg")
            h = npx.sigmoid(npx.convolution(h, p["c2w"], p["c2b"], kernel=(5, 5),
                                            num_filter=16))
            h = npx.pooling(h, kernel=(2, 2), stride=(2, 2), pool_type="avg")
            h = npx.sigmoid(npx.fully_connected(h, p["f1w"], p["f1b"], num_hidden=120))
            h = npx.sigmoid(npx.fully_connected(h, p["f2w"], p["f2b"], num_hidden=84))
            h = npx.fully_connected(h, p["f3w"], p["f3b"], num_hidden=10)
            loss = -npx.pick(npx.log_softmax(h), y).mean()
        loss.backward()
        for v in p.values():
            v[:] = v - lr * v.grad
    return step


def torch_lenet_step(params, x, y, lr=0.1):
    p = {k: torch.tensor(v.asnumpy(), requires_grad=True) for k, v in params.items()}
    x = torch.tensor(x.asnumpy())
    y = torch.tensor(y.asnumpy().astype(onp.int64))

    def step():
        h = torch.sigmoid(F.conv2d(x, p["c1w"], p["c1b"], padding=2))
        h = F.avg_pool2d(h, 2, 2)
        h = torch.sigmoid(F.conv2d(h, p["c2w"], p["c2b"]))
        h = F.avg_pool2d(h, 2, 2).flatten(1)
        h = torch.sigmoid(F.linear(h, p["f1w"], p["f1b"]))
        h = torch.sigmoid(F.linear(h, p["f2w"], p["f2b"]))
        loss = F.cross_entropy(F.linear(h, p["f3w"], p["f3b"]), y)
        loss.backward()
        with torch.no_grad():
            for v in p.values():
                v -= lr * v.grad
                v.grad = None
    return step


# (name, data shape, weight shape, stride, pad)
RESNET_CONVS = [
    ("stem 3->64 7x7/2", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
    ("64->64 3x3 56x56", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("64->128 3x3/2", (1, 64, 56, 56), (128, 64, 3, 3), 2, 1),
    ("64->128 1x1/2", (1, 64, 56, 56), (128, 64, 1, 1), 2, 0),
    ("128->128 3x3 28x28", (1, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    ("256->256 3x3 14x14", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    ("512->512 3x3 7x7", (1, 512, 7, 7), (512, 512, 3, 3), 1, 1),
]


def main() -> None:
    rng = onp.random.default_rng(0)
    print(f"{'workload':34s} {'kiln ms':>9s} {'torch ms':>9s}")

    def row(name, k, t=None):
        ts = f"{t:9.2f}" if t is not None else f"{'-':>9s}"
        print(f"{name:34s} {k:9.2f} {ts}", flush=True)

    params = {k: knp.array(v) for k, v in lenet_params(rng).items()}
    for v in params.values():
        v.attach_grad()
    x = knp.array(rng.standard_normal((256, 1, 28, 28)).astype(onp.float32))
    y = knp.array(rng.integers(0, 10, 256).astype(onp.float32))
    k = median_ms(kiln_lenet_step(params, x, y), n=5)
    t = median_ms(torch_lenet_step(params, x, y), n=5) if torch else None
    row("LeNet train step b256", k, t)

    # the convolution and pooling parts alone, forward + backward
    for name, xs, ws, pad in [("conv 1->6 5x5 pad2 b256", (256, 1, 28, 28), (6, 1, 5, 5), 2),
                              ("conv 6->16 5x5 b256", (256, 6, 14, 14), (16, 6, 5, 5), 0)]:
        xa = knp.array(rng.standard_normal(xs).astype(onp.float32))
        wa = knp.array(rng.standard_normal(ws).astype(onp.float32))
        wa.attach_grad()
        if xs[1] != 1:
            xa.attach_grad()

        def kfb(xa=xa, wa=wa, pad=pad):
            with autograd.record():
                out = npx.convolution(xa, wa, kernel=ws[2:], pad=(pad, pad), num_filter=ws[0])
            out.backward()
        kf = median_ms(lambda xa=xa, wa=wa, pad=pad: npx.convolution(
            xa, wa, kernel=ws[2:], pad=(pad, pad), num_filter=ws[0]))
        kb = median_ms(kfb)
        tf = tb = None
        if torch:
            tx = torch.tensor(xa.asnumpy(), requires_grad=xs[1] != 1)
            tw = torch.tensor(wa.asnumpy(), requires_grad=True)
            with torch.no_grad():
                tf = median_ms(lambda tx=tx, tw=tw, pad=pad: F.conv2d(tx, tw, padding=pad))
            tb = median_ms(lambda tx=tx, tw=tw, pad=pad: F.conv2d(tx, tw, padding=pad)
                           .sum().backward())
        row(name + " fwd", kf, tf)
        row(name + " fwd+bwd", kb, tb)

    h = knp.array(rng.standard_normal((256, 6, 28, 28)).astype(onp.float32))
    h.attach_grad()

    def kpool():
        with autograd.record():
            out = npx.pooling(h, kernel=(2, 2), stride=(2, 2), pool_type="avg")
        out.backward()
    tp = None
    if torch:
        th = torch.tensor(h.asnumpy(), requires_grad=True)
        tp = median_ms(lambda: F.avg_pool2d(th, 2, 2).sum().backward())
    row("avgpool 2x2 b256x6x28x28 fwd+bwd", median_ms(kpool), tp)

    total_k = total_t = 0.0
    for name, xs, ws, stride, pad in RESNET_CONVS:
        xa = knp.array(rng.standard_normal(xs).astype(onp.float32))
        wa = knp.array(rng.standard_normal(ws).astype(onp.float32))
        k = median_ms(lambda xa=xa, wa=wa, ws=ws, stride=stride, pad=pad: npx.convolution(
            xa, wa, kernel=ws[2:], stride=stride, pad=pad, num_filter=ws[0]))
        t = None
        if torch:
            tx, tw = torch.tensor(xa.asnumpy()), torch.tensor(wa.asnumpy())
            with torch.no_grad():
                t = median_ms(lambda tx=tx, tw=tw, stride=stride, pad=pad: F.conv2d(
                    tx, tw, stride=stride, padding=pad))
            total_t += t
        total_k += k
        row("ResNet-18 " + name + " b1", k, t)
    xa = knp.array(rng.standard_normal((1, 64, 112, 112)).astype(onp.float32))
    t = None
    if torch:
        tx = torch.tensor(xa.asnumpy())
        with torch.no_grad():
            t = median_ms(lambda: F.max_pool2d(tx, 3, 2, 1))
    row("ResNet-18 maxpool 3x3/2 b1", median_ms(lambda: npx.pooling(
        xa, kernel=(3, 3), stride=(2, 2), pad=(1, 1))), t)
    row("ResNet-18 listed convs, sum", total_k, total_t if torch else None)


if __name__ == "__main__":
    main()
