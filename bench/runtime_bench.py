"""The C runtime (`kiln-run --bench`) beside ONNX Runtime on the same exported networks.

    python bench/runtime_bench.py                 # seed MLP and LeNet, batch 1
    python bench/runtime_bench.py --runs 5000     # more runs per round

Each network is built in kiln, exported once as MXNet files (`net.export`, what the runtime
reads) and once as ONNX from those same files (`kiln.onnx.export_model`), with the same
weights. Times are per inference, batch 1, after a warm-up: the C runtime's median as
`kiln-run --bench N` reports it (set_input + run), ONNX Runtime's median of `session.run`
timed the same way in this process (plain `run`, and `run_with_iobinding` with the input and
output bound once, its lowest-overhead Python path). Python's share of ORT's time is bounded
by timing a one-node Identity model the same way: "ORT iobinding - Identity" subtracts it, a
lower bound for ORT called from C (it also removes ORT's own per-run overhead, which a C
caller would pay). Rounds alternate between the engines so that machine noise hits all; the
table gives the best round's median. LeNet needs kiln's convolution operators
(the ops-nn branch) and is skipped without them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as onp

ROOT = Path(__file__).resolve().parents[1]
# appended, so that a kiln on PYTHONPATH (e.g. a tree with the ops-nn operators) comes first
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "tests" / "io"))
sys.path.append(str(ROOT / "tests" / "runtime"))


def seed_mlp():
    import models

    return models.seed_mlp(), (1, 512)


def lenet():
    """D2L's LeNet (sigmoid, average pooling), 1x28x28 inputs."""
    import models

    return models.lenet(), (1, 1, 28, 28)


def export(make, tmp: Path, name: str):
    import kiln
    from kiln import np
    from kiln.onnx import export_model

    net, shape = make()
    if net is None:
        return None
    net.initialize(kiln.init.Xavier())
    x = onp.random.default_rng(0).standard_normal(shape).astype(onp.float32)
    net.hybridize()
    ref = net(np.array(x)).asnumpy()
    sym, params = net.export(str(tmp / name), 0)
    onnx_path = export_model(sym, params, input_shapes=[shape], path=str(tmp / f"{name}.onnx"))
    xfile = tmp / f"{name}_x.npy"
    onp.save(xfile, x)
    return sym, params, onnx_path, xfile, x, ref


def c_runtime_median(kiln_run: Path, sym, params, xfile, runs: int, threads: int) -> float:
    env = dict(os.environ, KILN_NUM_THREADS=str(threads))
    out = subprocess.run([str(kiln_run), sym, params, str(xfile), "--bench", str(runs)],
                         capture_output=True, text=True, check=True, env=env).stdout
    return float(re.search(r"median ([0-9.]+) us", out).group(1))


def median_us(fn, runs: int) -> float:
    for _ in range(max(10, runs // 10)):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def ort_calls(session, x):
    """session.run, and run_with_iobinding with input and output bound once."""
    import onnxruntime as ort

    name = session.get_inputs()[0].name
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x))
    out = session.get_outputs()[0]
    binding.bind_output(out.name)
    session.run_with_iobinding(binding)  # allocates the output once
    return (lambda: session.run(None, {name: x})), (lambda: session.run_with_iobinding(binding))


def identity_session(tmp: Path, shape):
    """A one-node ONNX model (Identity) of the input's shape: ORT's fixed cost per call."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)) for n in "xy"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", vi[:1], vi[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp / "identity.onnx"
    onnx.save(model, str(path))
    opt = ort.SessionOptions()
    opt.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opt, providers=["CPUExecutionProvider"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000, help="inferences per round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    subprocess.run(["make", "-C", str(ROOT / "runtime"), "-j2"], check=True,
                   capture_output=True)
    kiln_run = ROOT / "runtime" / "build" / "kiln-run"
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, make in (("seed MLP 512-256-128-2", seed_mlp), ("LeNet", lenet)):
            exported = export(make, Path(d), name.split()[0].lower())
            if exported is None:
                print(f"{name}: skipped (this kiln has no convolution operators)")
                continue
            sym, params, onnx_path, xfile, x, ref = exported
            sessions = {}
            for threads in (1, 0):
                opt = ort.SessionOptions()
                opt.intra_op_num_threads = threads
                sessions[threads] = ort.InferenceSession(onnx_path, opt,
                                                         providers=["CPUExecutionProvider"])
            y = sessions[1].run(None, {sessions[1].get_inputs()[0].name: x})[0]
            onp.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
            run1, bound1 = ort_calls(sessions[1], x)
            run0, bound0 = ort_calls(sessions[0], x)
            identity = ort_calls(identity_session(Path(d), x.shape), x)[1]
            candidates = {
                "kiln-run --bench, 1 thread":
                    lambda: c_runtime_median(kiln_run, sym, params, xfile, args.runs, 1),
                "kiln-run --bench, default threads":
                    lambda: c_runtime_median(kiln_run, sym, params, xfile, args.runs, 0),
                "ORT run, 1 thread": lambda: median_us(run1, args.runs),
                "ORT run, default threads": lambda: median_us(run0, args.runs),
                "ORT iobinding, 1 thread": lambda: median_us(bound1, args.runs),
                "ORT iobinding, default threads": lambda: median_us(bound0, args.runs),
                "ORT iobinding, Identity model": lambda: median_us(identity, args.runs),
            }
            best: dict[str, float] = {}
            for _ in range(args.rounds):
                for label, fn in candidates.items():
                    best[label] = min(best.get(label, float("inf")), fn())
            best["ORT iobinding - Identity (lower bound)"] = (
                best["ORT iobinding, 1 thread"] - best["ORT iobinding, Identity model"])
            for label, us in best.items():
                rows.append((name, label, us))
    print(f"\nper inference, batch 1, median of {args.runs} runs, best of {args.rounds} rounds "
          f"(onnxruntime {ort.__version__}, {os.cpu_count()} CPUs)")
    print(f"{'network':<24} {'engine':<40} {'us':>9}")
    for name, label, us in rows:
        print(f"{name:<24} {label:<40} {us:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
