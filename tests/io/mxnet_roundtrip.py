"""Acceptance check against a real MXNet 1.9.1: MXNet reads kiln's exports and computes the same.

Not a pytest module (CI has no MXNet). It runs in two interpreters, because kiln needs NumPy
>= 1.26 and MXNet 1.9.1 needs NumPy 1.23:

    python tests/io/mxnet_roundtrip.py [--mxnet-python /tmp/kiln-peers/mx/bin/python] [--keep DIR]

1. (kiln's interpreter) build each model of tests/io/models.py, export it in legacy and numpy
   mode, save its input and kiln's prediction; also re-export the MXNet-made files of
   tests/io/data/mxnet after importing them into kiln (MXNet -> kiln -> MXNet); the same for
   models with control flow (`npx.foreach`, `npx.while_loop`, `npx.cond`) and the MXNet-made
   ones of tests/io/data/mxnet/recurrent, in legacy mode (MXNet 1.9.1 has control flow only
   outside numpy mode);
2. (MXNet's interpreter, `check` sub-command) load every export with
   `mx.gluon.SymbolBlock.imports` (numpy-mode files under `npx.set_np()`), run it, compare.

Prints one line per model and mode, and exits non-zero if any fails.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MX_DATA = os.path.join(HERE, "data", "mxnet")


def _save_case(cases, prefix, mode, what, inputs, outputs, names=("data",)) -> None:
    import numpy as onp

    for k, x in enumerate(inputs):
        onp.save(f"{prefix}_x{k}.npy", x.asnumpy())
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    for k, y in enumerate(outputs):
        onp.save(f"{prefix}_y{k}.npy", y.asnumpy())
    cases.append({"prefix": prefix, "mode": mode, "what": what, "inputs": list(names),
                  "outputs": len(outputs)})


def export_control_flow(out_dir: str, cases: list) -> None:
    import numpy as onp

    import control_flow_models
    from kiln import np
    from kiln.gluon import SymbolBlock

    for name, (net, xs) in control_flow_models.build_all().items():
        net.hybridize()
        ys = net(*xs)
        for mode in ("legacy", "numpy"):
            prefix = os.path.join(out_dir, f"kiln_{name}_{mode}")
            net.export(prefix, 0, mode=mode)
            names = ["data"] if len(xs) == 1 else [f"data{k}" for k in range(len(xs))]
            _save_case(cases, prefix, mode, f"kiln {name}", xs, ys, names)
            cases[-1]["known"] = control_flow_models.MXNET_CANNOT.get(name)
    folder = os.path.join(MX_DATA, "recurrent")
    for sym_file in sorted(glob.glob(os.path.join(folder, "*-symbol.json"))):
        base = sym_file[:-len("-symbol.json")]
        name = os.path.basename(base)
        ref = onp.load(base + ".npz")
        xs = [np.array(ref[k]) for k in sorted(ref) if k.startswith("in")]
        names = [f"data{k}" for k in range(len(xs))]
        net = SymbolBlock.imports(sym_file, names, base + "-0000.params")
        net.hybridize()
        ys = net(*xs)
        prefix = os.path.join(out_dir, f"mx_{name}_legacy")
        net.export(prefix, 0, mode="legacy")
        _save_case(cases, prefix, "legacy", f"MXNet {name} via kiln", xs, ys, names)


def export_all(out_dir: str) -> None:
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import numpy as onp

    import models
    from kiln import np
    from kiln.gluon import SymbolBlock

    cases = []
    for name in models.MODELS:
        if name in models.CONV_MODELS and not models.HAS_CONV:
            print(f"skip {name}: this kiln has no convolution operator")
            continue
        net, x = models.build(name)
        net.hybridize()
        y = net(x).asnumpy()
        for mode in ("legacy", "numpy"):
            prefix = os.path.join(out_dir, f"kiln_{name}_{mode}")
            net.export(prefix, 0, mode=mode)
            _save_case(cases, prefix, mode, f"kiln {name}", [x], [np.array(y)])
    for sym_file in sorted(glob.glob(os.path.join(MX_DATA, "*-symbol.json"))):
        base = sym_file[:-len("-symbol.json")]
        name = os.path.basename(base)
        if any(t in name for t in ("lenet", "resnet", "misc")) and not models.HAS_CONV:
            continue
        net = SymbolBlock.imports(sym_file, ["data"], base + "-0000.params")
        x = np.array(onp.load(base + "_x.npy"))
        net.hybridize()
        y = net(x).asnumpy()
        for mode in ("legacy", "numpy"):
            prefix = os.path.join(out_dir, f"mx_{name}_{mode}")
            net.export(prefix, 0, mode=mode)
            _save_case(cases, prefix, mode, f"MXNet {name} via kiln", [x], [np.array(y)])
    export_control_flow(out_dir, cases)
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


def check_all(out_dir: str) -> int:
    import mxnet as mx
    import numpy as onp

    registered = set(mx.operator.get_all_registered_operators())
    with open(os.path.join(out_dir, "cases.json")) as f:
        cases = json.load(f)
    failures = 0
    for mode in ("legacy", "numpy"):
        if mode == "numpy":
            mx.npx.set_np()
        for case in (c for c in cases if c["mode"] == mode):
            prefix = case["prefix"]
            label = f"{case['what']:<32} {mode:<7}"
            try:
                with open(prefix + "-symbol.json") as f:
                    text = f.read()
                ops = {n["op"] for n in json.loads(text)["nodes"]} - {"null"}
                unknown = sorted(ops - registered)
                if unknown:
                    raise RuntimeError(f"operators MXNet lacks: {unknown}")
                net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", case["inputs"],
                                                   prefix + "-0000.params")
                array = mx.np.array if mode == "numpy" else mx.nd.array
                xs = [array(onp.load(f"{prefix}_x{k}.npy")) for k in range(len(case["inputs"]))]
                ys = net(*xs)
                ys = ys if isinstance(ys, (list, tuple)) else [ys]
                err, ok = 0.0, len(ys) == case["outputs"]
                for k, y in enumerate(ys[:case["outputs"]]):
                    y, ref = y.asnumpy(), onp.load(f"{prefix}_y{k}.npy")
                    if k == 0 and "_while_loop" in text:  # these models stack it first
                        rows = _steps_taken(prefix)   # MXNet leaves later rows unspecified
                        y, ref = y[:rows], ref[:rows]
                    err = max(err, float(onp.max(onp.abs(y - ref))) if y.size else 0.0)
                    ok = ok and y.shape == ref.shape and onp.allclose(y, ref, rtol=1e-4,
                                                                      atol=1e-5)
                print(f"{'ok  ' if ok else 'FAIL'} {label} max abs diff {err:.2e} "
                      f"({len(ops)} op kinds)")
                failures += not ok
            except Exception as e:  # report every case
                if case.get("known"):
                    print(f"xfail {label} {case['known']}")
                    continue
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                print(f"FAIL {label} {type(e).__name__}: {first[:200]}")
                failures += 1
    print(f"{len(cases) - failures} passed, {failures} failed")
    return failures


def _steps_taken(prefix: str) -> int:
    """The rows a while loop filled: the first all-zero row of kiln's output ends them."""
    import numpy as onp

    ref = onp.load(f"{prefix}_y0.npy")
    filled = [bool(onp.any(r)) for r in ref]
    return filled.index(False) if False in filled else len(filled)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="all", choices=["all", "export", "check"])
    parser.add_argument("--dir", help="work folder (kept); default a temporary one")
    parser.add_argument("--mxnet-python", default="/tmp/kiln-peers/mx/bin/python")
    args = parser.parse_args()
    if args.command == "export":
        export_all(args.dir)
        return 0
    if args.command == "check":
        return 1 if check_all(args.dir) else 0
    work = args.dir or tempfile.mkdtemp(prefix="kiln-mx-")
    os.makedirs(work, exist_ok=True)
    export_all(work)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([args.mxnet_python, os.path.abspath(__file__), "check", "--dir", work],
                          env=env)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
