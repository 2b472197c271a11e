"""kiln -> files -> kiln for every layer of kiln.gluon.nn, in legacy and numpy-mode files."""

import json

import numpy as onp
import pytest

import kiln
from kiln import autograd, np, npx
from kiln.base import KilnError
from kiln.gluon import SymbolBlock, nn
from kiln.io.export import NotHybridizedError
from kiln.io.params import V2_MAGIC, V3_MAGIC

import models

MODES = ["legacy", "numpy"]


def _seq(*blocks):
    net = nn.HybridSequential()
    net.add(*blocks)
    return net


def _layers():
    cases = {
        "dense": (lambda: _seq(nn.Dense(5)), (3, 4)),
        "dense_act": (lambda: _seq(nn.Dense(5, activation="sigmoid"), nn.Dense(3, "softrelu")),
                      (3, 4)),
        "dense_no_flatten": (lambda: _seq(nn.Dense(5, flatten=False, use_bias=False)),
                             (2, 3, 4)),
        "dense_flatten_3d": (lambda: _seq(nn.Dense(5)), (2, 3, 4)),
        "flatten": (lambda: _seq(nn.Flatten(), nn.Dense(2)), (2, 3, 4)),
        "dropout": (lambda: _seq(nn.Dense(6), nn.Dropout(0.5), nn.Dense(2)), (3, 4)),
        "batchnorm": (lambda: _seq(nn.Dense(6), nn.BatchNorm()), (5, 4)),
        "batchnorm_axis": (lambda: _seq(nn.BatchNorm(axis=-1, center=False, scale=False)),
                           (4, 3, 5)),
        "batchnorm_global": (lambda: _seq(nn.BatchNorm(use_global_stats=True)), (4, 3)),
        "layernorm": (lambda: _seq(nn.LayerNorm(), nn.Dense(3)), (2, 5)),
        "identity": (lambda: _seq(nn.Dense(3), nn.Identity()), (2, 4)),
        "lambda": (lambda: _seq(nn.HybridLambda(lambda F, x: F.np.tanh(x) * 2)), (2, 4)),
        "lambda_name": (lambda: _seq(nn.HybridLambda("relu")), (2, 4)),
        "nested": (lambda: _seq(_seq(nn.Dense(4, activation="relu")), _seq(nn.Dense(2))),
                   (2, 3)),
    }
    for act in nn.basic_layers._nn_ops.ACTIVATIONS:
        cases[f"activation_{act}"] = (lambda a=act: _seq(nn.Activation(a)), (2, 5))
    for name in ("InstanceNorm", "GroupNorm"):
        op = {"InstanceNorm": "instance_norm", "GroupNorm": "group_norm"}[name]
        if hasattr(npx, op):
            cases[name.lower()] = (lambda n=name: _seq(getattr(nn, n)()), (2, 4, 3))
    return cases


LAYERS = _layers()


def _build(factory, shape):
    onp.random.seed(0)
    net = factory()
    net.initialize(kiln.init.Xavier())
    x = np.array(onp.random.default_rng(1).standard_normal(shape).astype(onp.float32))
    with autograd.record():  # BatchNorm running statistics away from 0 and 1
        net(x)
    net.hybridize()
    return net, x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_layer_roundtrip(layer, mode, tmp_path):
    net, x = _build(*LAYERS[layer])
    ref = net(x).asnumpy()
    sym_file, params_file = net.export(str(tmp_path / layer), mode=mode)
    back = SymbolBlock.imports(sym_file, ["data"], params_file)
    onp.testing.assert_allclose(back(x).asnumpy(), ref, rtol=1e-5, atol=1e-6)
    back.hybridize()
    onp.testing.assert_allclose(back(x).asnumpy(), ref, rtol=1e-5, atol=1e-6)
    with open(sym_file) as f:
        doc = json.load(f)
    ops = {n["op"] for n in doc["nodes"]}
    assert not any(op.startswith("_kiln_") for op in ops)
    assert ("is_np_shape" in doc["attrs"]) == (mode == "numpy")
    assert "Dropout" not in ops  # the predict-mode graph


def test_embedding_roundtrip(tmp_path):
    net = _seq(nn.Embedding(10, 4), nn.Dense(3))
    net.initialize()
    x = np.array(onp.array([[1, 2, 3], [4, 5, 9]], dtype=onp.int32))
    net.hybridize()
    ref = net(x).asnumpy()
    for mode in MODES:
        back = SymbolBlock.imports(*_files(net, tmp_path / mode, mode), )
        onp.testing.assert_allclose(back(x).asnumpy(), ref, rtol=1e-6)


def _files(net, path, mode):
    sym_file, params_file = net.export(str(path), mode=mode)
    return sym_file, ["data"], params_file


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_model_roundtrip(name, mode, tmp_path):
    if name in models.CONV_MODELS and not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    net, x = models.build(name)
    net.hybridize()
    ref = net(x).asnumpy()
    back = SymbolBlock.imports(*_files(net, tmp_path / name, mode))
    onp.testing.assert_allclose(back(x).asnumpy(), ref, rtol=1e-5, atol=1e-5)
    # other batch sizes: reshapes keep the batch dimension free
    x5 = np.concatenate([x, x, x[:1]], axis=0)
    onp.testing.assert_allclose(back(x5).asnumpy(), net(x5).asnumpy(), rtol=1e-5, atol=1e-5)


def test_param_names_and_record_versions(tmp_path):
    net, x = _build(*LAYERS["batchnorm"])
    net(x)
    for mode, magic in (("legacy", V2_MAGIC), ("numpy", V3_MAGIC)):
        _, params_file = net.export(str(tmp_path / mode), mode=mode)
        names = sorted(kiln.io.load_params(params_file))
        assert names == ["arg:0.bias", "arg:0.weight", "arg:1.beta", "arg:1.gamma",
                         "aux:1.running_mean", "aux:1.running_var"]
        with open(params_file, "rb") as f:
            raw = f.read()
        assert int.from_bytes(raw[24:28], "little") == magic


def test_export_before_hybridized_run_says_what_to_do(tmp_path):
    net = _seq(nn.Dense(3))
    net.initialize()
    with pytest.raises(NotHybridizedError, match=r"hybridize\(\) and run one batch"):
        net.export(str(tmp_path / "m"))
    net(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="hybridize"):
        net.export(str(tmp_path / "m"))
    net.hybridize()
    with pytest.raises(RuntimeError):
        net.export(str(tmp_path / "m"))


def test_export_uses_predict_mode_even_after_training_calls(tmp_path):
    net, x = _build(*LAYERS["dropout"])
    with autograd.record():
        net(x)  # the last signature was traced in training mode
    sym_file, params_file = net.export(str(tmp_path / "m"))
    with open(sym_file) as f:
        assert "Dropout" not in f.read()
    back = SymbolBlock.imports(sym_file, ["data"], params_file)
    onp.testing.assert_allclose(back(x).asnumpy(), net(x).asnumpy(), rtol=1e-6)


def test_export_of_two_inputs_and_outputs(tmp_path):
    class Two(nn.HybridBlock):
        def __init__(self):
            super().__init__()
            self.d = nn.Dense(3)

        def forward(self, a, b):
            h = self.d(a) + b
            return h, npx.softmax(h)

    net = Two()
    net.initialize()
    net.hybridize()
    a, b = np.ones((2, 4)), np.ones((2, 3)) * 0.5
    ref = [o.asnumpy() for o in net(a, b)]
    sym_file, params_file = net.export(str(tmp_path / "two"))
    with pytest.raises(KilnError, match="data0"):
        SymbolBlock.imports(sym_file, ["data"], params_file)
    back = SymbolBlock.imports(sym_file, ["data0", "data1"], params_file)
    outs = back(a, b)
    for o, r in zip(outs, ref):
        onp.testing.assert_allclose(o.asnumpy(), r, rtol=1e-6)


def test_symbolblock_from_symbols():
    data = kiln.sym.var("data", shape=(3, 5))
    w, b = kiln.sym.var("w", shape=(4, 5)), kiln.sym.var("b", shape=(4,))
    out = kiln.sym.npx.relu(kiln.sym.npx.fully_connected(data, w, b, num_hidden=4)) + 1
    rng = onp.random.default_rng(0)
    values = {"w": rng.standard_normal((4, 5)).astype(onp.float32),
              "b": rng.standard_normal(4).astype(onp.float32)}
    block = SymbolBlock(out, data, values)
    assert sorted(block.collect_params()) == ["b", "w"]
    y = rng.standard_normal((3, 5)).astype(onp.float32)
    ref = onp.maximum(y @ values["w"].T + values["b"], 0) + 1
    onp.testing.assert_allclose(block(np.array(y)).asnumpy(), ref, rtol=1e-5)
    with pytest.raises(KilnError, match="variables"):
        SymbolBlock(out, data * 2)
    # a network called on a symbol outside hybridize: its parameters are variables (as in
    # MXNet), shared with the network when its parameters are passed along
    net = _seq(nn.Dense(4, activation="relu"), nn.BatchNorm(), nn.Dense(2))
    net.initialize()
    net(np.ones((3, 5)))
    shared = SymbolBlock(net(data), data, net.collect_params())
    assert sorted(shared.collect_params()) == sorted(net.collect_params())
    onp.testing.assert_allclose(shared(np.array(y)).asnumpy(), net(np.array(y)).asnumpy(),
                                rtol=1e-6)


def test_load_parameters_from_an_export_file(tmp_path):
    net, x = _build(*LAYERS["batchnorm"])
    ref = net(x).asnumpy()
    _, params_file = net.export(str(tmp_path / "m"))
    arrays = npx.load(params_file)
    assert isinstance(arrays, dict) and "aux:1.running_var" in arrays
    fresh = _seq(nn.Dense(6), nn.BatchNorm())
    fresh.initialize()
    fresh.load_parameters(params_file)  # arg:/aux: prefixes are stripped
    onp.testing.assert_allclose(fresh(x).asnumpy(), ref, rtol=1e-5, atol=1e-6)
    net.save_parameters(str(tmp_path / "plain.params"))
    assert sorted(npx.load(str(tmp_path / "plain.params"))) == sorted(
        k[4:] for k in arrays)


def test_kiln_only_operators_are_written_under_a_kiln_name(tmp_path):
    x = kiln.sym.var("x", shape=(4, 3))
    y = x[onp.array([0, 2, 2])] * 2
    with pytest.warns(UserWarning, match="MXNet cannot read"):
        text = y.tojson()
    assert "_kiln_getitem" in text
    back = kiln.sym.fromjson(text)
    value = onp.arange(12, dtype=onp.float32).reshape(4, 3)
    onp.testing.assert_allclose(back.eval(x=np.array(value))[0].asnumpy(),
                                value[[0, 2, 2]] * 2)


@pytest.mark.parametrize("numpy_shape", [True, False])
def test_npx_save_and_load(numpy_shape, tmp_path):
    a = np.array(onp.arange(6, dtype=onp.float32).reshape(2, 3))
    b = np.array(onp.array([1, 2, 3], dtype=onp.int64))
    path = str(tmp_path / "arrays.params")
    npx.save(path, [a, b]) if numpy_shape else kiln.io.save_params(path, [a, b], False)
    got = npx.load(path)
    assert isinstance(got, list) and [g.dtype for g in got] == [onp.float32, onp.int64]
    onp.testing.assert_array_equal(got[0].asnumpy(), a.asnumpy())
    npx.save(path, {"a": a, "b": b})
    got = npx.load(path)
    assert sorted(got) == ["a", "b"]
    onp.testing.assert_array_equal(got["b"].asnumpy(), b.asnumpy())
    npx.save(path, a)
    onp.testing.assert_array_equal(npx.load(path)[0].asnumpy(), a.asnumpy())
