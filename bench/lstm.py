"""LSTM layer, forward + backward: kiln hybridized beside PyTorch eager `nn.LSTM`.

    PYTHONPATH=. .venv/bin/python bench/lstm.py [--rounds 21] [--calls 3]
                 [--torch-python /tmp/kiln-peers/tp/bin/python]

Sizes: input 128, hidden 256, sequence 35, batch 32, float32; one call is the layer's forward on
a (35, 32, 128) input that needs a gradient, the sum of its output, and the backward (gradients
of the input and the four parameters). kiln runs `gluon.rnn.LSTM` hybridized under
`autograd.record()` (`--kiln-variants`: also on one thread, and with the layer in NumPy, as
where no C compiler exists);
PyTorch runs `torch.nn.LSTM` eagerly, with its default threads and with one.

Each framework runs in its own process (the peer's NumPy differs from kiln's); the driver
interleaves the rounds across the processes (one round is `calls` calls, alternating which
process goes first), so that a shared machine's drifting load hits all alike, and reports each
one's median and minimum time per call, the ratio of kiln's median to each peer's and the
median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
T, N, INPUT, HIDDEN = 35, 32, 128, 256


def kiln_step():
    sys.path.insert(0, ROOT)
    import numpy as onp

    from kiln import autograd, np
    from kiln.gluon import rnn

    layer = rnn.LSTM(HIDDEN, input_size=INPUT)
    layer.initialize()
    layer.hybridize()
    x = np.array(onp.random.default_rng(0).standard_normal((T, N, INPUT)).astype("float32"))
    x.attach_grad()

    def step():
        with autograd.record():
            loss = layer(x).sum()
        loss.backward()
    return step


def torch_step(threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    layer = torch.nn.LSTM(INPUT, HIDDEN)
    x = torch.randn(T, N, INPUT, requires_grad=True)

    def step():
        out, _ = layer(x)
        out.sum().backward()
    return step


def worker(kind: str) -> None:
    """Build the step, warm up, then time `calls` calls per line read ("run <calls>")."""
    if kind == "kiln-numpy":            # the layer's NumPy implementation, hybridized in NumPy
        os.environ["KILN_BACKEND"] = "numpy"
    if kind == "kiln-1":                # the kernels' pool and the NumPy path's row split
        os.environ["KILN_NUM_THREADS"] = "1"
        os.environ["KILN_RNN_THREADS"] = "1"
    step = kiln_step() if kind.startswith("kiln") else torch_step(
        1 if kind == "torch-1" else None)
    for _ in range(5):
        step()
    print("ready", flush=True)
    for line in sys.stdin:
        calls = int(line.split()[1])
        start = time.perf_counter()
        for _ in range(calls):
            step()
        print((time.perf_counter() - start) / calls, flush=True)


def describe() -> dict:
    import numpy

    sys.path.insert(0, ROOT)
    from kiln.backend.blas import blas_thread_control

    control = blas_thread_control()
    return {"cpus": os.cpu_count(), "load": os.getloadavg()[0], "numpy": numpy.__version__,
            "numpy_blas_threads": control[0]() if control else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--torch-python", default=os.path.join(
        os.environ.get("KILN_PEERS", "/tmp/kiln-peers"), "tp", "bin", "python"))
    parser.add_argument("--kiln-variants", action="store_true",
                        help="also time kiln on one thread (KILN_NUM_THREADS=1) and with "
                             "the layer in NumPy (KILN_BACKEND=numpy)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    me = os.path.abspath(__file__)
    commands = {"kiln (hybridized)": [sys.executable, me, "--worker", "kiln"]}
    if args.kiln_variants:
        commands["kiln, one thread"] = [sys.executable, me, "--worker", "kiln-1"]
        commands["kiln, NumPy path"] = [sys.executable, me, "--worker", "kiln-numpy"]
    if os.path.exists(args.torch_python):
        commands["PyTorch eager"] = [args.torch_python, me, "--worker", "torch"]
        commands["PyTorch eager, 1 thread"] = [args.torch_python, me, "--worker", "torch-1"]
    else:
        print(f"no PyTorch at {args.torch_python}: timing kiln alone")
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = {name: subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True, env=env) for name, cmd in commands.items()}
    for name, p in procs.items():
        if p.stdout.readline().strip() != "ready":
            raise SystemExit(f"{name} worker failed to start")
    samples: dict[str, list[float]] = {name: [] for name in procs}
    names = list(procs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            procs[name].stdin.write(f"run {args.calls}\n")
            procs[name].stdin.flush()
            samples[name].append(float(procs[name].stdout.readline()))
    for p in procs.values():
        p.stdin.close()
        p.wait()
    info = describe()
    print(f"LSTM layer fwd+bwd, input {INPUT}, hidden {HIDDEN}, sequence {T}, batch {N}; "
          f"{args.rounds} interleaved rounds of {args.calls} calls; {info['cpus']} CPUs, "
          f"load {info['load']:.1f}")
    results = {name: {"median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3}
               for name, s in samples.items()}
    base = results[names[0]]["median_ms"]
    for name, r in results.items():
        # the median of per-round ratios: round r of each process ran within one stretch of time
        paired = statistics.median(a / b for a, b in zip(samples[names[0]], samples[name]))
        results[name]["paired_ratio"] = paired
        ratio = "" if name == names[0] else (f"   kiln / this = {base / r['median_ms']:.2f}"
                                             f" (by round {paired:.2f})")
        print(f"  {name:<26} median {r['median_ms']:7.1f} ms   min {r['min_ms']:7.1f} ms{ratio}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "machine": info}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
