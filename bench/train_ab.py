"""Training steps of kiln (eager, numpy-hybrid, native-hybrid) and PyTorch eager, interleaved.

PyTorch runs in its own interpreter (default /tmp/kiln-peers/tp/bin/python) as a server that
times one round whenever asked, so kiln's modes and PyTorch alternate round by round: on a
shared machine, load that comes and goes hits every candidate alike.

    PYTHONPATH=. python bench/train_ab.py                       # W2 and seed MLP, all modes
    PYTHONPATH=. python bench/train_ab.py --model w2 --rounds 9 --calls 30
    PYTHONPATH=. python bench/train_ab.py --modes eager,native --no-torch

Workloads: `w2` MLP 784-256-128-10, `seed` MLP 512-256-128-2, both batch 256, softmax
cross-entropy, plain SGD (lr 0.1) through gluon.Trainer, as `python -m bench W2` times them.
Modes: `eager`; `numpy`/`native`: the network hybridized on that backend, the loss block eager;
`numpy+loss`/`native+loss`: the loss block hybridized too (as `python -m bench` times W2); `handnp`:
the same step written in NumPy by hand (the floor of NumPy's BLAS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as onp

SIZES = {"w2": (784, 256, 128, 10), "seed": (512, 256, 128, 2)}
BATCH = 256

TORCH_SERVER = r"""
import json, sys, time
import torch
threads = int(sys.argv[3])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
sizes = json.loads(sys.argv[1]); batch = int(sys.argv[2])
layers = []
for i in range(len(sizes) - 1):
    layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
    if i < len(sizes) - 2:
        layers.append(torch.nn.ReLU())
net = torch.nn.Sequential(*layers)
opt = torch.optim.SGD(net.parameters(), lr=0.1)
loss_fn = torch.nn.CrossEntropyLoss()
x = torch.randn(batch, sizes[0]); y = torch.randint(0, sizes[-1], (batch,))
def step():
    opt.zero_grad()
    loss_fn(net(x), y).backward()
    opt.step()
for _ in range(20):
    step()
print(json.dumps({"threads": torch.get_num_threads(), "version": torch.__version__}),
      flush=True)
for line in sys.stdin:
    n = int(line)
    t = time.perf_counter()
    for _ in range(n):
        step()
    print((time.perf_counter() - t) / n, flush=True)
"""


class TorchPeer:
    def __init__(self, python: str, sizes, threads: int):
        self.proc = subprocess.Popen([python, "-c", TORCH_SERVER, json.dumps(sizes), str(BATCH),
                                      str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def round(self, calls: int) -> float:
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def kiln_step(sizes, mode: str):
    from kiln import autograd, gluon, init, np
    from kiln.gluon import nn

    onp.random.seed(0)
    x = np.random.normal(size=(BATCH, sizes[0]))
    y = np.array(onp.random.randint(0, sizes[-1], size=BATCH), dtype="int64")
    net = nn.HybridSequential()
    for i, h in enumerate(sizes[1:]):
        net.add(nn.Dense(h, activation="relu" if i < len(sizes) - 2 else None))
    net.initialize(init.Xavier())
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    backend = mode.split("+")[0]
    if backend in ("numpy", "native"):
        net.hybridize(backend=backend)
        if mode.endswith("+loss"):
            loss_fn.hybridize(backend=backend)
    net(x)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1})

    def step():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(BATCH)
    return step


def hand_numpy_step(sizes):
    """The same step in plain NumPy: forward, softmax cross-entropy, backward, SGD."""
    rng = onp.random.default_rng(0)
    x = rng.standard_normal((BATCH, sizes[0]), dtype=onp.float32)
    y = rng.integers(0, sizes[-1], BATCH)
    ws = [rng.standard_normal((o, i), dtype=onp.float32) * onp.float32((2 / (i + o)) ** 0.5)
          for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [onp.zeros(o, onp.float32) for o in sizes[1:]]
    rows = onp.arange(BATCH)

    def step():
        acts = [x]
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = acts[-1] @ w.T
            h += b
            if i < len(ws) - 1:
                onp.maximum(h, 0, out=h)
            acts.append(h)
        z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        e = onp.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        p[rows, y] -= 1
        g = p / BATCH
        for i in range(len(ws) - 1, -1, -1):
            gw = g.T @ acts[i]
            gb = g.sum(axis=0)
            if i:
                g = g @ ws[i]
                g *= acts[i] > 0
            ws[i] -= 0.1 * gw
            bs[i] -= 0.1 * gb
    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="w2,seed")
    parser.add_argument("--modes", default="eager,numpy,native,handnp")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--gap", type=float, default=0.3,
                        help="seconds of rest before each round: thread pools that spin after "
                        "their work (OpenBLAS's for ~0.1 s, OpenMP's) would otherwise slow "
                        "down whichever candidate runs next")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-threads", default="0", help="comma list; 0 = PyTorch's default")
    parser.add_argument("--torch-python", default=os.path.join(
        os.environ.get("KILN_PEERS", "/tmp/kiln-peers"), "tp", "bin", "python"))
    args = parser.parse_args(argv)
    for model in args.model.split(","):
        sizes = SIZES[model]
        cands = {}
        for mode in args.modes.split(","):
            cands[mode] = hand_numpy_step(sizes) if mode == "handnp" else kiln_step(sizes, mode)
        peers = {}
        if not args.no_torch and os.path.exists(args.torch_python):
            for t in args.torch_threads.split(","):
                peer = TorchPeer(args.torch_python, list(sizes), int(t))
                peers[f"torch eager ({peer.info['threads']} thr)"] = peer
        for fn in cands.values():
            for _ in range(10):
                fn()
        samples = {name: [] for name in list(cands) + list(peers)}
        for _ in range(args.rounds):
            for name, fn in cands.items():
                time.sleep(args.gap)
                t = time.perf_counter()
                for _ in range(args.calls):
                    fn()
                samples[name].append((time.perf_counter() - t) / args.calls)
            for name, peer in peers.items():
                time.sleep(args.gap)
                samples[name].append(peer.round(args.calls))
        for peer in peers.values():
            peer.close()
        print(f"{model} {'-'.join(map(str, sizes))} b{BATCH}: ms per step, {args.rounds} rounds "
              f"x {args.calls} steps (load {os.getloadavg()[0]:.2f})")
        for name, s in sorted(samples.items(), key=lambda kv: min(kv[1])):
            print(f"  {name:24s} min {1e3 * min(s):7.3f}  median {1e3 * statistics.median(s):7.3f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
