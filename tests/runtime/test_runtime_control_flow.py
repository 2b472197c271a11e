"""The C runtime runs control flow (`_foreach`, `_while_loop`, `_cond`, nested) and MXNet's fused
`RNN` operator: MXNet-1.9.1-written files against their committed outputs, MXNet's recurrent
layers (their parameter files) as fused RNN graphs and through kiln's export, kiln's exports of
control-flow models (loops of 0 and 1 steps, max_iterations reached, both branches, nesting)
and of gluon.rnn layers against kiln's own outputs, through the CLI (kiln-run) and the C API.
Then the errors: bad subgraphs, inconsistent locs, shapes that change between iterations,
unsupported RNN modes, nesting too deep, the loop-step cap."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as onp
import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "io" / "data" / "mxnet" / "recurrent"
sys.path.insert(0, str(HERE.parent / "io"))

from control_flow_models import build_all  # noqa: E402
from crt import RuntimeError_  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
MX_FILES = ["cond_then", "foreach", "lstm_export", "nested", "while"]
ROWS = {"while": 4, "nested": 3}  # MXNet leaves a while loop's rows past its last step unspecified


def _run_cli(kiln_run, sym, params, inputs, out, *extra, env=None):
    return subprocess.run([str(kiln_run), str(sym), str(params), *map(str, inputs), "-o",
                           str(out), *extra], capture_output=True, text=True, timeout=60, env=env)


def _cli_outputs(kiln_run, sym, params, arrays, tmp_path, n_out):
    files = []
    for k, a in enumerate(arrays):
        files.append(tmp_path / f"in{k}.npy")
        onp.save(files[-1], a)
    proc = _run_cli(kiln_run, sym, params, files, tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    return [onp.load(tmp_path / ("y.npy" if k == 0 else f"y-{k}.npy")) for k in range(n_out)]


def _c_api_outputs(model, arrays):
    for i, a in enumerate(arrays):
        model.set_input(i, a)
    model.run()
    return model.outputs_all()


def _close(got, want, rows=None):
    assert got.shape == want.shape
    onp.testing.assert_allclose(got[:rows], want[:rows], rtol=RTOL, atol=ATOL)


# ----------------------------------------------------------------------------------------------
# MXNet's files
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MX_FILES)
def test_mxnet_files(name, runtime, kiln_run, tmp_path):
    ref = onp.load(DATA / f"{name}.npz")
    sym, params = DATA / f"{name}-symbol.json", DATA / f"{name}-0000.params"
    model = runtime.load_files(sym, params)
    arrays = [ref["in" + n[4:]] for n in model.inputs]   # inputs data0, data1 ... in node order
    want = [ref[k] for k in sorted(ref) if k.startswith("out")]
    for got in (_c_api_outputs(model, arrays),
                _cli_outputs(kiln_run, sym, params, arrays, tmp_path, len(want))):
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, ROWS.get(name) if k == 0 else None)


def _mxnet_layer(name):
    from kiln.gluon import rnn

    return {"lstm": lambda: rnn.LSTM(5, num_layers=2, bidirectional=True, input_size=3),
            "gru": lambda: rnn.GRU(5, num_layers=2, bidirectional=True, input_size=3),
            "rnn_relu": lambda: rnn.RNN(5, num_layers=1, input_size=3),
            "rnn_tanh_ntc": lambda: rnn.RNN(5, num_layers=2, activation="tanh", layout="NTC",
                                            input_size=3)}[name]()


LAYERS = {"lstm": ("lstm", 2, True), "gru": ("gru", 2, True), "rnn_relu": ("rnn_relu", 1, False),
          "rnn_tanh_ntc": ("rnn_tanh", 2, False)}


def fused_rnn_graph(mode, layers, bidir, hidden, ntc, n_states, names):
    """MXNet's export of a recurrent layer: the parameters reshaped and joined by
    _rnn_param_concat (every weight, then every bias), one RNN node; NTC through transposes."""
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    data = [0, 0, 0]
    if ntc:
        nodes.append({"op": "transpose", "name": "t_in", "attrs": {"axes": "(1, 0, 2)"},
                      "inputs": [data]})
        data = [1, 0, 0]
    flat = []
    for name in names:
        nodes.append({"op": "null", "name": name, "inputs": []})
        nodes.append({"op": "Reshape", "name": name + "_flat", "attrs": {"shape": "-1"},
                      "inputs": [[len(nodes) - 1, 0, 0]]})
        flat.append([len(nodes) - 1, 0, 0])
    nodes.append({"op": "_rnn_param_concat", "name": "params",
                  "attrs": {"dim": "0", "num_args": str(len(flat))}, "inputs": flat})
    ins = [data, [len(nodes) - 1, 0, 0]]
    for k in range(n_states):
        nodes.append({"op": "null", "name": f"state{k}", "inputs": []})
        ins.append([len(nodes) - 1, 0, 0])
    nodes.append({"op": "RNN", "name": "rnn0", "inputs": ins, "attrs": {
        "bidirectional": str(bidir), "mode": mode, "num_layers": str(layers), "p": "0.2",
        "projection_size": "None", "state_outputs": "True", "state_size": str(hidden),
        "lstm_state_clip_min": "None", "lstm_state_clip_max": "None"}})
    rnn = len(nodes) - 1
    heads = [[rnn, 0, 0]] + [[rnn, k + 1, 0] for k in range(n_states)]
    if ntc:
        nodes.append({"op": "transpose", "name": "t_out", "attrs": {"axes": "(1, 0, 2)"},
                      "inputs": [[rnn, 0, 0]]})
        heads[0] = [len(nodes) - 1, 0, 0]
    return {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n["op"] == "null"],
            "heads": heads, "attrs": {"mxnet_version": ["int", 10901]}}


def _fused_names(layers, bidir):
    """MXNet 1.x parameter names of a layer (its unfused cells), in the fused vector's order."""
    cells = [f"_unfused.{layer}." + (f"{d}_cell." if bidir else "")
             for layer in range(layers) for d in (("l", "r") if bidir else ("",))]
    return ([c + w for c in cells for w in ("i2h_weight", "h2h_weight")] +
            [c + b for c in cells for b in ("i2h_bias", "h2h_bias")])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_mxnet_layers_as_fused_rnn(name, runtime, tmp_path):
    """MXNet's layer parameters (save_parameters) in the fused RNN node as MXNet exports it:
    multi-layer, bidirectional, every mode, NTC; outputs and final states against MXNet's."""
    from kiln import npx
    from kiln.io.params import dump_params_bytes

    mode, layers, bidir = LAYERS[name]
    ref = onp.load(DATA / f"{name}.npz")
    names = _fused_names(layers, bidir)
    weights = npx.load(str(DATA / f"{name}.params"))
    states = sorted(k for k in ref if k.startswith("state"))
    doc = fused_rnn_graph(mode, layers, bidir, 5, name.endswith("ntc"), len(states), names)
    params = dump_params_bytes({f"arg:{k}": weights[k].asnumpy() for k in names}, False)
    model = runtime.load_memory(json.dumps(doc).encode(), params)
    got = _c_api_outputs(model, [ref["x"]] + [ref[s] for s in states])
    _close(got[0], ref["out"])
    for k, s in enumerate(states):
        _close(got[1 + k], ref["new_" + s])


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_mxnet_layers_through_kiln_export(name, runtime, tmp_path):
    """MXNet's parameter file loaded into kiln's layer, exported by kiln (one RNN node per
    layer and direction, flips for the reverse one), run here: MXNet's outputs."""
    from kiln import np

    ref = onp.load(DATA / f"{name}.npz")
    layer = _mxnet_layer(name)
    layer.load_parameters(str(DATA / f"{name}.params"))
    layer.hybridize()
    states = [np.array(ref[k]) for k in sorted(ref) if k.startswith("state")]
    layer(np.array(ref["x"]), states)
    sym, params = layer.export(str(tmp_path / name))
    model = runtime.load_files(sym, params)
    got = _c_api_outputs(model, [ref["x"]] + [s.asnumpy() for s in states])
    _close(got[0], ref["out"])
    for k in range(len(states)):
        _close(got[1 + k], ref[f"new_state{k}"])


# ----------------------------------------------------------------------------------------------
# kiln's exports against kiln
# ----------------------------------------------------------------------------------------------

MODELS = build_all()


def _flat(out) -> list:
    """A block's outputs (nested lists too) as NumPy arrays, in the exported heads' order."""
    if isinstance(out, (list, tuple)):
        return [a for o in out for a in _flat(o)]
    return [out.asnumpy()]


def _export(net, xs, tmp_path, name, mode="legacy"):
    net.hybridize()
    want = _flat(net(*xs))
    sym, params = net.export(str(tmp_path / name), mode=mode)
    return sym, params, want


def _inputs(model, xs):
    """kiln names several inputs data0, data1 ...; the model lists them in node order"""
    return [xs[0 if n == "data" else int(n[4:])].asnumpy() for n in model.inputs]


@pytest.mark.parametrize("mode", ["legacy", "numpy"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_kiln_control_flow_exports(name, mode, runtime, kiln_run, tmp_path):
    net, xs = MODELS[name]
    sym, params, want = _export(net, xs, tmp_path, name, mode)
    model = runtime.load_files(sym, params)
    arrays = _inputs(model, xs)
    outs = [_c_api_outputs(model, arrays)]
    if mode == "legacy":
        outs.append(_cli_outputs(kiln_run, sym, params, arrays, tmp_path, len(want)))
    for got in outs:
        for g, w in zip(got, want, strict=True):
            _close(g, w)


def test_while_loop_trip_counts(runtime, tmp_path):
    """One exported while_loop run for 0 steps, 1 step, a few, and until max_iterations; rows
    past the last step are zero, as kiln computes them."""
    from kiln import np

    net, xs = MODELS["while_doubling"]
    sym, params, _ = _export(net, xs, tmp_path, "while")
    model = runtime.load_files(sym, params)
    x = onp.array([0.1, 0.2], onp.float32)
    for s, steps in (([20.0, 1.0], 0), ([3.0, 2.0], 1), ([0.5, 0.25], 4), ([1e-4, 1e-4], 6)):
        s = onp.array(s, onp.float32)
        want = _flat(net(np.array(x), np.array(s)))
        got = _c_api_outputs(model, _inputs(model, [np.array(x), np.array(s)]))
        assert got[1][0] == steps
        for g, w in zip(got, want, strict=True):
            _close(g, w)
        assert not got[0][steps:].any()


def test_foreach_of_one_step_and_cond_both_branches(runtime, tmp_path):
    """Re-planning for a new sequence length (5 steps, then 1, then 3) and both branches of a
    cond, each against kiln."""
    from kiln import np

    net, xs = MODELS["foreach_dense"]
    sym, params, _ = _export(net, xs, tmp_path, "foreach")
    model = runtime.load_files(sym, params)
    for steps in (5, 1, 3):
        args = [xs[0][:steps], xs[1]]
        for g, w in zip(_c_api_outputs(model, _inputs(model, args)), _flat(net(*args)),
                        strict=True):
            _close(g, w)
    net, (x, y) = MODELS["cond_dense"]
    sym, params, _ = _export(net, [x, y], tmp_path, "cond")
    model = runtime.load_files(sym, params)
    for sign in (1.0, -1.0):           # (x * y).sum() > 0 takes then, < 0 else
        args = [x, np.abs(x) * np.sign(x) * sign]
        (g,) = _c_api_outputs(model, _inputs(model, args))
        _close(g, _flat(net(*args))[0])


def test_deeply_nested_control_flow(runtime, tmp_path):
    """A cond inside a while_loop inside a foreach."""
    from kiln import gluon, np, npx

    class Deep(gluon.HybridBlock):
        def forward(self, x, h):
            def step(x_t, states):
                def func(i, v):
                    w = npx.cond(v.sum() > 0, lambda a: a * 0.5, lambda a: a - 1.0, [v])
                    return [w], [i + 1.0, w + x_t]
                outs, (_, v) = npx.while_loop(lambda i, v: i < 2.0, func,
                                              [np.zeros((1,)), states[0]], max_iterations=3)
                return outs[0].sum(axis=0), [v]
            outs, states = npx.foreach(step, x, [h])
            return outs, states[0]

    rng = onp.random.default_rng(4)
    xs = [np.array(rng.standard_normal(s).astype("float32")) for s in ((4, 3), (3,))]
    net = Deep()
    net.initialize()
    sym, params, want = _export(net, xs, tmp_path, "deep")
    model = runtime.load_files(sym, params)
    for g, w in zip(_c_api_outputs(model, _inputs(model, xs)), want, strict=True):
        _close(g, w)


RNN_CASES = [("LSTM", 1, False, "TNC", False), ("LSTM", 2, True, "NTC", True),
             ("GRU", 2, True, "TNC", True), ("GRU", 1, False, "NTC", False),
             ("RNN", 2, True, "TNC", False), ("RNN", 1, False, "NTC", True)]


@pytest.mark.parametrize("cls,layers,bidir,layout,with_states", RNN_CASES)
def test_gluon_rnn_layers(cls, layers, bidir, layout, with_states, runtime, kiln_run, tmp_path):
    """gluon.rnn layers exported by kiln (numpy mode for the NTC ones): kiln's outputs, through
    the C API and the CLI; begin states passed as inputs or left to the layer (zeros)."""
    from kiln import np
    from kiln.gluon import rnn

    layer = getattr(rnn, cls)(4, num_layers=layers, bidirectional=bidir, layout=layout,
                              input_size=3, **({"activation": "relu"} if cls == "RNN" else {}))
    layer.initialize()
    rng = onp.random.default_rng(layers)
    for p in layer.collect_params().values():
        p.set_data(np.array(rng.uniform(-0.5, 0.5, p.shape).astype("float32")))
    x = np.array(rng.standard_normal((5, 2, 3) if layout == "TNC" else (2, 5, 3))
                 .astype("float32"))
    xs = [x]
    if with_states:
        xs += [np.array(rng.standard_normal(s.shape).astype("float32"))
               for s in layer.begin_state(2)]
    layer.hybridize()
    want = _flat(layer(x, xs[1:]) if with_states else layer(x))
    mode = "numpy" if layout == "NTC" else "legacy"
    sym, params = layer.export(str(tmp_path / "layer"), mode=mode)
    model = runtime.load_files(sym, params)
    arrays = _inputs(model, xs)
    for got in (_c_api_outputs(model, arrays),
                _cli_outputs(kiln_run, sym, params, arrays, tmp_path, len(want))):
        for g, w in zip(got, want, strict=True):
            _close(g, w)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------

def _doc(name):
    return json.loads((DATA / f"{name}-symbol.json").read_text())


def _params(name):
    return (DATA / f"{name}-0000.params").read_bytes()


def _cf(doc):
    return next(n for n in doc["nodes"] if "subgraphs" in n)


def _set(path, value):
    def edit(doc):
        node = _cf(doc)
        *keys, last = path
        for k in keys:
            node = node[k]
        node[last] = value
    return edit


LOAD_ERRORS = [
    ("foreach", _set(["subgraphs"], []), "GRAPH", ["0 subgraphs, but _foreach takes 1"]),
    ("foreach", lambda d: _cf(d).pop("subgraphs"), "GRAPH", ["missing 'subgraphs'"]),
    ("foreach", _set(["subgraphs", 0], 5), "GRAPH", ["subgraph 0 (body)", "JSON object"]),
    ("foreach", _set(["subgraphs", 0, "heads"], [[99, 0, 0]]), "GRAPH",
     ["subgraph 0 (body)", "out of range"]),
    ("foreach", _set(["subgraphs", 0, "nodes", 3, "op"], "NoSuchOp"), "UNSUPPORTED",
     ["subgraph 0 (body)", "unknown operator 'NoSuchOp'"]),
    ("foreach", _set(["attrs", "in_state_locs"], "[3, 3]"), "GRAPH", ["fed twice"]),
    ("foreach", _set(["attrs", "remain_locs"], "[1, 2]"), "GRAPH", ["the node has 6 inputs"]),
    ("foreach", _set(["attrs", "in_data_locs"], "[]"), "GRAPH", ["in_data_locs", "empty"]),
    ("foreach", _set(["attrs", "num_outputs"], "4"), "GRAPH", ["num_outputs 4"]),
    ("foreach", _set(["attrs", "num_args"], "6"), "GRAPH", ["num_args=6"]),
    ("foreach", lambda d: _cf(d)["attrs"].pop("remain_locs"), "ATTRIBUTE",
     ["missing attribute 'remain_locs'"]),
    ("foreach", _set(["attrs", "remain_locs"], "[1, x]"), "ATTRIBUTE", ["remain_locs"]),
    ("while", _set(["attrs", "func_var_locs"], "[2, 9]"), "GRAPH", ["func_var_locs", "func has 3"]),
    ("while", _set(["attrs", "func_var_locs"], "[0, 0]"), "GRAPH", ["same node input"]),
    ("while", _set(["attrs", "cond_input_locs"], "[7]"), "GRAPH", ["names input 7"]),
    ("while", _set(["attrs", "cond_input_locs"], "[0, 1]"), "GRAPH",
     ["cond_input_locs has 2 entries", "subgraph 0 (cond) has 1 inputs"]),
    ("while", _set(["attrs", "max_iterations"], "0"), "ATTRIBUTE", ["max_iterations=0"]),
    ("while", _set(["subgraphs", 0, "heads"], [[2, 0, 0], [1, 0, 0]]), "GRAPH",
     ["subgraph 0 (cond) has 2 outputs"]),
    ("cond_then", _set(["attrs", "then_input_locs"], "[1, 2, 3]"), "GRAPH",
     ["then_input_locs has 3 entries", "subgraph 1 (then) has 4 inputs"]),
    ("cond_then", _set(["attrs", "num_outputs"], "2"), "GRAPH", ["(then) has 1 outputs"]),
    ("lstm_export", lambda d: d["nodes"][36]["attrs"].update(mode="lstmp"), "UNSUPPORTED",
     ["mode", "lstmp"]),
    ("lstm_export", lambda d: d["nodes"][36]["attrs"].update(projection_size="3"),
     "UNSUPPORTED", ["projection_size"]),
    ("lstm_export", lambda d: d["nodes"][36]["attrs"].update(use_sequence_length="True"),
     "UNSUPPORTED", ["use_sequence_length"]),
    ("lstm_export", lambda d: d["nodes"][36]["attrs"].update(lstm_state_clip_min="-1"),
     "UNSUPPORTED", ["lstm_state_clip_min"]),
    ("lstm_export", lambda d: d["nodes"][36]["inputs"].pop(), "GRAPH", ["takes 4 inputs"]),
]


@pytest.mark.parametrize("name,edit,status,words", LOAD_ERRORS)
def test_load_errors_name_the_node(name, edit, status, words, runtime):
    doc = _doc(name)
    edit(doc)
    with pytest.raises(RuntimeError_) as e:
        runtime.load_memory(json.dumps(doc).encode(), _params(name))
    assert e.value.status == status, e.value
    node = "lstm2_rnn0" if name == "lstm_export" else _cf(_doc(name))["name"]
    for w in words + [f"'{node}'"]:
        assert w in e.value.message, (w, e.value.message)


def _run_error(runtime, doc, params, arrays):
    model = runtime.load_memory(json.dumps(doc).encode(), params)
    with pytest.raises(RuntimeError_) as e:
        _c_api_outputs(model, arrays)
    return e.value


def test_shapes_that_change_between_iterations(runtime):
    ref = onp.load(DATA / "foreach.npz")
    doc = _doc("foreach")
    body = _cf(doc)["subgraphs"][0]
    body["heads"][2] = [8, 0, 0]           # the (1,) state's update now has shape (2, 4)
    err = _run_error(runtime, doc, _params("foreach"), [ref["in0"], ref["in1"]])
    assert err.status == "SHAPE" and "'foreachnet0__foreach0'" in err.message
    assert "new state 1 has shape (2, 4), the state (1,)" in err.message
    doc = _doc("while")
    func = _cf(doc)["subgraphs"][1]
    func["nodes"][4] = {"op": "_zeros", "name": "z", "attrs": {"shape": "(3,)"}, "inputs": []}
    ref = onp.load(DATA / "while.npz")
    err = _run_error(runtime, doc, _params("while"), [ref["in1"], ref["in0"]])
    assert err.status == "SHAPE" and "loop variable 0 has shape (3,), the variable (1,)" in \
        err.message
    # the two branches of a cond give different shapes
    doc = _doc("cond_then")
    _cf(doc)["subgraphs"][2]["nodes"][3] = {"op": "sum", "name": "s", "inputs": [[2, 0, 0]]}
    ref = onp.load(DATA / "cond_then.npz")
    err = _run_error(runtime, doc, _params("cond_then"), [ref["in0"], ref["in1"]])
    assert err.status == "SHAPE" and "both branches" in err.message
    # RNN: a parameter vector of the wrong length, a state of the wrong shape
    ref = onp.load(DATA / "lstm_export.npz")
    arrays = [ref["in0"], ref["in1"], ref["in2"]]
    err = _run_error(runtime, _doc("lstm_export"), _params("lstm_export"),
                     [ref["in0"][:, :, :2], ref["in1"], ref["in2"]])
    assert err.status == "SHAPE" and "parameter vector" in err.message and "'lstm2_rnn0'" in \
        err.message
    err = _run_error(runtime, _doc("lstm_export"), _params("lstm_export"),
                     [arrays[0], arrays[1][:2], arrays[2]])
    assert err.status == "SHAPE" and "initial state has shape (2, 2, 4)" in err.message


def _nested_cond(depth):
    """x -> cond(x.sum() > 0, then: the same graph one level less, else: x * 2)"""
    if depth == 0:
        return {"nodes": [{"op": "null", "name": "x", "inputs": []},
                          {"op": "_plus_scalar", "name": "leaf", "attrs": {"scalar": "1"},
                           "inputs": [[0, 0, 0]]}], "arg_nodes": [0], "heads": [[1, 0, 0]]}
    copy_body = {"nodes": [{"op": "null", "name": "p", "inputs": []},
                           {"op": "_copy", "name": "pc", "inputs": [[0, 0, 0]]}],
                 "arg_nodes": [0], "heads": [[1, 0, 0]]}
    other = {"nodes": [{"op": "null", "name": "x", "inputs": []},
                       {"op": "_mul_scalar", "name": "twice", "attrs": {"scalar": "2"},
                        "inputs": [[0, 0, 0]]}], "arg_nodes": [0], "heads": [[1, 0, 0]]}
    nodes = [{"op": "null", "name": "x", "inputs": []},
             {"op": "sum", "name": "s", "inputs": [[0, 0, 0]]},
             {"op": "_greater_scalar", "name": "pos", "attrs": {"scalar": "0"},
              "inputs": [[1, 0, 0]]},
             {"op": "_cond", "name": f"cond{depth}", "inputs": [[2, 0, 0], [0, 0, 0]],
              "attrs": {"cond_input_locs": "[0]", "then_input_locs": "[1]",
                        "else_input_locs": "[1]", "num_args": "5", "num_outputs": "1"},
              "subgraphs": [copy_body, _nested_cond(depth - 1), other]}]
    return {"nodes": nodes, "arg_nodes": [0], "heads": [[3, 0, 0]]}


def test_nesting_depth(runtime):
    x = onp.array([0.5, 1.0], onp.float32)
    model = runtime.load_memory(json.dumps(_nested_cond(8)).encode(), None)
    onp.testing.assert_allclose(model(x), x + 1)
    model(-x)
    onp.testing.assert_allclose(model.output(0), -2 * x)
    with pytest.raises(RuntimeError_) as e:
        runtime.load_memory(json.dumps(_nested_cond(9)).encode(), None)
    assert e.value.status == "LIMIT" and "nested more than 8 deep" in e.value.message
    assert "'cond1'" in e.value.message


def _counting_loop(max_iterations):
    """while (i >= -1e30) i = i + 1, at most max_iterations times: no per-step outputs"""
    cond = {"nodes": [{"op": "null", "name": "i", "inputs": []},
                      {"op": "_greater_equal_scalar", "name": "ge", "attrs": {"scalar": "-1e30"},
                       "inputs": [[0, 0, 0]]}], "arg_nodes": [0], "heads": [[1, 0, 0]]}
    func = {"nodes": [{"op": "null", "name": "i", "inputs": []},
                      {"op": "_plus_scalar", "name": "inc", "attrs": {"scalar": "1"},
                       "inputs": [[0, 0, 0]]}], "arg_nodes": [0], "heads": [[1, 0, 0]]}
    nodes = [{"op": "null", "name": "i0", "inputs": []},
             {"op": "_while_loop", "name": "count", "inputs": [[0, 0, 0]],
              "attrs": {"cond_input_locs": "[0]", "func_input_locs": "[0]",
                        "func_var_locs": "[0]", "max_iterations": str(max_iterations),
                        "num_args": "3", "num_out_data": "0", "num_outputs": "1"},
              "subgraphs": [cond, func]}]
    return json.dumps({"nodes": nodes, "arg_nodes": [0], "heads": [[1, 0, 0]]}).encode()


def test_the_loop_step_cap(runtime, kiln_run, tmp_path):
    from kiln.io.params import dump_params_bytes

    zero = onp.zeros(1, onp.float32)
    model = runtime.load_memory(_counting_loop(3000), None)
    assert model(zero)[0] == 3000              # 3000 steps: 6000 body runs (cond + func)
    model.set_max_loop_steps(1000)
    with pytest.raises(RuntimeError_) as e:
        model(zero)
    assert e.value.status == "LIMIT" and "more than 1000 control-flow steps" in e.value.message
    assert "'count'" in e.value.message
    # a loop of 10^12 iterations ends at the cap: KILN_MAX_LOOP_STEPS, --max-loop-steps
    sym = tmp_path / "loop-symbol.json"
    sym.write_bytes(_counting_loop(10**12))
    params = tmp_path / "loop-0000.params"
    params.write_bytes(dump_params_bytes({}, False))
    onp.save(tmp_path / "x.npy", zero)
    args = (kiln_run, sym, params, [tmp_path / "x.npy"], tmp_path / "y.npy")
    proc = _run_cli(*args, env=dict(os.environ, KILN_MAX_LOOP_STEPS="5000"))
    assert proc.returncode == 1 and "more than 5000 control-flow steps" in proc.stderr
    proc = _run_cli(*args, "--max-loop-steps", "700")
    assert proc.returncode == 1 and "more than 700 control-flow steps" in proc.stderr


def test_body_variables_are_never_parameters(runtime):
    """A body variable named like a parameter of the file is still fed by its node."""
    doc = _doc("cond_then")
    ref = onp.load(DATA / "cond_then.npz")
    model = runtime.load_memory(json.dumps(doc).encode(), _params("cond_then"))
    want = _c_api_outputs(model, [ref["in0"], ref["in1"]])[0]
    doc2 = copy.deepcopy(doc)
    _cf(doc2)["subgraphs"][2]["nodes"][0]["name"] = "condnet0_dense0_weight"
    model = runtime.load_memory(json.dumps(doc2).encode(), _params("cond_then"))
    _close(_c_api_outputs(model, [ref["in0"], ref["in1"]])[0], want)
