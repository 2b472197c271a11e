"""Convolution and pooling timings: a LeNet training step (batch 256), ResNet-18 inference
(batch 1, 224x224) and its convolutions one by one; kiln against PyTorch eager when PyTorch is
importable (it is only a reference: kiln does not depend on it).

    PYTHONPATH=. python bench/bench_conv.py                      # kiln only
    PYTHONPATH=. /path/to/torch-venv/bin/python bench/bench_conv.py

Both frameworks use their defaults (every core). Each round times kiln then PyTorch on the same
workload; the table shows the best round (least disturbed by other processes) and the median.
Set KILN_NUM_THREADS=1 (and OPENBLAS_NUM_THREADS=1, torch.set_num_threads(1) via
BENCH_THREADS=1) for single-core numbers.
"""

from __future__ import annotations

import os
import time

import numpy as onp

from kiln import autograd, npx
from kiln import np as knp

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: only a reference
    torch = None

if torch is not None and os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))


def timings(fn, n: int, rounds: int) -> list[float]:
    """Milliseconds per call, one number per round of n calls (after a warm-up round)."""
    fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e3)
    return out


def compare(name: str, kiln_fn, torch_fn=None, n: int = 5, rounds: int = 7) -> None:
    ks, ts = [], []
    kiln_fn()
    if torch_fn is not None:
        torch_fn()
    for _ in range(rounds):          # interleaved, so both see the same machine
        ks += timings(kiln_fn, n, 1)
        if torch_fn is not None:
            ts += timings(torch_fn, n, 1)
    k_best, k_med = min(ks), sorted(ks)[len(ks) // 2]
    line = f"{name:38s} {k_best:8.2f} {k_med:8.2f}"
    if ts:
        t_best, t_med = min(ts), sorted(ts)[len(ts) // 2]
        line += f" {t_best:8.2f} {t_med:8.2f} {k_best / t_best:6.2f}x"
    print(line, flush=True)


# ----------------------------------------------------------------------------------------------
# LeNet training step
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# ResNet-18 inference
# ----------------------------------------------------------------------------------------------

def resnet18_params(rng):
    """Weights of ResNet-18 (d2l's layout: 7x7 stem, four stages of two residual blocks, 1x1
    projections where the shape changes), with BatchNorm folded away into (scale, shift)."""
    def conv(c_out, c_in, k):
        return (rng.standard_normal((c_out, c_in, k, k)) * (2.0 / (c_in * k * k)) ** 0.5
                ).astype(onp.float32)

    def bn(c):
        return (rng.uniform(0.5, 1.5, c).astype(onp.float32),
                (rng.standard_normal(c) * 0.1).astype(onp.float32),
                (rng.standard_normal(c) * 0.1).astype(onp.float32),
                rng.uniform(0.5, 1.5, c).astype(onp.float32))

    params = {"stem": (conv(64, 3, 7), onp.zeros(64, onp.float32), bn(64)), "blocks": []}
    ch = 64
    for i, c_out in enumerate([64, 128, 256, 512]):
        for j in range(2):
            stride = 2 if (i > 0 and j == 0) else 1
            proj = conv(c_out, ch, 1) if (i > 0 and j == 0) else None
            params["blocks"].append({"stride": stride, "c1": conv(c_out, ch, 3),
                                     "b1": bn(c_out), "c2": conv(c_out, c_out, 3),
                                     "b2": bn(c_out), "c3": proj})
            ch = c_out
    params["fc"] = ((rng.standard_normal((1000, 512)) * 0.03).astype(onp.float32),
                    onp.zeros(1000, onp.float32))
    return params


def _kiln_params(params):
    def arr(v):
        return knp.array(v) if isinstance(v, onp.ndarray) else v

    def walk(v):
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(walk(x) for x in v)
        return arr(v)
    return walk(params)


def kiln_resnet18(params, x):
    p = _kiln_params(params)

    def bn(h, stats):
        gamma, beta, mean, var = stats
        return npx.batch_norm(h, gamma, beta, mean, var, eps=1e-5, fix_gamma=False)

    def forward():
        w, b, stats = p["stem"]
        h = npx.relu(bn(npx.convolution(x, w, b, stride=2, pad=3), stats))
        h = npx.pooling(h, kernel=(3, 3), stride=(2, 2), pad=(1, 1))
        for blk in p["blocks"]:
            s = blk["stride"]
            y = npx.relu(bn(npx.convolution(h, blk["c1"], stride=s, pad=1, no_bias=True),
                            blk["b1"]))
            y = bn(npx.convolution(y, blk["c2"], pad=1, no_bias=True), blk["b2"])
            if blk["c3"] is not None:
                h = npx.convolution(h, blk["c3"], stride=s, no_bias=True)
            h = npx.relu(y + h)
        h = npx.pooling(h, pool_type="avg", global_pool=True)
        return npx.fully_connected(h, p["fc"][0], p["fc"][1], num_hidden=1000)
    return forward


def torch_resnet18(params, x):
    def t(v):
        return torch.tensor(v)
    x = torch.tensor(x.asnumpy())

    def bn(h, stats):
        gamma, beta, mean, var = (t(v) for v in stats)
        return F.batch_norm(h, mean, var, gamma, beta, training=False, eps=1e-5)

    stem_w, stem_b, stem_bn = t(params["stem"][0]), t(params["stem"][1]), params["stem"][2]
    blocks = [{k: (t(v) if isinstance(v, onp.ndarray) else v) for k, v in blk.items()}
              for blk in params["blocks"]]
    fc_w, fc_b = t(params["fc"][0]), t(params["fc"][1])

    def forward():
        with torch.no_grad():
            h = torch.relu(bn(F.conv2d(x, stem_w, stem_b, stride=2, padding=3), stem_bn))
            h = F.max_pool2d(h, 3, 2, 1)
            for blk in blocks:
                s = blk["stride"]
                y = torch.relu(bn(F.conv2d(h, blk["c1"], stride=s, padding=1), blk["b1"]))
                y = bn(F.conv2d(y, blk["c2"], padding=1), blk["b2"])
                if blk["c3"] is not None:
                    h = F.conv2d(h, blk["c3"], stride=s)
                h = torch.relu(y + h)
            h = F.adaptive_avg_pool2d(h, 1).flatten(1)
            return F.linear(h, fc_w, fc_b)
    return forward


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
    head = f"{'workload (ms)':38s} {'kiln':>8s} {'median':>8s}"
    if torch is not None:
        head += f" {'torch':>8s} {'median':>8s} {'ratio':>7s}"
    print(head)

    params = {k: knp.array(v) for k, v in lenet_params(rng).items()}
    for v in params.values():
        v.attach_grad()
    x = knp.array(rng.standard_normal((256, 1, 28, 28)).astype(onp.float32))
    y = knp.array(rng.integers(0, 10, 256).astype(onp.float32))
    compare("LeNet train step b256", kiln_lenet_step(params, x, y),
            torch_lenet_step(params, x, y) if torch else None)

    for name, xs, ws, pad in [("conv 1->6 5x5 pad2 b256", (256, 1, 28, 28), (6, 1, 5, 5), 2),
                              ("conv 6->16 5x5 b256", (256, 6, 14, 14), (16, 6, 5, 5), 0)]:
        xa = knp.array(rng.standard_normal(xs).astype(onp.float32))
        wa = knp.array(rng.standard_normal(ws).astype(onp.float32))
        wa.attach_grad()
        if xs[1] != 1:
            xa.attach_grad()

        def kfb(xa=xa, wa=wa, pad=pad):
            with autograd.record():
                out = npx.convolution(xa, wa, pad=pad)
            out.backward()

        tf = tb = None
        if torch:
            tx = torch.tensor(xa.asnumpy(), requires_grad=xs[1] != 1)
            tw = torch.tensor(wa.asnumpy(), requires_grad=True)

            def tf(tx=tx, tw=tw, pad=pad):
                with torch.no_grad():
                    F.conv2d(tx, tw, padding=pad)

            def tb(tx=tx, tw=tw, pad=pad):
                F.conv2d(tx, tw, padding=pad).sum().backward()
        compare(name + " fwd", lambda xa=xa, wa=wa, pad=pad: npx.convolution(xa, wa, pad=pad),
                tf)
        compare(name + " fwd+bwd", kfb, tb)

    h = knp.array(rng.standard_normal((256, 6, 28, 28)).astype(onp.float32))
    h.attach_grad()

    def kpool():
        with autograd.record():
            out = npx.pooling(h, kernel=(2, 2), stride=(2, 2), pool_type="avg")
        out.backward()
    tpool = None
    if torch:
        th = torch.tensor(h.asnumpy(), requires_grad=True)

        def tpool():
            F.avg_pool2d(th, 2, 2).sum().backward()
    compare("avgpool 2x2 256x6x28x28 fwd+bwd", kpool, tpool)

    rparams = resnet18_params(rng)
    xr = knp.array(rng.standard_normal((1, 3, 224, 224)).astype(onp.float32))
    compare("ResNet-18 inference b1 224x224", kiln_resnet18(rparams, xr),
            torch_resnet18(rparams, xr) if torch else None, n=3)
    for name, xs, ws, stride, pad in RESNET_CONVS:
        xa = knp.array(rng.standard_normal(xs).astype(onp.float32))
        wa = knp.array(rng.standard_normal(ws).astype(onp.float32))
        tconv = None
        if torch:
            tx, tw = torch.tensor(xa.asnumpy()), torch.tensor(wa.asnumpy())

            def tconv(tx=tx, tw=tw, stride=stride, pad=pad):
                with torch.no_grad():
                    F.conv2d(tx, tw, stride=stride, padding=pad)
        compare("  " + name, lambda xa=xa, wa=wa, stride=stride, pad=pad: npx.convolution(
            xa, wa, stride=stride, pad=pad), tconv)
    xa = knp.array(rng.standard_normal((1, 64, 112, 112)).astype(onp.float32))
    tmax = None
    if torch:
        tx = torch.tensor(xa.asnumpy())

        def tmax():
            F.max_pool2d(tx, 3, 2, 1)
    compare("  maxpool 3x3/2 64x112x112", lambda: npx.pooling(
        xa, kernel=(3, 3), stride=(2, 2), pad=(1, 1)), tmax)


if __name__ == "__main__":
    main()
