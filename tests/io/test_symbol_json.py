"""The symbol-JSON format itself: MXNet's exact layout, the op names written, reshape codes."""

import glob
import json
import os

import numpy as onp
import pytest

import kiln
from kiln import np
from kiln.base import KilnError, ShapeError
from kiln.io.mxnet_ops import legacy_reshape_shape, npx_reshape_shape
from kiln.io.symbol_json import load_mx_graph, symbol_from_json

import models

DATA = os.path.join(os.path.dirname(__file__), "data", "mxnet")
with open(os.path.join(DATA, "registered_ops.txt")) as _f:
    MXNET_OPS = set(_f.read().split())


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(DATA, "*-symbol.json"))))
def test_mxnet_files_are_rewritten_byte_for_byte(path):
    with open(path) as f:
        text = f.read()
    assert load_mx_graph(path).to_json() == text
    assert not text.endswith("\n") and '"op": "null", \n' in text


@pytest.mark.parametrize("mode", ["legacy", "numpy"])
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_exports_use_only_operators_mxnet_has(name, mode, tmp_path):
    if name in models.CONV_MODELS and not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    net, x = models.build(name)
    net.hybridize()
    net(x)
    sym_file, _ = net.export(str(tmp_path / name), mode=mode)
    with open(sym_file) as f:
        text = f.read()
    doc = json.loads(text)
    ops = {n["op"] for n in doc["nodes"]} - {"null"}
    assert ops <= MXNET_OPS, ops - MXNET_OPS
    assert doc["attrs"]["mxnet_version"] == ["int", 10901]
    assert (doc["attrs"].get("is_np_shape") == ["int", 1]) == (mode == "numpy")
    assert len(doc["node_row_ptr"]) == len(doc["nodes"]) + 1
    assert doc["arg_nodes"] == [i for i, n in enumerate(doc["nodes"]) if n["op"] == "null"]
    for node in doc["nodes"]:
        assert all(isinstance(v, str) for v in node.get("attrs", {}).values())
        if node["op"] == "BatchNorm":
            assert [e[2] for e in node["inputs"]] == [0, 0, 0, 1, 1]
    params = [n for n in doc["nodes"] if n["op"] == "null" and n["name"] != "data"]
    assert all({"__shape__", "__dtype__"} <= set(n["attrs"]) for n in params)


def test_symbol_json_round_trip_and_names():
    x = kiln.sym.var("x", shape=(2, 6))
    y = kiln.sym.npx.softmax(kiln.sym.np.tanh(x).reshape(3, 4) * 2 + 1, axis=0)
    text = y.tojson()
    assert '"op": "_npi_tanh"' in text and '"is_int": "True"' in text
    back = kiln.sym.fromjson(text)
    value = onp.random.default_rng(0).standard_normal((2, 6)).astype(onp.float32)
    onp.testing.assert_allclose(back.eval(x=np.array(value))[0].asnumpy(),
                                y.eval(x=np.array(value))[0].asnumpy(), rtol=1e-6)
    assert back.list_arguments() == ["x"]


def test_shape_dependent_operators_need_input_shapes():
    path = os.path.join(DATA, "lenet_legacy-symbol.json")
    if not models.HAS_CONV:
        pytest.skip("needs kiln's convolution and pooling operators")
    with pytest.raises(ShapeError, match="shapes"):
        kiln.sym.load(path)
    with open(path) as f:
        sym = symbol_from_json(f.read(), path, shapes={"data": (2, 1, 20, 20)})
    assert sym.shape == (2, 10)


def test_reshape_codes():
    assert legacy_reshape_shape((2, 3, 4), (0, -1)) == (2, 12)
    assert legacy_reshape_shape((2, 3, 4), (-2,)) == (2, 3, 4)
    assert legacy_reshape_shape((2, 3, 4), (-3, 4)) == (6, 4)
    assert legacy_reshape_shape((2, 12), (0, -4, 3, -1)) == (2, 3, 4)
    assert legacy_reshape_shape((10, 5, 4), (-1, 0), reverse=True) == (50, 4)
    assert npx_reshape_shape((2, 3, 4), (-2, -1)) == (2, 12)
    assert npx_reshape_shape((1, 3, 4), (-3, -4)) == (3, 4)
    assert npx_reshape_shape((2, 3, 4), (-5, -2)) == (6, 4)
    assert npx_reshape_shape((2, 12), (-2, -6, 3, -1)) == (2, 3, 4)
    # matched from the right, a split keeps its order
    assert legacy_reshape_shape((12, 2), (-4, 3, -1, 0), reverse=True) == (3, 4, 2)
    assert npx_reshape_shape((12, 2), (-6, 3, -1, -2), reverse=True) == (3, 4, 2)
    with pytest.raises(ShapeError):
        npx_reshape_shape((2, 3), (-3, -2))
    with pytest.raises(ShapeError):
        legacy_reshape_shape((2, 3), (0, 0, 0))


def test_missing_hidden_output_is_explained(tmp_path):
    with open(os.path.join(DATA, "mlp_legacy-symbol.json")) as f:
        doc = json.load(f)
    drop = next(i for i, n in enumerate(doc["nodes"]) if n["op"] == "Dropout")
    doc["heads"] = [[drop, 1, 0]]
    path = tmp_path / "m-symbol.json"
    path.write_text(json.dumps(doc))
    net = kiln.gluon.SymbolBlock.imports(str(path), ["data"],
                                         os.path.join(DATA, "mlp_legacy-0000.params"),
                                         ignore_extra=True)
    with pytest.raises(KilnError, match="hidden output"):
        net(np.ones((2, 10)))
