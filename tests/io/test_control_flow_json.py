"""Control flow and recurrent layers in MXNet's symbol JSON: MXNet 1.9.1's files (made by
data/make_mxnet_recurrent_files.py) read and computed, kiln's exports read back, and what the
written JSON holds. (mxnet_roundtrip.py checks kiln's exports in a real MXNet.)"""

from __future__ import annotations

import glob
import json
import os

import numpy as onp
import pytest
from control_flow_models import build_all

from kiln import autograd, np
from kiln.base import FormatError
from kiln.gluon import SymbolBlock
from kiln.io.symbol_json import parse_json

DATA = os.path.join(os.path.dirname(__file__), "data", "mxnet")
RECURRENT = os.path.join(DATA, "recurrent")
MX_FILES = sorted(os.path.basename(p)[:-len("-symbol.json")]
                  for p in glob.glob(os.path.join(RECURRENT, "*-symbol.json")))
MODELS = build_all()


def _as_list(out) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _mx_model(name):
    ref = onp.load(os.path.join(RECURRENT, name + ".npz"))
    xs = [np.array(ref[k]) for k in sorted(ref) if k.startswith("in")]
    outs = [ref[k] for k in sorted(ref) if k.startswith("out")]
    prefix = os.path.join(RECURRENT, name)
    net = SymbolBlock.imports(prefix + "-symbol.json", [f"data{k}" for k in range(len(xs))],
                              prefix + "-0000.params")
    return net, xs, outs


def _compare(got, expected, rows=None):
    got = got.asnumpy()
    if rows is not None:  # MXNet leaves a while loop's rows past its last step unspecified
        got, expected = got[:rows], expected[:rows]
    onp.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_the_mxnet_files_are_there():
    assert MX_FILES == ["cond_then", "foreach", "lstm_export", "nested", "while"]
    assert sum(os.path.getsize(p) for p in glob.glob(os.path.join(RECURRENT, "*"))) < 3e5


@pytest.mark.parametrize("name", MX_FILES)
@pytest.mark.parametrize("hybridize", [False, True])
def test_mxnet_control_flow_files_compute_mxnets_outputs(name, hybridize):
    net, xs, expected = _mx_model(name)
    if hybridize:
        net.hybridize()
    got = _as_list(net(*xs))
    assert len(got) == len(expected)
    steps = {"while": 4, "nested": 3}.get(name)
    for k, (g, e) in enumerate(zip(got, expected)):
        _compare(g, e, rows=steps if k == 0 else None)


def test_an_imported_loop_trains_hybridized_as_eagerly():
    grads = []
    for hybridize in (False, True):
        net, xs, _ = _mx_model("foreach")
        if hybridize:
            net.hybridize()
        with autograd.record():
            loss = sum((o * o).sum() for o in _as_list(net(*xs)))
        loss.backward()
        grads.append({k: p.grad().asnumpy().copy() for k, p in net.collect_params().items()})
    assert grads[0] and all(onp.abs(g).sum() > 0 for g in grads[0].values())
    for k in grads[0]:
        onp.testing.assert_allclose(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("mode", ["legacy", "numpy"])
def test_kiln_exports_read_back(name, mode, tmp_path):
    net, xs = MODELS[name]
    net.hybridize()
    expected = _as_list(net(*xs))
    sym_file, params_file = net.export(str(tmp_path / name), mode=mode)
    names = ["data"] if len(xs) == 1 else [f"data{k}" for k in range(len(xs))]
    back = SymbolBlock.imports(sym_file, names, params_file)
    for hybridize in (False, True):
        if hybridize:
            back.hybridize()
        got = _as_list(back(*xs))
        for g, e in zip(got, expected):
            onp.testing.assert_allclose(g.asnumpy(), e.asnumpy(), rtol=1e-5, atol=1e-6)


def _nodes(doc):
    """Every node of a graph object and of its subgraphs."""
    for n in doc["nodes"]:
        yield n
        for g in n.get("subgraphs", []):
            yield from _nodes(g)


def _export(name, tmp_path, mode="legacy"):
    net, xs = MODELS[name]
    net.hybridize()
    net(*xs)
    sym_file, params_file = net.export(str(tmp_path / name), mode=mode)
    with open(sym_file) as f:
        return json.load(f), params_file


def test_a_foreach_is_written_as_mxnets_foreach_node(tmp_path):
    doc, _ = _export("foreach_dense", tmp_path)
    (node,) = [n for n in doc["nodes"] if n["op"] == "_foreach"]
    a = node["attrs"]
    (body,) = node["subgraphs"]
    body_vars = [i for i, n in enumerate(body["nodes"]) if n["op"] == "null"]
    assert body["arg_nodes"] == body_vars and "attrs" not in body
    locs = json.loads(a["in_data_locs"]) + json.loads(a["in_state_locs"]) + json.loads(
        a["remain_locs"])
    assert sorted(locs) == list(range(len(body_vars)))       # each body input fed once
    assert int(a["num_args"]) == len(node["inputs"]) + 1
    assert (int(a["num_out_data"]), int(a["num_outputs"])) == (2, 3)
    assert len(body["heads"]) == 3
    # the step output that is also the new state goes through a copy, as MXNet requires
    assert len({tuple(h) for h in body["heads"]}) == 3
    names = [n["name"] for n in body["nodes"] if n["op"] == "null"]
    assert len(set(names)) == len(names)


def test_while_loop_and_cond_nodes_carry_their_locs(tmp_path):
    doc, _ = _export("while_doubling", tmp_path)
    (node,) = [n for n in doc["nodes"] if n["op"] == "_while_loop"]
    a = {k: json.loads(v) for k, v in node["attrs"].items()}
    cond, func = node["subgraphs"]
    assert a["max_iterations"] == 6 and a["num_outputs"] == 3 and a["num_out_data"] == 1
    n_func_inputs = sum(n["op"] == "null" for n in func["nodes"])
    assert len(a["func_input_locs"]) == n_func_inputs
    assert all(0 <= a["func_input_locs"][p] < len(node["inputs"]) for p in a["func_var_locs"])
    assert len(a["cond_input_locs"]) == sum(n["op"] == "null" for n in cond["nodes"])
    doc, _ = _export("cond_dense", tmp_path)
    (node,) = [n for n in doc["nodes"] if n["op"] == "_cond"]
    assert len(node["subgraphs"]) == 3 and json.loads(node["attrs"]["cond_input_locs"]) == [0]
    assert int(node["attrs"]["num_args"]) == len(node["inputs"]) + 3


def test_constants_inside_bodies_move_to_the_params_file(tmp_path):
    doc, params_file = _export("cond_dense", tmp_path, mode="numpy")
    from kiln import npx

    consts = [n["name"] for n in doc["nodes"] if n["op"] == "null" and
              n.get("attrs", {}).get("__kiln_constant__")]
    assert consts and all(f"arg:{c}" in npx.load(params_file) for c in consts)
    assert not any(n["op"].startswith("_kiln") for n in _nodes(doc))


def test_exported_graphs_use_only_operators_mxnet_has(tmp_path):
    with open(os.path.join(DATA, "registered_ops.txt")) as f:
        registered = set(f.read().split())
    for name in MODELS:
        for mode in ("legacy", "numpy"):
            doc, _ = _export(name, tmp_path, mode)
            ops = {n["op"] for n in _nodes(doc)} - {"null"}
            assert ops <= registered, (name, mode, ops - registered)


@pytest.mark.parametrize("mode", ["legacy", "numpy"])
def test_recurrent_layers_export_as_mxnets_rnn_operator(mode, tmp_path):
    doc, _ = _export("recurrent_layers", tmp_path, mode)
    ops = [n["op"] for n in doc["nodes"]]
    assert ops.count("RNN" if mode == "legacy" else "_npx_rnn") == 5   # 2 x 2 lstm, 1 gru
    assert ops.count("_rnn_param_concat" if mode == "legacy" else "_npi_rnn_param_concat") == 5


def test_bad_subgraphs_are_format_errors_naming_the_subgraph():
    with open(os.path.join(RECURRENT, "foreach-symbol.json")) as f:
        doc = json.load(f)
    node = next(n for n in doc["nodes"] if n["op"] == "_foreach")
    node["subgraphs"][0]["heads"] = [[99, 0, 0]]
    with pytest.raises(FormatError, match=r"subgraph 0.*out of range"):
        parse_json(json.dumps(doc), "cf-symbol.json")
    node["subgraphs"] = []
    with pytest.raises(FormatError, match="0 subgraphs, but _foreach takes 1"):
        parse_json(json.dumps(doc), "cf-symbol.json")


def test_a_layer_called_with_states_exports_them_as_inputs(tmp_path):
    from kiln.gluon import rnn

    layer = rnn.LSTM(4, input_size=3)
    layer.initialize()
    layer.hybridize()
    x = np.array(onp.random.default_rng(0).standard_normal((5, 2, 3)).astype("float32"))
    states = [np.ones((1, 2, 4)) * 0.5, np.ones((1, 2, 4)) * -0.25]
    out, new_states = layer(x, states)
    sym_file, params_file = layer.export(str(tmp_path / "lstm"))
    back = SymbolBlock.imports(sym_file, ["data0", "data1", "data2"], params_file)
    got = back(x, *states)
    for g, e in zip(got, [out, *new_states]):
        onp.testing.assert_allclose(g.asnumpy(), e.asnumpy(), rtol=1e-6, atol=1e-6)
