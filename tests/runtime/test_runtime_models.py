"""The C runtime computes what kiln computes: MXNet-written files against their committed
outputs, and kiln's own exports (MLP, an elementwise/shape model, LeNet, a ResNet-style and a
MobileNet-style net, numpy and legacy mode) against kiln's eager forward, through the CLI
(kiln-run) and the C API (ctypes). Tolerance: rtol 1e-4, atol 1e-5."""

import subprocess
import sys
from pathlib import Path

import numpy as onp
import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "io" / "data" / "mxnet"
sys.path.insert(0, str(HERE.parent / "io"))

import models  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
MXNET = sorted(p.name[:-len("-symbol.json")] for p in DATA.glob("*-symbol.json"))


def run_cli(kiln_run, symbol, params, inputs, out, *extra):
    proc = subprocess.run([str(kiln_run), str(symbol), str(params), *map(str, inputs), "-o",
                           str(out), *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return onp.load(out), proc.stdout


@pytest.mark.parametrize("name", MXNET)
def test_mxnet_files_cli(name, kiln_run, tmp_path):
    y, _ = run_cli(kiln_run, DATA / f"{name}-symbol.json", DATA / f"{name}-0000.params",
                   [DATA / f"{name}_x.npy"], tmp_path / "y.npy")
    onp.testing.assert_allclose(y, onp.load(DATA / f"{name}_y.npy"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", MXNET)
def test_mxnet_files_c_api(name, runtime):
    model = runtime.load_files(DATA / f"{name}-symbol.json", DATA / f"{name}-0000.params")
    assert model.inputs == ["data"] and len(model.outputs) == 1
    x = onp.load(DATA / f"{name}_x.npy")
    onp.testing.assert_allclose(model(x), onp.load(DATA / f"{name}_y.npy"), rtol=RTOL,
                                atol=ATOL)
    # a second run gives the same, and a batch of one re-plans and matches its row
    onp.testing.assert_allclose(model(x), onp.load(DATA / f"{name}_y.npy"), rtol=RTOL,
                                atol=ATOL)
    onp.testing.assert_allclose(model(x[:1]), onp.load(DATA / f"{name}_y.npy")[:1], rtol=RTOL,
                                atol=ATOL)


def _export(name, mode, tmp_path):
    if name in models.CONV_MODELS and not models.HAS_CONV:
        pytest.skip("this kiln has no convolution/pooling operators (they are on ops-nn)")
    from kiln import autograd

    net, x = models.build(name)
    with autograd.predict_mode():
        ref = net(x).asnumpy()  # eager: kiln's reference semantics
    net.hybridize()
    net(x)
    sym, params = net.export(str(tmp_path / name), 0, mode=mode)
    xfile = tmp_path / "x.npy"
    onp.save(xfile, x.asnumpy())
    return sym, params, xfile, x.asnumpy(), ref


@pytest.mark.parametrize("mode", ["numpy", "legacy"])
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_kiln_exports(name, mode, runtime, kiln_run, tmp_path):
    sym, params, xfile, x, ref = _export(name, mode, tmp_path)
    y, out = run_cli(kiln_run, sym, params, [xfile], tmp_path / "y.npy")
    onp.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    assert f"shape {tuple(ref.shape)}".replace(",)", ")") in out.replace(",)", ")")
    model = runtime.load_files(sym, params)
    onp.testing.assert_allclose(model(x), ref, rtol=RTOL, atol=ATOL)


def test_seed_mlp_batch_one_and_reshape(runtime, tmp_path):
    """The benchmark's MLP (512-256-128-2): batch 1, then batch 4 (a re-plan), then 1 again."""
    from kiln import np
    from kiln.gluon import nn

    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation="relu"), nn.Dense(128, activation="relu"), nn.Dense(2))
    net.initialize()
    xs = onp.random.default_rng(0).standard_normal((4, 512)).astype(onp.float32)
    ref = net(np.array(xs)).asnumpy()
    net.hybridize()
    net(np.array(xs[:1]))
    sym, params = net.export(str(tmp_path / "mlp"), 0)
    model = runtime.load_files(sym, params)
    for rows in (1, 4, 1):
        onp.testing.assert_allclose(model(xs[:rows]), ref[:rows], rtol=RTOL, atol=ATOL)


def test_cli_bench_and_errors(kiln_run, tmp_path):
    name = "mlp_np"
    args = [str(kiln_run), str(DATA / f"{name}-symbol.json"), str(DATA / f"{name}-0000.params")]
    proc = subprocess.run([*args, str(DATA / f"{name}_x.npy"), "--bench", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "bench: 20 runs" in proc.stdout
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'")
    proc = subprocess.run([*args, str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "npy" in proc.stderr
    wrong = tmp_path / "wrong.npy"
    onp.save(wrong, onp.zeros((3, 11), onp.float32))
    proc = subprocess.run([*args, str(wrong)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "weight" in proc.stderr and "(16, 11)" in proc.stderr
