"""The matrix products behind the workloads: kiln_sgemm, NumPy and PyTorch, interleaved.

W2's training step, the LSTM of bench/lstm.py and most of ResNet-18 spend their time in float32
products; how fast kiln runs them bounds how close those workloads come to their peers. This
times each product shape as the workloads issue it (transposes as flags, as the gradients of
a dense layer use them), on one thread and on all of them, for

  - kiln:  `kiln.ops._gemm.matmul` (kiln_sgemm: the kernel library on kiln's thread pool),
  - numpy: `numpy.matmul` (NumPy's own BLAS and its own threads),
  - torch: `torch.mm` in a PyTorch peer process (../shared/peers/setup.sh builds it), which
    times one batch whenever asked, so the three alternate batch by batch.

    PYTHONPATH=. python bench/gemm.py                       # every shape, 1 and 2 threads
    PYTHONPATH=. python bench/gemm.py --shapes w2 --threads 2 --rounds 15

Prints GFLOP/s (2mnk / seconds) by the median and by the best batch, and kiln's ratio to the
fastest peer.
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

# name: [(m, k, n, op(A) transposed, op(B) transposed)]; op(A) is m x k, op(B) k x n
SHAPES = {
    "w2": [(256, 784, 256, 0, 1),    # forward, first layer: X W^T
           (256, 256, 128, 0, 1),
           (784, 256, 256, 1, 0),    # weight gradient, first layer: X^T G
           (256, 128, 256, 0, 0)],   # input gradient, second layer: G W
    "lstm": [(1120, 128, 1024, 0, 1),   # input projection of 35 steps x batch 32
             (32, 256, 1024, 0, 1),     # one recurrent step
             (256, 1120, 1024, 1, 0)],  # recurrent weight gradient over all steps
    "resnet": [(64, 576, 3136, 0, 0),   # a 3x3 convolution, 64 channels, 56x56, as a GEMM
               (512, 4608, 49, 0, 0)],
}

TORCH_SERVER = r"""
import json, sys, time
import torch
torch.manual_seed(0)
print(json.dumps({"version": torch.__version__}), flush=True)
cases = {}
for line in sys.stdin:
    m, k, n, ta, tb, threads, calls = json.loads(line)
    key = (m, k, n, ta, tb)
    if key not in cases:
        a = torch.rand(k, m) if ta else torch.rand(m, k)
        b = torch.rand(n, k) if tb else torch.rand(k, n)
        cases[key] = (a.T if ta else a, b.T if tb else b, torch.empty(m, n))
    a, b, c = cases[key]
    torch.set_num_threads(threads)
    for _ in range(3):
        torch.mm(a, b, out=c)
    t = time.perf_counter()
    for _ in range(calls):
        torch.mm(a, b, out=c)
    print((time.perf_counter() - t) / calls, flush=True)
"""


class TorchPeer:
    def __init__(self, python: str):
        self.proc = subprocess.Popen([python, "-c", TORCH_SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.proc.stdout.readline())

    def batch(self, shape, threads: int, calls: int) -> float:
        self.proc.stdin.write(json.dumps([*shape, threads, calls]) + "\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def operands(m, k, n, ta, tb):
    rng = onp.random.default_rng(0)
    a = rng.random((k, m) if ta else (m, k), dtype=onp.float32)
    b = rng.random((n, k) if tb else (k, n), dtype=onp.float32)
    return (a.T if ta else a), (b.T if tb else b), onp.empty((m, n), onp.float32)


def timed(fn, calls: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="w2,lstm,resnet")
    parser.add_argument("--threads", default=f"1,{os.cpu_count() or 1}")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--gap", type=float, default=0.3,
                        help="seconds of rest before each batch: NumPy's OpenBLAS threads spin "
                        "~0.1 s after their work and would take a core from the next candidate")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--torch-python", default=os.path.join(
        os.environ.get("KILN_PEERS", "/tmp/kiln-peers"), "tp", "bin", "python"))
    args = parser.parse_args(argv)

    from kiln.backend.native import optimizer_kernels
    from kiln.ops import _gemm

    if not _gemm.native_in_use():
        print("kiln's kernel library is not in use here (no C compiler, or KILN_BACKEND=numpy):"
              " 'kiln' below is NumPy's matmul")
    binding = optimizer_kernels._binding() if optimizer_kernels.available() else None
    torch = None
    if not args.no_torch and os.path.exists(args.torch_python):
        torch = TorchPeer(args.torch_python)
        print(f"PyTorch {torch.info['version']} from {args.torch_python}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:   # NumPy keeps its own thread count
        threadpool_limits = None

    print(f"GFLOP/s, median / best of {args.rounds} batches (load {os.getloadavg()[0]:.2f})")
    print(f"{'shape (m x k x n, transposes)':34s} {'thr':>3s} {'kiln':>11s} {'numpy':>11s} "
          f"{'torch':>11s}  kiln/best peer")
    for group in args.shapes.split(","):
        for shape in SHAPES[group]:
            m, k, n, ta, tb = shape
            a, b, c = operands(*shape)
            flops = 2.0 * m * k * n
            calls = max(3, int(2e9 / flops / 10))    # ~10 ms per batch at 200 GFLOP/s
            for threads in (int(t) for t in args.threads.split(",")):
                if binding is not None:
                    binding.set_num_threads(threads)
                samples = {"kiln": [], "numpy": [], "torch": []}
                for _ in range(args.rounds):
                    time.sleep(args.gap)
                    samples["kiln"].append(timed(lambda: _gemm.matmul(a, b, c), calls))
                    time.sleep(args.gap)
                    if threadpool_limits is not None:
                        with threadpool_limits(threads, user_api="blas"):
                            samples["numpy"].append(timed(lambda: onp.matmul(a, b, out=c),
                                                          calls))
                    else:
                        samples["numpy"].append(timed(lambda: onp.matmul(a, b, out=c), calls))
                    if torch is not None:
                        time.sleep(args.gap)
                        samples["torch"].append(torch.batch(shape, threads, calls))
                rate = {name: (flops / statistics.median(s) / 1e9, flops / min(s) / 1e9)
                        for name, s in samples.items() if s}
                cells = [f"{rate[x][0]:5.0f}/{rate[x][1]:<5.0f}" if x in rate else f"{'-':>11s}"
                         for x in ("kiln", "numpy", "torch")]
                peer = max(v[0] for name, v in rate.items() if name != "kiln")
                label = f"{m}x{k}x{n} {'T' if ta else 'N'}{'T' if tb else 'N'} ({group})"
                print(f"{label:34s} {threads:3d} {' '.join(cells)}  {rate['kiln'][0] / peer:.2f}")
                sys.stdout.flush()
    if binding is not None:
        binding.set_num_threads(0)
    if torch is not None:
        torch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
