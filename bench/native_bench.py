"""kiln's numpy and native backends against the hardware floor and the peers, side by side.

    PYTHONPATH=. .venv/bin/python bench/native_bench.py              # everything (~3 minutes)
    PYTHONPATH=. .venv/bin/python bench/native_bench.py --quick      # fewer repetitions
    ... --workloads w1,w2,compile --no-peers

Workloads (../shared/reference/anchors.md):
    w1       seed MLP 512-256-128-2, batch 1, `net(x)` from Python (µs per call)
    w2       MLP 784-256-128-10 training step, batch 256: forward, softmax cross-entropy,
             backward, SGD (ms)
    w3       LeNet training step batch 256 (ms), inference batch 1 (µs)
    w4       ResNet-18 inference batch 1, 3x224x224 (ms)
    compile  hybridize() + first call: cold (graph not in the cache) and warm, in new processes
    binding  the cost of calling one (tiny) compiled graph: CPython extension (what kiln uses),
             cffi, ctypes

w3/w4 need the convolution and pooling operators (skipped until they are merged). Peers run in
/tmp/kiln-peers/tp (PyTorch eager, ONNX Runtime); the C floor is ../shared/peers/
seed_mlp_floor.c, compiled and run in the same session. Every time is the median of `reps`
runs of `n` calls after a warm-up, as the peer scripts measure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as onp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import WithLoss, lenet, resnet18, seed_mlp, train_mlp  # noqa: E402
from bench.timing import med  # noqa: E402
from kiln import autograd, np  # noqa: E402
from kiln.ops import REGISTRY  # noqa: E402

SHARED = ROOT.parent / "shared" if (ROOT.parent / "shared").is_dir() else Path("/work/shared")
PEER_PYTHON = Path(os.environ.get("KILN_PEERS", "/tmp/kiln-peers")) / "tp" / "bin" / "python"
HAVE_CONV = "convolution" in REGISTRY and "pooling" in REGISTRY


def init_params(net, seed=0):
    rng = onp.random.default_rng(seed)
    for name, p in net.collect_params().items():
        a = p.data()._data
        if "running_var" in name or "gamma" in name:
            a[...] = rng.uniform(0.5, 1.5, a.shape)
        elif "running_mean" in name or "beta" in name or name.endswith("bias"):
            a[...] = rng.standard_normal(a.shape) * 0.1
        else:
            a[...] = rng.standard_normal(a.shape) * (1.0 / max(1, a[0].size) ** 0.5)


# ----------------------------------------------------------------------------------------------
# kiln workloads
# ----------------------------------------------------------------------------------------------

def w1(reps):
    out = {}
    x = np.array(onp.random.default_rng(0).random((1, 512)).astype("float32"))
    for backend in ("numpy", "native"):
        net = seed_mlp()
        net.initialize()
        net(x)
        net.hybridize(backend=backend)
        net(x)
        out[f"kiln_{backend}"] = med(lambda net=net: net(x), 1000, reps)
        if backend == "native":
            fwd = list(net._cache.entries.values())[0].forward
            out["kiln_native_c_call_only"] = med(lambda fwd=fwd: fwd(x._data), 1000, reps)
    return out


def _sgd_numpy(params, lr):
    for p in params:
        w = p.data()._data
        w -= lr * p.grad()._data


def train_step(net, x, y, backend, lr=0.1):
    """The training step the workloads time: record, backward, SGD (fused native kernel on the
    native backend, NumPy in place on the numpy backend, as the Trainer does)."""
    from kiln.backend.native import optimizer_kernels

    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    weights = [p.data()._data for p in params]
    lrs, wds = [lr] * len(params), [0.0] * len(params)
    native = backend == "native" and optimizer_kernels.available()

    def step():
        with autograd.record():
            loss = net(x, y)
        loss.backward()
        if native:
            optimizer_kernels.sgd_update_multi(weights, [p.grad()._data for p in params], None,
                                               lrs, wds)
        else:
            _sgd_numpy(params, lr)
    return step


def w2(reps, quick):
    out = {}
    rng = onp.random.default_rng(0)
    x = np.array(rng.random((256, 784)).astype("float32"))
    y = np.array(rng.integers(0, 10, 256).astype("float32"))
    for backend in ("numpy", "native"):
        net = WithLoss(train_mlp())
        net.initialize()
        net(x, y)
        net.hybridize(backend=backend)
        out[f"kiln_{backend}"] = med(train_step(net, x, y, backend), 50 if quick else 200, reps)
    return out


def w3(reps, quick):
    out = {}
    rng = onp.random.default_rng(0)
    x = np.array(rng.standard_normal((256, 1, 28, 28)).astype("float32"))
    y = np.array(rng.integers(0, 10, 256).astype("float32"))
    x1 = np.array(rng.standard_normal((1, 1, 28, 28)).astype("float32"))
    for backend in ("numpy", "native"):
        net = WithLoss(lenet())
        net.initialize()
        net(x, y)
        net.hybridize(backend=backend)
        out[f"train_kiln_{backend}"] = med(train_step(net, x, y, backend, 0.9),
                                           5 if quick else 20, reps)
        body = lenet()
        body.initialize()
        body(x1)
        body.hybridize(backend=backend)
        out[f"infer_kiln_{backend}"] = med(lambda body=body: body(x1), 1000, reps)
    return out


def w4(reps, quick):
    out = {}
    x = np.array(onp.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("float32"))
    for backend in ("numpy", "native"):
        net = resnet18()
        net.initialize()
        net(x)
        init_params(net)
        net.hybridize(backend=backend)
        out[f"kiln_{backend}"] = med(lambda net=net: net(x), 5 if quick else 10, reps)
    return out


# ----------------------------------------------------------------------------------------------
# compile latency: fresh processes over a private cache
# ----------------------------------------------------------------------------------------------

COMPILE_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as onp
from kiln import np
from bench import models
t0 = time.perf_counter()
from kiln.backend.native.runtime import load_runtime
load_runtime()
runtime = time.perf_counter() - t0
name = sys.argv[1]
net = getattr(models, name)()
shape = {{"seed_mlp": (1, 512), "resnet18": (1, 3, 224, 224)}}[name]
x = np.array(onp.ones(shape, "float32"))
net.initialize()
net(x)
start = time.perf_counter()
net.hybridize(backend="native")
net(x)
elapsed = time.perf_counter() - start
entries = [e for c in [net._cache] for e in c.entries.values()]
print(json.dumps({{"seconds": elapsed, "runtime_seconds": runtime,
                  "cache": entries[0].compiled.info.get("cache")}}))
"""


def _compile_run(name, cache_dir):
    env = dict(os.environ, KILN_CACHE_DIR=cache_dir, PYTHONPATH=str(ROOT))
    script = COMPILE_SCRIPT.format(root=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script, name], env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compile_latency():
    out = {}
    cache = tempfile.mkdtemp(prefix="kiln-bench-cache-")
    try:
        models = ["seed_mlp"] + (["resnet18"] if HAVE_CONV else [])
        first = _compile_run("seed_mlp", cache)      # empty cache: builds the runtime too
        out["runtime_first_build"] = first["runtime_seconds"]
        out["seed_mlp_cold_and_runtime"] = first["seconds"] + first["runtime_seconds"]
        for name in models:
            fresh = tempfile.mkdtemp(prefix="kiln-bench-graphs-", dir=cache)
            shutil.rmtree(fresh)
            cold = _compile_run(name, cache) if name != "seed_mlp" else None
            if name == "seed_mlp":
                cold = first
            warm = _compile_run(name, cache)
            out[f"{name}_cold"] = cold["seconds"]
            out[f"{name}_warm"] = warm["seconds"]
            out[f"{name}_warm_cache"] = warm["cache"]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------------------------
# the binding: one compiled graph called three ways
# ----------------------------------------------------------------------------------------------

def binding(reps):
    """One tiny compiled graph (a 4 -> 2 dense layer) called three ways: the time is the
    binding's own cost (the graph's work is a few nanoseconds)."""
    import ctypes

    from kiln.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Dense(2))
    net.initialize()
    x = np.array(onp.random.default_rng(0).random((1, 4)).astype("float32"))
    net(x)
    net.hybridize(backend="native")
    ref = net(x)._data
    entry = list(net._cache.entries.values())[0]
    runner = entry.forward
    info = entry.compiled.info
    from kiln.backend.native.runtime import load_library

    lib = load_library(Path(info["library"]))
    address = ctypes.cast(lib.kiln_graph_run, ctypes.c_void_p).value
    prm_arrays = list(runner.params)
    arena = runner.arena
    xd = x._data
    out = {"cpython_extension_vectorcall": med(lambda: runner(xd), 1000, reps)}

    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_void_p)(address)
    prm = (ctypes.c_void_p * len(prm_arrays))(*[a.ctypes.data for a in prm_arrays])
    ins, outs = (ctypes.c_void_p * 1)(), (ctypes.c_void_p * 1)()
    arena_ptr = arena.ctypes.data

    def via_ctypes():
        y = onp.empty((1, 2), onp.float32)
        ins[0] = xd.ctypes.data
        outs[0] = y.ctypes.data
        fn(ins, outs, prm, arena_ptr, None)
        return y
    onp.testing.assert_allclose(via_ctypes(), ref, rtol=1e-6)
    out["ctypes"] = med(via_ctypes, 1000, reps)
    try:
        import cffi
    except ImportError:
        out["cffi"] = None
        return out
    ffi = cffi.FFI()
    cfn = ffi.cast("int(*)(void **, void **, void **, char *, void *)", address)
    cprm = ffi.new("void *[]", [ffi.cast("void *", a.ctypes.data) for a in prm_arrays])
    cin, cout = ffi.new("void *[1]"), ffi.new("void *[1]")
    carena = ffi.cast("char *", arena_ptr)

    def via_cffi():
        y = onp.empty((1, 2), onp.float32)
        cin[0] = ffi.from_buffer(xd)
        cout[0] = ffi.from_buffer(y)
        cfn(cin, cout, cprm, carena, ffi.NULL)
        return y
    onp.testing.assert_allclose(via_cffi(), ref, rtol=1e-6)
    out["cffi_abi"] = med(via_cffi, 1000, reps)
    return out


# ----------------------------------------------------------------------------------------------
# floor and peers
# ----------------------------------------------------------------------------------------------

def c_floor():
    src = SHARED / "peers" / "seed_mlp_floor.c"
    if not src.is_file():
        return None
    exe = Path(tempfile.mkdtemp(prefix="kiln-floor-")) / "floor"
    subprocess.run(["cc", "-O3", "-march=native", "-o", str(exe), str(src)], check=True)
    text = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    values = sorted(float(v) for v in re.findall(r"C floor: ([0-9.]+) us/call", text))
    return values[len(values) // 2] * 1e-6 if values else None


def peers(work, quick):
    if not PEER_PYTHON.exists():
        return {}
    args = [str(PEER_PYTHON), str(ROOT / "bench" / "peers_torch_ort.py"), ",".join(work)]
    if quick:
        args.append("quick")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print("peers failed:", proc.stderr[-1500:], file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------

def fmt_time(seconds, unit):
    if seconds is None:
        return "-"
    scale = {"us": 1e6, "ms": 1e3, "s": 1.0}[unit]
    return f"{seconds * scale:.2f} {unit}"


def row(workload, system, seconds, unit, ref=None, note=""):
    ratio = f"{seconds / ref:.2f}x" if seconds and ref else ""
    print(f"| {workload:<26} | {system:<34} | {fmt_time(seconds, unit):>12} | "
          f"{ratio:>14} | {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="w1,w2,w3,w4,compile,binding")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    work = args.workloads.split(",")
    reps = 3 if args.quick else 7
    from kiln.backend.native.runtime import load_runtime

    rt = load_runtime()
    print(f"# kiln native bench  {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or ''}"
          f"  load average {os.getloadavg()[0]:.2f}  threads {rt.binding.get_num_threads()}  "
          f"BLAS {rt.blas}  {rt.toolchain.version}")
    results = {}
    peer: dict = {}
    # each workload's peers run right after it, so both see the machine in the same state
    for w in ("w1", "w2", "w3", "w4"):
        if w not in work or (w in ("w3", "w4") and not HAVE_CONV):
            continue
        if w == "w1":
            results["w1"] = w1(reps)
            results["floor"] = c_floor()
        elif w == "w2":
            results["w2"] = w2(reps, args.quick)
        elif w == "w3":
            results["w3"] = w3(reps, args.quick)
        else:
            results["w4"] = w4(reps, args.quick)
        if not args.no_peers:
            peer.update(peers([w], args.quick))
    if "binding" in work:
        results["binding"] = binding(reps)
    if "compile" in work:
        results["compile"] = compile_latency()

    print()
    print("| workload                   | system                             |         time "
          "|  ratio to native | note")
    print("|---|---|---|---|---|")
    if "w1" in results:
        r, nat = results["w1"], results["w1"]["kiln_native"]
        row("W1 seed MLP b1", "kiln native", nat, "us", nat, "target <= 1.30x floor")
        row("", "kiln native (C call only)", r["kiln_native_c_call_only"], "us", nat)
        row("", "kiln numpy backend", r["kiln_numpy"], "us", nat)
        row("", "C floor (seed_mlp_floor.c)", results["floor"], "us", nat,
            f"native/floor = {nat / results['floor']:.2f}x" if results["floor"] else "")
        for k in ("w1_torch_eager", "w1_ort_1thread", "w1_ort_default"):
            if k in peer:
                row("", k[3:].replace("_", " "), peer[k], "us", nat)
    if "w2" in results:
        r, nat = results["w2"], results["w2"]["kiln_native"]
        row("W2 MLP train step b256", "kiln native", nat, "ms", nat,
            "target: torch eager / native >= 1.25")
        row("", "kiln numpy backend", r["kiln_numpy"], "ms", nat)
        if "w2_torch_eager" in peer:
            row("", "torch eager", peer["w2_torch_eager"], "ms", nat)
    if "w3" in results:
        r = results["w3"]
        nat = r["train_kiln_native"]
        row("W3 LeNet train step b256", "kiln native", nat, "ms", nat,
            "target: torch eager / native >= 1.5")
        row("", "kiln numpy backend", r["train_kiln_numpy"], "ms", nat)
        if "w3_train_torch_eager" in peer:
            row("", "torch eager", peer["w3_train_torch_eager"], "ms", nat)
        nat = r["infer_kiln_native"]
        row("W3 LeNet inference b1", "kiln native", nat, "us", nat, "target: <= ORT")
        row("", "kiln numpy backend", r["infer_kiln_numpy"], "us", nat)
        for k in ("w3_infer_torch_eager", "w3_infer_ort_1thread", "w3_infer_ort_default"):
            if k in peer:
                row("", k[9:].replace("_", " "), peer[k], "us", nat)
    if "w4" in results:
        r, nat = results["w4"], results["w4"]["kiln_native"]
        row("W4 ResNet-18 b1 224", "kiln native", nat, "ms", nat, "target: <= ORT")
        row("", "kiln numpy backend", r["kiln_numpy"], "ms", nat)
        for k in ("w4_torch_eager", "w4_ort_1thread", "w4_ort_default"):
            if k in peer:
                row("", k[3:].replace("_", " "), peer[k], "ms", nat)
    if "binding" in results:
        r = results["binding"]
        ref = r["cpython_extension_vectorcall"]
        for k, v in r.items():
            row("binding: one graph call", k.replace("_", " "), v, "us", ref)
    if "compile" in results:
        for k, v in results["compile"].items():
            if isinstance(v, float):
                row("compile latency", k.replace("_", " "), v, "s", None)
    if not HAVE_CONV:
        print("\n(w3/w4 skipped: the convolution and pooling operators are not merged yet)")
    print("\n" + json.dumps({"results": results, "peers": peer}, default=str))


if __name__ == "__main__":
    main()
