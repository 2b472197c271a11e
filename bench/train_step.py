"""Time one training step of an MLP 784-256-128-10 at batch 256 (not a test).

A step is: forward, SoftmaxCrossEntropyLoss, backward, Trainer.step (SGD with momentum).
The parts are also timed one by one. With --torch, the same step is timed in PyTorch through
a separate interpreter (default /tmp/kiln-peers/tp/bin/python) if it is there.

    PYTHONPATH=. python bench/train_step.py [--steps 50] [--torch]
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

from kiln import autograd, gluon, np
from kiln.gluon import nn

BATCH, SIZES = 256, (784, 256, 128, 10)

TORCH_SCRIPT = r"""
import json, statistics, sys, time
import torch
torch.manual_seed(0)
steps = int(sys.argv[1])
net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                          torch.nn.Linear(256, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
loss_fn = torch.nn.CrossEntropyLoss()
x = torch.randn(256, 784)
y = torch.randint(0, 10, (256,))
times = []
for i in range(steps + 5):
    t = time.perf_counter()
    opt.zero_grad()
    loss = loss_fn(net(x), y)
    loss.backward()
    opt.step()
    if i >= 5:
        times.append(time.perf_counter() - t)
print(json.dumps({"median_ms": 1000 * statistics.median(times),
                  "threads": torch.get_num_threads(), "version": torch.__version__}))
"""


def build():
    np.random.seed(0)
    net = nn.HybridSequential()
    net.add(nn.Dense(SIZES[1], activation="relu", in_units=SIZES[0]),
            nn.Dense(SIZES[2], activation="relu", in_units=SIZES[1]),
            nn.Dense(SIZES[3], in_units=SIZES[2]))
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1,
                                                          "momentum": 0.9})
    rng = onp.random.default_rng(0)
    x = np.array(rng.standard_normal((BATCH, SIZES[0])).astype(onp.float32))
    y = np.array(rng.integers(0, SIZES[3], BATCH).astype(onp.int32))
    return net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), x, y


def time_kiln(steps: int) -> dict:
    net, trainer, loss_fn, x, y = build()
    parts: dict[str, list[float]] = {"forward+loss": [], "backward": [], "trainer.step": [],
                                     "total": []}
    for i in range(steps + 5):
        t0 = time.perf_counter()
        with autograd.record():
            loss = loss_fn(net(x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        trainer.step(BATCH)
        t3 = time.perf_counter()
        if i >= 5:                                   # skip warm-up steps
            parts["forward+loss"].append(t1 - t0)
            parts["backward"].append(t2 - t1)
            parts["trainer.step"].append(t3 - t2)
            parts["total"].append(t3 - t0)
    return {k: 1000 * statistics.median(v) for k, v in parts.items()}


def time_torch(python: str, steps: int) -> dict | None:
    if not os.path.exists(python):
        return None
    out = subprocess.run([python, "-c", TORCH_SCRIPT, str(steps)], capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        print(f"PyTorch run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--torch", action="store_true", help="also time PyTorch")
    parser.add_argument("--torch-python", default="/tmp/kiln-peers/tp/bin/python")
    args = parser.parse_args()
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH}, SGD momentum; median of "
          f"{args.steps} steps (OPENBLAS_NUM_THREADS={blas_threads})")
    for part, ms in time_kiln(args.steps).items():
        print(f"  kiln {part:>13}: {ms:8.3f} ms")
    if args.torch:
        res = time_torch(args.torch_python, args.steps)
        if res is None:
            print(f"  PyTorch: not available at {args.torch_python}")
        else:
            print(f"  torch {res['version']} ({res['threads']} threads) total: "
                  f"{res['median_ms']:8.3f} ms")


if __name__ == "__main__":
    main()
