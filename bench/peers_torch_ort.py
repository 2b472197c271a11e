"""The peers of bench/native_bench.py: PyTorch eager and ONNX Runtime on the same workloads.

Runs in the peer environment (`bash ../shared/peers/setup.sh tp` builds /tmp/kiln-peers/tp);
native_bench.py starts it and reads the one JSON line it prints. Timing is the same as
native_bench's: the median of `reps` runs of `n` calls after a warm-up.

    /tmp/kiln-peers/tp/bin/python bench/peers_torch_ort.py w1,w2,w3,w4 [quick]
"""

import json
import os
import sys
import tempfile

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import med


def ort_session(model, x, threads=None):
    import onnxruntime as ort

    path = os.path.join(tempfile.mkdtemp(prefix="kiln-peer-"), "m.onnx")
    torch.onnx.export(model, (x,), path, input_names=["x"], output_names=["y"], dynamo=False)
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_times(model, x, n, reps):
    out = {}
    xn = x.numpy()
    for label, threads in (("ort_1thread", 1), ("ort_default", None)):
        try:
            s = ort_session(model, x, threads)
            out[label] = med(lambda s=s: s.run(None, {"x": xn}), n, reps)
        except Exception as e:   # a peer that fails is reported, not fatal
            out[label + "_error"] = str(e)[:200]
    return out


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                         nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                         nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
                         nn.Linear(84, 10))


class Residual(nn.Module):
    def __init__(self, i, o, use1x1=False, stride=1):
        super().__init__()
        self.c1 = nn.Conv2d(i, o, 3, padding=1, stride=stride)
        self.c2 = nn.Conv2d(o, o, 3, padding=1)
        self.c3 = nn.Conv2d(i, o, 1, stride=stride) if use1x1 else None
        self.b1, self.b2 = nn.BatchNorm2d(o), nn.BatchNorm2d(o)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        if self.c3 is not None:
            x = self.c3(x)
        return torch.relu(y + x)


def resnet18(classes=1000):
    layers = [nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, 1)]
    ch = 64
    for i, o in enumerate([64, 128, 256, 512]):
        layers += [Residual(ch, o, use1x1=i > 0, stride=1 if i == 0 else 2), Residual(o, o)]
        ch = o
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def main():
    work = sys.argv[1].split(",") if len(sys.argv) > 1 else ["w1", "w2", "w3", "w4"]
    quick = len(sys.argv) > 2 and sys.argv[2] == "quick"
    reps = 3 if quick else 7
    torch.manual_seed(0)
    res = {"torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if "w1" in work:
        net = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                            nn.Linear(128, 2))
        x = torch.randn(1, 512)
        with torch.inference_mode():
            res["w1_torch_eager"] = med(lambda: net(x), 1000, reps)
        res.update({f"w1_{k}": v for k, v in ort_times(net, x, 1000, reps).items()})
    if "w2" in work:
        x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
        mlp = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                            nn.Linear(128, 10))
        opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
        lossf = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            lossf(mlp(x), y).backward()
            opt.step()
        res["w2_torch_eager"] = med(step, 50 if quick else 200, reps)
    if "w3" in work:
        ln = lenet()
        x, y = torch.randn(256, 1, 28, 28), torch.randint(0, 10, (256,))
        opt = torch.optim.SGD(ln.parameters(), lr=0.9)
        lossf = nn.CrossEntropyLoss()

        def step3():
            opt.zero_grad()
            lossf(ln(x), y).backward()
            opt.step()
        res["w3_train_torch_eager"] = med(step3, 5 if quick else 20, reps)
        ln.eval()
        x1 = torch.randn(1, 1, 28, 28)
        with torch.inference_mode():
            res["w3_infer_torch_eager"] = med(lambda: ln(x1), 1000, reps)
        res.update({f"w3_infer_{k}": v for k, v in ort_times(ln, x1, 1000, reps).items()})
    if "w4" in work:
        rn = resnet18().eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.inference_mode():
            res["w4_torch_eager"] = med(lambda: rn(x), 5 if quick else 10, reps)
        res.update({f"w4_{k}": v for k, v in ort_times(rn, x, 5 if quick else 10, reps).items()})
    print(json.dumps(res))


if __name__ == "__main__":
    main()
