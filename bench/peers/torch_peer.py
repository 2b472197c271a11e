"""Peer workloads on PyTorch (eager, TorchScript), ONNX Runtime and JAX, run in the peer
environment (`../shared/peers/setup.sh tp`). `python -m bench` starts it and asks it, one JSON
line at a time on stdin, to build a workload and to time batches of its calls (timing.serve),
so that its rounds interleave with kiln's.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from timing import serve

import torch
from torch import nn

torch.manual_seed(0)
TMP = tempfile.mkdtemp(prefix="kiln-bench-")


def ort_session(model, example, threads=None):
    import onnxruntime as ort

    path = os.path.join(TMP, "model.onnx")
    torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["y"],
                      dynamo=False)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def w1():
    net = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 2)).eval()
    x = torch.randn(1, 512)
    scripted = torch.jit.script(net)
    cands = {}

    def eager():
        with torch.inference_mode():
            return net(x)
    cands["torch eager (inference_mode)"] = eager

    def script():
        with torch.inference_mode():
            return scripted(x)
    cands["torch jit.script"] = script
    try:
        sess = ort_session(net, x, threads=1)
        xn = x.numpy()
        cands["onnxruntime"] = lambda: sess.run(None, {"x": xn})
    except Exception as e:
        print(f"# onnxruntime unavailable: {e}", file=sys.stderr)
    try:
        import jax
        import jax.numpy as jnp

        params = [jnp.asarray(p.detach().numpy().T if p.ndim == 2 else p.detach().numpy())
                  for p in net.parameters()]

        def f(p, v):
            h = jax.nn.relu(v @ p[0] + p[1])
            h = jax.nn.relu(h @ p[2] + p[3])
            return h @ p[4] + p[5]
        jf = jax.jit(f)
        xj = jnp.asarray(x.numpy())
        cands["jax.jit"] = lambda: jf(params, xj).block_until_ready()
    except Exception as e:
        print(f"# jax unavailable: {e}", file=sys.stderr)
    return cands


def w2():
    X = torch.randn(256, 784)
    Y = torch.randint(0, 10, (256,))
    mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(mlp(X), Y).backward()
        opt.step()
    return {"torch eager": step}


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                         nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
                         nn.Linear(84, 10))


def w3t():
    net = lenet()
    X = torch.randn(256, 1, 28, 28)
    Y = torch.randint(0, 10, (256,))
    opt = torch.optim.SGD(net.parameters(), lr=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(net(X), Y).backward()
        opt.step()
    return {"torch eager": step}


def w3i():
    net = lenet().eval()
    x = torch.randn(1, 1, 28, 28)
    cands = {}

    def eager():
        with torch.inference_mode():
            return net(x)
    cands["torch eager (inference_mode)"] = eager
    sess = ort_session(net, x, threads=1)
    xn = x.numpy()
    cands["onnxruntime"] = lambda: sess.run(None, {"x": xn})
    return cands


class Residual(nn.Module):
    def __init__(self, cin, cout, downsample=False, stride=1):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1, stride=stride)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.c3 = nn.Conv2d(cin, cout, 1, stride=stride) if downsample else None
        self.b1, self.b2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return torch.relu(y + (self.c3(x) if self.c3 is not None else x))


def resnet18():
    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    ch = 64
    for i, out in enumerate([64, 128, 256, 512]):
        layers += [Residual(ch, out, downsample=i > 0, stride=1 if i == 0 else 2),
                   Residual(out, out)]
        ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    return nn.Sequential(*layers).eval()


def w4():
    net = resnet18()
    x = torch.randn(1, 3, 224, 224)
    cands = {}

    def eager():
        with torch.inference_mode():
            return net(x)
    cands["torch eager (inference_mode)"] = eager
    sess = ort_session(net, x)
    xn = x.numpy()
    cands["onnxruntime"] = lambda: sess.run(None, {"x": xn})
    return cands


BUILDERS = {"W1": w1, "W2": w2, "W3t": w3t, "W3i": w3i, "W4": w4}

if __name__ == "__main__":
    serve(BUILDERS, {"system": "peers", "torch": torch.__version__,
                     "threads": torch.get_num_threads()})
