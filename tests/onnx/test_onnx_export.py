"""ONNX export: the checker accepts the model and ONNX Runtime computes what kiln computes."""

import os
import sys

import numpy as onp
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import kiln  # noqa: E402
from kiln import np  # noqa: E402
from kiln.gluon import nn  # noqa: E402
from kiln.onnx import export_model  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "io"))
import models  # noqa: E402

MXNET_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "io", "data", "mxnet")


def run_ort(path, *inputs):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, inputs, strict=True)))


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_models_match_onnxruntime(name, tmp_path):
    if name in models.CONV_MODELS and not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    net, x = models.build(name)
    path = export_model(net, None, [x.shape], str(tmp_path / f"{name}.onnx"))
    model = onnx.load(path)
    onnx.checker.check_model(model)
    (got,) = run_ort(path, x.asnumpy())
    onp.testing.assert_allclose(got, net(x).asnumpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "resnet", "mobilenet"])
def test_dynamic_batch(name, tmp_path):
    if name in models.CONV_MODELS and not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    net, x = models.build(name)
    path = export_model(net, None, [(1,) + x.shape[1:]], str(tmp_path / "m.onnx"),
                        dynamic_batch=True)
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    for batch in (1, 3):
        xb = onp.random.default_rng(batch).standard_normal((batch,) + x.shape[1:]).astype(
            onp.float32)
        (got,) = run_ort(path, xb)
        onp.testing.assert_allclose(got, net(np.array(xb)).asnumpy(), rtol=1e-4, atol=1e-5)


def test_ops_of_the_mobilenet_and_resnet_graphs(tmp_path):
    if not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    net, x = models.build("mobilenet")
    ops = {n.op_type for n in onnx.load(export_model(
        net, None, [x.shape], str(tmp_path / "m.onnx"))).graph.node}
    assert {"Conv", "BatchNormalization", "Clip", "GlobalAveragePool", "Gemm"} <= ops
    groups = [a.i for n in onnx.load(str(tmp_path / "m.onnx")).graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    assert max(groups) > 1


def test_pooling_full_convention_is_ceil_mode(tmp_path):
    if not models.HAS_CONV:
        pytest.skip("needs kiln's pooling operator")
    net = nn.HybridSequential()
    net.add(models.Pool2D("max", 3, 2, ceil_mode=True), models.Pool2D("avg", 2, ceil_mode=True))
    x = np.array(onp.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(onp.float32))
    path = export_model(net, None, [x.shape], str(tmp_path / "p.onnx"))
    (got,) = run_ort(path, x.asnumpy())
    onp.testing.assert_allclose(got, net(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_symbol_and_symbol_file_sources(tmp_path):
    net, x = models.build("mlp")
    net.hybridize()
    net(x)
    sym_file, params_file = net.export(str(tmp_path / "mlp"))
    path = export_model(sym_file, params_file, [x.shape], str(tmp_path / "f.onnx"))
    (got,) = run_ort(path, x.asnumpy())
    onp.testing.assert_allclose(got, net(x).asnumpy(), rtol=1e-4, atol=1e-5)
    data = kiln.sym.var("data", shape=(3, 4))
    w = kiln.sym.var("w", shape=(2, 4))
    out = kiln.sym.npx.softmax(kiln.sym.npx.fully_connected(data, w, None, num_hidden=2,
                                                             no_bias=True) * 3 + 1)
    wv = onp.ones((2, 4), onp.float32)
    path = export_model(out, {"arg:w": wv}, [(3, 4)], str(tmp_path / "s.onnx"))
    xv = onp.random.default_rng(0).standard_normal((3, 4)).astype(onp.float32)
    (got,) = run_ort(path, xv)
    onp.testing.assert_allclose(got, out.eval(data=np.array(xv), w=np.array(wv))[0].asnumpy(),
                                rtol=1e-5)


def test_mxnet_made_resnet_exports_to_onnx(tmp_path):
    if not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    prefix = os.path.join(MXNET_DATA, "resnet_legacy")
    x = onp.load(prefix + "_x.npy")
    path = export_model(prefix + "-symbol.json", prefix + "-0000.params", [x.shape],
                        str(tmp_path / "r.onnx"))
    (got,) = run_ort(path, x)
    onp.testing.assert_allclose(got, onp.load(prefix + "_y.npy"), rtol=1e-4, atol=1e-5)


def test_missing_onnx_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError("no onnx")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    from kiln.onnx import require_onnx

    with pytest.raises(kiln.KilnError, match="pip install onnx onnxruntime"):
        require_onnx()
