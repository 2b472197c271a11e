"""Acceptance check against a real MXNet 1.9.1: MXNet reads kiln's exports and computes the same.

Not a pytest module (CI has no MXNet). It runs in two interpreters, because kiln needs NumPy
>= 1.26 and MXNet 1.9.1 needs NumPy 1.23:

    python tests/io/mxnet_roundtrip.py [--mxnet-python /tmp/kiln-peers/mx/bin/python] [--keep DIR]

1. (kiln's interpreter) build each model of tests/io/models.py, export it in legacy and numpy
   mode, save its input and kiln's prediction; also re-export the MXNet-made files of
   tests/io/data/mxnet after importing them into kiln (MXNet -> kiln -> MXNet);
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
            onp.save(prefix + "_x.npy", x.asnumpy())
            onp.save(prefix + "_y.npy", y)
            cases.append({"prefix": prefix, "mode": mode, "what": f"kiln {name}"})
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
            onp.save(prefix + "_x.npy", x.asnumpy())
            onp.save(prefix + "_y.npy", y)
            cases.append({"prefix": prefix, "mode": mode, "what": f"MXNet {name} via kiln"})
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
                    ops = {n["op"] for n in json.load(f)["nodes"]} - {"null"}
                unknown = sorted(ops - registered)
                if unknown:
                    raise RuntimeError(f"operators MXNet lacks: {unknown}")
                net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                                   prefix + "-0000.params")
                x = onp.load(prefix + "_x.npy")
                x = mx.np.array(x) if mode == "numpy" else mx.nd.array(x)
                y = net(x).asnumpy()
                ref = onp.load(prefix + "_y.npy")
                err = float(onp.max(onp.abs(y - ref)))
                ok = y.shape == ref.shape and onp.allclose(y, ref, rtol=1e-4, atol=1e-5)
                print(f"{'ok  ' if ok else 'FAIL'} {label} max abs diff {err:.2e} "
                      f"({len(ops)} op kinds)")
                failures += not ok
            except Exception as e:  # report every case
                print(f"FAIL {label} {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                failures += 1
    print(f"{len(cases) - failures} passed, {failures} failed")
    return failures


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
