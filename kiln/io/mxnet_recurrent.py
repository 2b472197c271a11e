"""MXNet's control-flow nodes (`_foreach`, `_while_loop`, `_cond`) and its fused `RNN`
operator in symbol JSON, read and written.

A control-flow node keeps its bodies in `"subgraphs"`: graph objects like the file's own (nodes,
arg_nodes, node_row_ptr, heads; no attrs). A body's inputs are its variable nodes in the order
they appear (MXNet's depth-first order from the heads, which kiln writes too); the node's
`*_locs` attributes map between those inputs and the node's inputs. Everything a body reads
from outside is passed in as a node input, so a body never names an outer variable. What kiln
writes (and reads), as MXNet 1.9.1 does:

`_foreach`     inputs: data..., initial states..., the rest (captured values)
               subgraph 0 (the body) -> per-step outputs..., new states...
               in_data_locs[i], in_state_locs[j], remain_locs[k]: the body input taking data i,
               state j, rest k; num_out_data: per-step outputs; num_outputs: those plus the
               states; num_args: inputs + 1. Outputs: stacked outputs..., final states...
`_while_loop`  inputs: loop variables and captured values, in first-use order
               subgraph 0 (cond) -> one value; subgraph 1 (func) -> step outputs..., new vars...
               cond_input_locs / func_input_locs[p]: the node input feeding body input p;
               func_var_locs[i]: the func input holding loop variable i; max_iterations;
               num_out_data; num_outputs (outputs + loop variables); num_args: inputs + 2.
               Outputs: stacked outputs of max_iterations rows, final loop variables. (Rows past
               the last step are unspecified in MXNet and zero in kiln.)
`_cond`        inputs: the predicate, then the values the branches read
               subgraph 0 (the predicate: its input, copied), 1 (then), 2 (else);
               cond_input_locs, then_input_locs, else_input_locs: the node inputs feeding each
               subgraph's inputs; num_outputs; num_args: inputs + 3.

A body input that is an output as well goes through `_copy` (MXNet's graphs may not return an
input), and constants inside bodies become inputs of the node fed by `_const<k>` variables of
the params file. MXNet cannot express a loop state the body never reads; exporting one is an
error naming it.

`RNN` (MXNet's fused recurrent layer, as `gluon.rnn` layers export) is read through kiln's fused
`rnn` operator: its flat parameter vector holds every layer's and direction's weights, then
every bias, each flattened (`_rnn_param_concat` of reshaped parameters).
"""

from __future__ import annotations

import numpy as _np

from ..base import KilnError
from ..graph.ir import CONST, VAR, Graph, Node, Value, const_node, var_node
from ..ops.registry import Aval
from .mxnet_ops import REQUIRED, reader

__all__ = ["prepare_graph", "write_control_flow", "write_rnn"]


def _sj():
    from . import symbol_json

    return symbol_json


def _locs(a, key) -> list[int]:
    return list(a[key])


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def _run(body, values: list):
    """Run an MXNet body graph on values given in its input order."""
    names = [n.name for n in body.variables()]
    if len(names) != len(values):
        raise KilnError(f"{body.source}: the body has {len(names)} inputs, {len(values)} given")
    return _sj().run_graph(body, dict(zip(names, values)))


_FOREACH = {"num_args": ("int", REQUIRED), "num_outputs": ("int", REQUIRED),
            "num_out_data": ("int", REQUIRED), "in_data_locs": ("ints", REQUIRED),
            "in_state_locs": ("ints", REQUIRED), "remain_locs": ("ints", REQUIRED)}


@reader("_foreach", _FOREACH, num_outputs=lambda a: a["num_outputs"], subgraphs=1)
def _read_foreach(ins, a, subgraphs):
    from ..control_flow import foreach

    (body,) = subgraphs
    data_locs, state_locs, rest_locs = (_locs(a, k) for k in ("in_data_locs", "in_state_locs",
                                                               "remain_locs"))
    nd, ns = len(data_locs), len(state_locs)
    if len(ins) != nd + ns + len(rest_locs):
        raise KilnError(f"_foreach: {len(ins)} inputs for {nd} data, {ns} states and "
                        f"{len(rest_locs)} others")
    rest = ins[nd + ns:]
    n_out = a["num_out_data"]

    def step(xs, states):
        values = [None] * (nd + ns + len(rest))
        for locs, vals in ((data_locs, xs), (state_locs, states), (rest_locs, rest)):
            for loc, v in zip(locs, vals):
                values[loc] = v
        outs = _run(body, values)
        return list(outs[:n_out]), list(outs[n_out:])
    outs, states = foreach(step, list(ins[:nd]), list(ins[nd:nd + ns]))
    return (*outs, *states)


_WHILE = {"num_args": ("int", REQUIRED), "num_outputs": ("int", REQUIRED),
          "num_out_data": ("int", REQUIRED), "max_iterations": ("int", REQUIRED),
          "cond_input_locs": ("ints", REQUIRED), "func_input_locs": ("ints", REQUIRED),
          "func_var_locs": ("ints", REQUIRED)}


@reader("_while_loop", _WHILE, num_outputs=lambda a: a["num_outputs"], subgraphs=2)
def _read_while_loop(ins, a, subgraphs):
    from ..control_flow import while_loop

    cond_g, func_g = subgraphs
    cond_locs, func_locs = _locs(a, "cond_input_locs"), _locs(a, "func_input_locs")
    var_inputs = [func_locs[p] for p in _locs(a, "func_var_locs")]  # node input of each var
    n_out = a["num_out_data"]

    def current(loop_vars) -> list:
        values = list(ins)
        for i, v in zip(var_inputs, loop_vars):
            values[i] = v
        return values

    def cond(*loop_vars):
        values = current(loop_vars)
        return _run(cond_g, [values[i] for i in cond_locs])[0]

    def func(*loop_vars):
        values = current(loop_vars)
        outs = _run(func_g, [values[i] for i in func_locs])
        return list(outs[:n_out]), list(outs[n_out:])
    outs, final = while_loop(cond, func, [ins[i] for i in var_inputs], a["max_iterations"])
    return (*outs, *final)


_COND = {"num_args": ("int", REQUIRED), "num_outputs": ("int", REQUIRED),
         "cond_input_locs": ("ints", REQUIRED), "then_input_locs": ("ints", REQUIRED),
         "else_input_locs": ("ints", REQUIRED)}


@reader("_cond", _COND, num_outputs=lambda a: a["num_outputs"], subgraphs=3)
def _read_cond(ins, a, subgraphs):
    from ..control_flow import cond

    pred_g, then_g, else_g = subgraphs
    pred = _run(pred_g, [ins[i] for i in _locs(a, "cond_input_locs")])[0]
    then_locs, else_locs = _locs(a, "then_input_locs"), _locs(a, "else_input_locs")
    out = cond(pred, lambda: list(_run(then_g, [ins[i] for i in then_locs])),
               lambda: list(_run(else_g, [ins[i] for i in else_locs])), [])
    return tuple(out)


_RNN = {"mode": (("lstm", "gru", "rnn_tanh", "rnn_relu"), REQUIRED),
        "state_size": ("int", REQUIRED), "num_layers": ("int", 1),
        "bidirectional": ("bool", False), "state_outputs": ("bool", False), "p": ("float", 0.0),
        "projection_size": ("opt_int", None), "lstm_state_clip_min": ("opt_float", None),
        "lstm_state_clip_max": ("opt_float", None), "lstm_state_clip_nan": ("bool", False),
        "use_sequence_length": ("bool", False)}


def _rnn_outputs(a) -> int:
    if not a["state_outputs"]:
        return 1
    return 3 if a["mode"] == "lstm" else 2


@reader("RNN _npx_rnn", _RNN, num_outputs=_rnn_outputs)
def _read_rnn(ins, a):
    from .. import numpy as knp
    from ..ops import nn as nn_ops
    from ..ops.rnn import GATES, rnn_direction

    if a["projection_size"] or a["use_sequence_length"] or a["lstm_state_clip_min"] is not None:
        raise KilnError("RNN: projection_size, use_sequence_length and state clipping are not "
                        "supported")
    mode, h, layers = a["mode"], a["state_size"], a["num_layers"]
    dirs = 2 if a["bidirectional"] else 1
    x, flat, h0 = ins[0], ins[1], ins[2]
    c0 = ins[3] if mode == "lstm" else None
    g = GATES[mode]
    pos, weights = 0, []
    n_in = x.shape[2]
    for _ in range(layers):
        for _ in range(dirs):
            w_ih = flat[pos:pos + g * h * n_in].reshape(g * h, n_in)
            pos += g * h * n_in
            w_hh = flat[pos:pos + g * h * h].reshape(g * h, h)
            pos += g * h * h
            weights.append([w_ih, w_hh])
        n_in = h * dirs
    for w in weights:
        w.append(flat[pos:pos + g * h])
        w.append(flat[pos + g * h:pos + 2 * g * h])
        pos += 2 * g * h
    if pos != flat.shape[0]:
        raise KilnError(f"RNN: {flat.shape[0]} parameters, the layer needs {pos}")
    hs, cs = [], []
    for k in range(layers):
        outs = []
        for d in range(dirs):
            idx = k * dirs + d
            y, h_t, c_t = rnn_direction(x, *weights[idx], h0[idx],
                                        None if c0 is None else c0[idx], mode, d == 1)
            outs.append(y)
            hs.append(h_t)
            cs.append(c_t)
        x = outs[0] if dirs == 1 else knp.concatenate(outs, axis=2)
        if a["p"] and k < layers - 1:
            x = nn_ops.dropout(x, p=a["p"])
    if not a["state_outputs"]:
        return (x,)
    states = (knp.stack(hs),) + ((knp.stack(cs),) if mode == "lstm" else ())
    return (x, *states)


@reader("_rnn_param_concat _npi_rnn_param_concat", {"dim": ("int", 0),
                                                    "num_args": ("int", 1)})
def _read_rnn_param_concat(ins, a):
    from .. import numpy as knp

    return (knp.concatenate(list(ins), axis=a["dim"]),)


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def prepare_graph(graph: Graph) -> Graph:
    """The graph as MXNet's control flow needs it: constants inside bodies become inputs of
    their node (innermost first), and body outputs that are body inputs go through a copy."""
    if not any(n.subgraphs for n in graph.nodes):
        return graph
    from ..graph.passes.rewrite import rewrite

    def visit(n: Node, inputs: list[Value]):
        if not n.subgraphs:
            return None
        bodies = [prepare_graph(b) for b in n.subgraphs]
        consts = []  # (value, aval) of every body's constants: new node inputs, shared order
        for b in bodies:
            consts += [c for c in b.nodes if c.op == CONST]
        bodies = [_copy_passthrough(_lift(b, consts)) for b in bodies]
        inputs = list(inputs)
        if n.op == "cond":
            inputs[0] = _float_predicate(inputs[0])
        elif n.op == "while_loop":
            cond = bodies[0]
            bodies[0] = Graph(cond.inputs, [_float_predicate(cond.outputs[0])])
        node = Node(n.op, inputs + [Value(const_node(c.value), 0) for c in consts],
                    n.attrs, n.avals, n.name, n.loc, None, tuple(bodies))
        return [Value(node, i) for i in range(n.num_outputs)]
    return rewrite(graph, visit)


def _float_predicate(v: Value) -> Value:
    """A boolean condition cast to float32: MXNet's control flow cannot pass booleans (its
    legacy comparisons give floats; numpy-mode ones give booleans)."""
    if _np.dtype(v.aval.dtype) != _np.bool_:
        return v
    aval = Aval(tuple(v.aval.shape), _np.dtype(_np.float32))
    return Value(Node("cast", [v], {"dtype": "float32"}, (aval,), None, v.node.loc), 0)


def _lift(body: Graph, consts: list[Node]) -> Graph:
    """`body` with one more input per constant of `consts` standing for it."""
    new_vars = [var_node(f"_const{k}", c.avals[0]) for k, c in enumerate(consts)]
    env = {Value(c, 0): Value(v, 0) for c, v in zip(consts, new_vars)}
    env.update((Value(n, 0), Value(n, 0)) for n in body.inputs)
    for n in body.nodes:
        if n.op in (VAR, CONST):
            continue
        copy = Node(n.op, [env[v] for v in n.inputs], n.attrs, n.avals, n.name, n.loc, None,
                    n.subgraphs)
        for i in range(n.num_outputs):
            env[Value(n, i)] = Value(copy, i)
    return Graph(body.inputs + new_vars, [env[v] for v in body.outputs])


def _copy_passthrough(body: Graph) -> Graph:
    """Outputs that are inputs (or repeat an earlier output) go through a copy node."""
    seen: set[Value] = set()
    outs = []
    for v in body.outputs:
        if v.node.op == VAR or v in seen:
            v = Value(Node("copy", [v], {}, (v.aval,), None, v.node.loc), 0)
        seen.add(v)
        outs.append(v)
    return Graph(body.inputs, outs)


def _write_body(body: Graph, mode: str):
    """(the body as an MxGraph, the written position of each body input, None if unused).

    Only the inputs the body reads are written, in first-use (depth-first) order, which is the
    order MXNet gives a subgraph's inputs."""
    from ..graph.ir import topological_order

    used = [n for n in topological_order(body.outputs) if n.op == VAR]
    mx, constants = _sj().graph_to_mx(Graph(used, body.outputs), mode)
    if constants:
        raise KilnError("internal error: a constant left in a body")
    where = {id(n): k for k, n in enumerate(used)}
    return mx, [where.get(id(n)) for n in body.inputs]


def _need(positions, what: str) -> list[int]:
    missing = [k for k, p in enumerate(positions) if p is None]
    if missing:
        raise KilnError(f"export: {what} {missing[0]} is not read by the loop body, which "
                        "MXNet's control-flow operators cannot express")
    return positions


def write_control_flow(node: Node, inputs: list, mode: str) -> tuple[str, dict, list, list]:
    """(MXNet op, attributes, input entries, subgraphs) for a kiln control-flow node whose
    inputs are written at `inputs` ([(node id, output)])."""
    a = node.attrs
    if node.op == "foreach":
        if a["reverse"] or a["has_length"]:
            raise KilnError("export: a reverse or length-limited foreach (a backward loop) has "
                            "no MXNet form")
        body, pos = _write_body(node.subgraphs[0], mode)
        nd, ns = a["num_data"], a["num_states"]
        keep = [i for i, p in enumerate(pos) if p is not None or i < nd + ns]
        _need(pos[nd:nd + ns], "loop state")
        data_locs = _need(pos[:nd], "data input")
        attrs = {"in_data_locs": data_locs, "in_state_locs": pos[nd:nd + ns],
                 "remain_locs": [pos[i] for i in keep if i >= nd + ns],
                 "num_out_data": a["num_out_data"], "num_outputs": a["num_out_data"] + ns}
        entries = [inputs[i] for i in keep]
        attrs["num_args"] = len(entries) + 1
        return "_foreach", attrs, entries, [body]
    if node.op == "while_loop":
        nv = a["num_loop_vars"]
        cond, cond_pos = _write_body(node.subgraphs[0], mode)
        func, func_pos = _write_body(node.subgraphs[1], mode)
        used = [i for i in range(len(inputs)) if cond_pos[i] is not None
                or func_pos[i] is not None or i < nv]
        index = {i: k for k, i in enumerate(used)}
        var_locs = _need(func_pos[:nv], "loop variable")
        attrs = {"cond_input_locs": _by_position(cond_pos, index),
                 "func_input_locs": _by_position(func_pos, index),
                 "func_var_locs": var_locs, "max_iterations": a["max_iterations"],
                 "num_out_data": a["num_out_data"], "num_outputs": a["num_out_data"] + nv,
                 "num_args": len(used) + 2}
        return "_while_loop", attrs, [inputs[i] for i in used], [cond, func]
    if node.op == "cond":
        then, then_pos = _write_body(node.subgraphs[0], mode)
        other, else_pos = _write_body(node.subgraphs[1], mode)
        used = [i for i in range(len(inputs) - 1) if then_pos[i] is not None
                or else_pos[i] is not None]
        index = {i: k + 1 for k, i in enumerate(used)}
        pred_body = _pred_body(node.inputs[0].aval, mode)
        attrs = {"cond_input_locs": [0], "then_input_locs": _by_position(then_pos, index),
                 "else_input_locs": _by_position(else_pos, index),
                 "num_outputs": a["num_outputs"], "num_args": len(used) + 4}
        return "_cond", attrs, [inputs[0]] + [inputs[1 + i] for i in used], [pred_body, then,
                                                                               other]
    raise KilnError(f"export: no MXNet form for control-flow operator {node.op!r}")


def _by_position(positions: list, index: dict) -> list[int]:
    """For each written body input (in written order), the node input feeding it."""
    out = [0] * sum(p is not None for p in positions)
    for i, p in enumerate(positions):
        if p is not None:
            out[p] = index[i]
    return out


def _pred_body(aval, mode: str):
    pred = var_node("pred", aval)
    copy = Node("copy", [Value(pred, 0)], {}, (aval,))
    body, _ = _write_body(Graph([pred], [Value(copy, 0)]), mode)
    return body


def write_rnn(node: Node, inputs: list, mode: str, emit) -> list:
    """Write kiln's fused `rnn` (one layer, one direction) as MXNet's `RNN` operator:
    parameters flattened and concatenated, states given a layer axis, a reverse direction as
    flips around it. `emit(op, attrs, entries, name)` appends a node and returns its id;
    returns the entries of the node's outputs MXNet has (output, state[, cell state])."""
    a = node.attrs
    numpy = mode == "numpy"
    name = node.name or "rnn"
    n = node.inputs[0].aval.shape[1]
    h = a["state_size"]

    def reshape(entry, shape, what):
        if numpy:
            return (emit("_np_reshape", {"newshape": shape, "order": "C"}, [entry],
                         f"{name}_{what}"), 0)
        return (emit("Reshape", {"shape": shape}, [entry], f"{name}_{what}"), 0)

    def flip(entry, what):
        return (emit("_npi_flip" if numpy else "reverse", {"axis": (0,)}, [entry],
                     f"{name}_{what}"), 0)

    flat = [reshape(e, (-1,), f"flat{k}") for k, e in enumerate(inputs[1:5])]
    params = (emit("_npi_rnn_param_concat" if numpy else "_rnn_param_concat",
                   {"dim": 0, "num_args": 4}, flat, f"{name}_params"), 0)
    data = flip(inputs[0], "reversed") if a["reverse"] else inputs[0]
    states = [reshape(e, (1, n, h), f"state{k}") for k, e in enumerate(inputs[5:])]
    rnn = emit("_npx_rnn" if numpy else "RNN",
               {"bidirectional": False, "mode": a["mode"], "num_layers": 1, "p": 0.0,
                "state_outputs": True, "state_size": h}, [data, params, *states], name)
    out = flip((rnn, 0), "out") if a["reverse"] else (rnn, 0)
    finals = [reshape((rnn, k), (n, h), f"last{k}") for k in range(1, 1 + len(states))]
    return [out, *finals]
