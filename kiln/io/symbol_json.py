"""MXNet 1.x symbol JSON (`*-symbol.json`): read and written, compatible with MXNet 1.9.1.

The file, as MXNet 1.9.1 writes it (2-space indent, `", "` then a newline between members,
one-entry maps and the `[id, index, version]` entries on one line, no final newline)::

    {
      "nodes": [                      producers before consumers
        {
          "op": "null",               "null": a variable (input, parameter, auxiliary state)
          "name": "data",
          "attrs": {...},             optional; strings only, keys sorted: "True", "(5, 5)", "256"
          "inputs": [[0, 0, 0], ...]  [node id, output index, version]; version 1 marks an
        },                            input the op updates (BatchNorm's running statistics)
        ...
      ],
      "arg_nodes": [0, 1, ...],       ids of every variable node
      "node_row_ptr": [0, 1, ...],    prefix sums of each node's output count, hidden outputs
                                      included (BatchNorm 3, Dropout 2, max Pooling 2)
      "heads": [[19, 0, 0]],          the graph's outputs
      "attrs": {"mxnet_version": ["int", 10901]}   numpy mode adds "is_np_shape": ["int", 1]
    }

Parameter variables carry hints: `__shape__` ("(256, -1)"; unknown dims 0 in legacy files, -1
in numpy-mode ones), `__dtype__` (MXNet type flag, "0" = float32), `__storage_type__`,
`__lr_mult__`, `__wd_mult__`, sometimes `__init__`. The hints can be stale.

Reading builds an `MxGraph`: every node checked (keys, types, ids, topological order, known
operator, each attribute parsed by the kind its operator expects) so that a bad file raises
`FormatError` naming the file, the node and the problem before anything runs. Nothing in a file
is evaluated as code. `run_graph` then computes it through the operators of `mxnet_ops`, on
arrays or symbols; `symbol_from_json` does that on symbols to give a kiln `Symbol`.

Writing goes the other way: `graph_to_mx` translates a kiln graph node by node (`mxnet_ops`
writers) and `MxGraph.to_json` prints it as MXNet does.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable

import numpy as _np

from .. import autograd
from ..base import FormatError, KilnError
from ..graph.ir import CONST, VAR, Graph, Value, topological_order
from ..graph.literal import format_literal, parse_literal
from ..ndarray import apply, wrap
from ..ops.registry import REGISTRY
from . import mxnet_ops as _ops
from .mxnet_attrs import format_attr, parse_attr
from .params import DTYPE_CODES

__all__ = ["MxGraph", "MxNode", "parse_json", "symbol_to_json", "symbol_from_json",
           "load_json_file", "graph_to_mx", "run_graph", "MXNET_VERSION", "KilnOnlyWarning"]

MXNET_VERSION = 10901
_DTYPE_FLAG = {dt.name: code for code, dt in DTYPE_CODES.items()}
_MAX_NODES = 1_000_000


class KilnOnlyWarning(UserWarning):
    """An exported graph holds operators that only kiln can read."""


class MxNode:
    """One node of an MXNet graph: `op` ("null" for variables), `name`, the attribute strings
    as in the file (`raw`), their parsed values (`attrs`), and `inputs` as (node id, output)."""

    __slots__ = ("op", "name", "raw", "attrs", "inputs", "versions", "subgraphs")

    def __init__(self, op: str, name: str, raw: dict, attrs: dict, inputs: list,
                 versions: list | None = None, subgraphs: list | None = None):
        self.op = op
        self.name = name
        self.raw = raw
        self.attrs = attrs
        self.inputs = inputs
        self.versions = versions if versions is not None else [0] * len(inputs)
        self.subgraphs: list[MxGraph] = subgraphs or []   # bodies of _foreach/_while_loop/_cond

    @property
    def is_var(self) -> bool:
        return self.op == "null"

    def __repr__(self) -> str:
        return f"<MxNode {self.op} {self.name!r}>"


class MxGraph:
    """A checked MXNet graph: nodes in topological order, outputs as (node id, output)."""

    def __init__(self, nodes: list[MxNode], heads: list[tuple[int, int]], numpy_mode: bool,
                 source: str = "<graph>"):
        self.nodes = nodes
        self.heads = heads
        self.numpy_mode = numpy_mode
        self.source = source

    def variables(self) -> list[MxNode]:
        return [n for n in self.nodes if n.is_var]

    def aux_names(self) -> set[str]:
        """Variables that are auxiliary states (BatchNorm's running mean and variance)."""
        out = set()
        for n in self.nodes:
            spec = _ops.READERS.get(n.op)
            for i in (spec.aux if spec is not None else ()):
                if i < len(n.inputs) and self.nodes[n.inputs[i][0]].is_var:
                    out.add(self.nodes[n.inputs[i][0]].name)
        return out

    def num_outputs(self, node: MxNode) -> int:
        if node.is_var:
            return 1
        if node.op.startswith(_ops.KILN_PREFIX):
            return _kiln_op(node).n_outputs(node.attrs) if node.op != _CONST_OP else 1
        return _ops.READERS[node.op].num_outputs(node.attrs)

    def to_json(self) -> str:
        """The graph as MXNet 1.9.1 writes it."""
        return self._text(0, top=True)

    def _text(self, indent: int, top: bool) -> str:
        row_ptr = [0]
        for n in self.nodes:
            row_ptr.append(row_ptr[-1] + self.num_outputs(n))
        node_texts = []
        for n in self.nodes:
            members = [("op", _q(n.op)), ("name", _q(n.name))]
            if n.raw:
                members.append(("attrs", _obj([(k, _q(v)) for k, v in sorted(n.raw.items())],
                                              indent + 6)))
            inputs = [f"[{i}, {j}, {v}]" for (i, j), v in zip(n.inputs, n.versions, strict=True)]
            members.append(("inputs", _arr(inputs, indent + 6)))
            if n.subgraphs:
                members.append(("subgraphs", _arr([g._text(indent + 8, top=False)
                                                   for g in n.subgraphs], indent + 6, True)))
            node_texts.append(_obj(members, indent + 4))
        arg_nodes = [i for i, n in enumerate(self.nodes) if n.is_var]
        heads = [f"[{i}, {j}, 0]" for i, j in self.heads]
        top_members = [("nodes", _arr(node_texts, indent + 2, True)),
                       ("arg_nodes", _arr([str(i) for i in arg_nodes], indent + 2)),
                       ("node_row_ptr", _arr([str(i) for i in row_ptr], indent + 2)),
                       ("heads", _arr(heads, indent + 2))]
        if top:
            graph_attrs = {"mxnet_version": ["int", MXNET_VERSION]}
            if self.numpy_mode:
                graph_attrs = {"is_np_shape": ["int", 1], **graph_attrs}
            top_members.append(("attrs", _obj([(k, f"[{_q(t)}, {v}]")
                                               for k, (t, v) in graph_attrs.items()],
                                              indent + 2)))
        return _obj(top_members, indent)


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _obj(members: list[tuple[str, str]], indent: int) -> str:
    """A JSON object as dmlc's writer lays it out: on one line when it has at most one member."""
    if len(members) <= 1:
        return "{" + ", ".join(f"{_q(k)}: {v}" for k, v in members) + "}"
    pad = " " * (indent + 2)
    body = ", \n".join(f"{pad}{_q(k)}: {v}" for k, v in members)
    return "{\n" + body + "\n" + " " * indent + "}"


def _arr(items: list[str], indent: int, multi_line: bool = False) -> str:
    """A JSON array as dmlc's writer lays it out: one item a line beyond 10 items (or always,
    for objects), else on one line."""
    if not items:
        return "[]"
    if not multi_line and len(items) <= 10:
        return "[" + ", ".join(items) + "]"
    pad = " " * (indent + 2)
    return "[\n" + ", \n".join(pad + it for it in items) + "\n" + " " * indent + "]"


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

_CONST_OP = _ops.KILN_PREFIX + "constant"


def _kiln_op(node: MxNode):
    return REGISTRY[node.op[len(_ops.KILN_PREFIX):]]


def _fail(source: str, what: str) -> FormatError:
    return FormatError(f"{source}: {what}")


def parse_json(text: str | bytes, source: str = "<json>") -> MxGraph:
    """Check and parse symbol-JSON text; every problem is a `FormatError` naming `source`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _fail(source, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(source, f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") \
            from None
    except RecursionError:
        raise _fail(source, "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise _fail(source, f"a symbol file holds a JSON object, not a {_jtype(doc)}")
    for key in ("nodes", "heads"):
        if key not in doc:
            raise _fail(source, f"missing key {key!r} (a symbol file has 'nodes', 'arg_nodes', "
                                "'heads' and 'attrs')")
    return _parse_doc(doc, source, _graph_attrs(doc, source), 0)


_MAX_DEPTH = 32


def _parse_doc(doc: dict, source: str, numpy_mode: bool, depth: int) -> MxGraph:
    """A graph object (the file, or a control-flow node's subgraph) checked and parsed."""
    if depth > _MAX_DEPTH:
        raise _fail(source, f"control-flow subgraphs nested more than {_MAX_DEPTH} deep")
    if not isinstance(doc, dict) or "nodes" not in doc or "heads" not in doc:
        raise _fail(source, "a graph object needs 'nodes' and 'heads'")
    raw_nodes = doc["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise _fail(source, "'nodes' must be a non-empty list")
    if len(raw_nodes) > _MAX_NODES:
        raise _fail(source, f"{len(raw_nodes)} nodes is more than kiln reads")
    nodes: list[MxNode] = []
    var_names: set[str] = set()
    for idx, raw in enumerate(raw_nodes):
        node = _parse_node(raw, idx, len(raw_nodes), source, numpy_mode, depth)
        if node.is_var:
            if node.name in var_names:
                raise _fail(source, f"node {idx}: two variables are named {node.name!r}")
            var_names.add(node.name)
        nodes.append(node)
    graph = MxGraph(nodes, [], numpy_mode, source)
    for idx, node in enumerate(nodes):  # output indices, now that every node is known
        for k, (src, out) in enumerate(node.inputs):
            n_out = graph.num_outputs(nodes[src])
            if out >= n_out:
                raise _fail(source, f"node {idx} ({node.name!r}): input {k} reads output {out} "
                                    f"of node {src} ({nodes[src].name!r}), which has {n_out}")
    graph.heads = _parse_entries(doc["heads"], len(nodes), source, "'heads'", graph)
    if not graph.heads:
        raise _fail(source, "'heads' is empty: the graph has no outputs")
    if "arg_nodes" in doc:
        arg_nodes = doc["arg_nodes"]
        if not isinstance(arg_nodes, list) or not all(_is_int(i) for i in arg_nodes):
            raise _fail(source, "'arg_nodes' must be a list of node ids")
        for i in arg_nodes:
            if not 0 <= i < len(nodes) or not nodes[i].is_var:
                raise _fail(source, f"'arg_nodes' lists {i}, which is not a variable node")
    return graph


def _jtype(v) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean",
            type(None): "null"}.get(type(v), "number")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _graph_attrs(doc: dict, source: str) -> bool:
    attrs = doc.get("attrs", {})
    if not isinstance(attrs, dict):
        raise _fail(source, "'attrs' must be an object")
    flag = attrs.get("is_np_shape")
    if flag is None:
        return False
    if not (isinstance(flag, list) and len(flag) == 2 and _is_int(flag[1])):
        raise _fail(source, f"graph attribute is_np_shape must be [\"int\", 0 or 1], not {flag!r}")
    return bool(flag[1])


def _parse_entries(entries, n_nodes: int, source: str, where: str, graph=None,
                   before: int | None = None) -> list[tuple[int, int]]:
    if not isinstance(entries, list):
        raise _fail(source, f"{where} must be a list of [node id, output index, version]")
    out = []
    for e in entries:
        if not isinstance(e, list) or len(e) not in (2, 3) or not all(_is_int(v) for v in e):
            raise _fail(source, f"{where}: entry {e!r} is not [node id, output index, version]")
        src, idx = e[0], e[1]
        if not 0 <= src < n_nodes:
            raise _fail(source, f"{where}: node id {src} is out of range (the graph has "
                                f"{n_nodes} nodes)")
        if before is not None and src >= before:
            raise _fail(source, f"{where}: reads node {src}, which does not come before it "
                                "(a cycle, or nodes out of topological order)")
        if idx < 0:
            raise _fail(source, f"{where}: negative output index {idx}")
        if graph is not None and idx >= graph.num_outputs(graph.nodes[src]):
            raise _fail(source, f"{where}: output {idx} of node {src} "
                                f"({graph.nodes[src].name!r}) does not exist")
        out.append((src, idx))
    return out


def _parse_node(raw, idx: int, n_nodes: int, source: str, numpy_mode: bool = False,
                depth: int = 0) -> MxNode:
    if not isinstance(raw, dict):
        raise _fail(source, f"node {idx} is a {_jtype(raw)}, not an object")
    op, name = raw.get("op"), raw.get("name")
    if not isinstance(op, str) or not op:
        raise _fail(source, f"node {idx}: missing or non-string 'op'")
    if not isinstance(name, str):
        raise _fail(source, f"node {idx} ({op}): missing or non-string 'name'")
    where = f"node {idx} ({name!r}, op {op})"
    attrs_raw = raw.get("attrs", raw.get("attr", raw.get("param", {})))
    if not isinstance(attrs_raw, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in attrs_raw.items()):
        raise _fail(source, f"{where}: 'attrs' must map strings to strings")
    spec = _ops.READERS.get(op)
    expected = spec.subgraphs if spec is not None else 0
    subgraphs = raw.get("subgraphs", [])
    if ("subgraphs" in raw and not expected) or not isinstance(subgraphs, list) or (
            expected and len(subgraphs) != expected):
        count = len(subgraphs) if isinstance(subgraphs, list) else "malformed"
        raise _fail(source, f"{where}: {count} subgraphs, but {op} takes "
                            f"{expected or 'none (only _foreach, _while_loop and _cond do)'}")
    inputs_raw = raw.get("inputs", [])
    entries = _parse_entries(inputs_raw, n_nodes, source, f"{where} 'inputs'", before=idx)
    versions = [e[2] if len(e) == 3 else 0 for e in inputs_raw]
    if op == "null":
        if entries:
            raise _fail(source, f"{where}: a variable has no inputs")
        return MxNode(op, name, dict(attrs_raw), _var_hints(attrs_raw, where, source), [], [])
    attrs = _parse_op_attrs(op, attrs_raw, where, source, len(entries))
    bodies = [_parse_doc(g, f"{source} ({where}, subgraph {k})", numpy_mode, depth + 1)
              for k, g in enumerate(subgraphs)]
    return MxNode(op, name, dict(attrs_raw), attrs, entries, versions, bodies)


def _var_hints(raw: dict, where: str, source: str) -> dict:
    hints = {}
    if "__shape__" in raw:
        try:
            hints["shape"] = parse_attr("ints", raw["__shape__"])
        except ValueError as e:
            raise _fail(source, f"{where}: attribute __shape__={raw['__shape__']!r}: {e}") \
                from None
    if "__dtype__" in raw:
        try:
            code = int(raw["__dtype__"])
        except ValueError:
            code = -1
        if code not in DTYPE_CODES:
            raise _fail(source, f"{where}: attribute __dtype__={raw['__dtype__']!r} is not an "
                                "MXNet type flag (0 float32, 1 float64, 2 float16 ...)")
        hints["dtype"] = DTYPE_CODES[code].newbyteorder("=").name
    if "__kiln_constant__" in raw:
        hints["constant"] = True
    return hints


def _parse_op_attrs(op: str, raw: dict, where: str, source: str, n_inputs: int) -> dict:
    if op.startswith(_ops.KILN_PREFIX):
        return _parse_kiln_attrs(op, raw, where, source)
    spec = _ops.READERS.get(op)
    if spec is None:
        raise _fail(source, f"{where}: unknown operator {op!r} (kiln reads the MXNet operators "
                            "listed in kiln/io/mxnet_ops/)")
    out = {}
    for key, (kind, default) in spec.spec.items():
        if key in raw:
            try:
                out[key] = parse_attr(kind, raw[key])
            except ValueError as e:
                raise _fail(source, f"{where}: attribute {key}={raw[key]!r}: {e}") from None
        elif default is _ops.REQUIRED:
            raise _fail(source, f"{where}: missing attribute {key!r}")
        else:
            out[key] = default
    if n_inputs == 0 and op not in _ops.NULLARY:
        raise _fail(source, f"{where}: the operator has no inputs")
    return out


def _parse_kiln_attrs(op: str, raw: dict, where: str, source: str) -> dict:
    name = op[len(_ops.KILN_PREFIX):]
    if op != _CONST_OP and name not in REGISTRY:
        raise _fail(source, f"{where}: unknown kiln operator {name!r}")
    out = {}
    for key, text in raw.items():
        if key.startswith("__"):
            continue
        try:
            out[key] = parse_literal(text)
        except FormatError as e:
            raise _fail(source, f"{where}: attribute {key}: {e}") from None
        except (RecursionError, MemoryError, ValueError):
            raise _fail(source, f"{where}: attribute {key} cannot be read") from None
    if op == _CONST_OP:
        if not isinstance(out.get("value"), _np.ndarray):
            raise _fail(source, f"{where}: a kiln constant needs an array 'value'")
        return out
    op_def = REGISTRY[name]
    unknown = set(out) - set(op_def.attrs)
    if unknown:
        raise _fail(source, f"{where}: unknown attribute(s) {sorted(unknown)} of {name}")
    return op_def.full_attrs(out)


# ----------------------------------------------------------------------------------------------
# running a graph (arrays or symbols)
# ----------------------------------------------------------------------------------------------

def run_graph(graph: MxGraph, values: dict, on_param=None) -> list:
    """Compute the graph's outputs from `values` (variable name -> array or symbol).

    `on_param(name, node, input_index, input_shapes)` is called for every variable that feeds a
    node, before the node runs (SymbolBlock finishes deferred initialization there).
    """
    env: list[tuple | None] = [None] * len(graph.nodes)
    for idx, node in enumerate(graph.nodes):
        if node.is_var:
            if node.name not in values:
                raise KilnError(f"{graph.source}: no value for variable {node.name!r}")
            env[idx] = (values[node.name],)
            continue
        if on_param is not None:
            shapes = [_maybe_shape(env[s][o]) for s, o in node.inputs]
            for k, (s, _) in enumerate(node.inputs):
                if graph.nodes[s].is_var:
                    on_param(graph.nodes[s].name, node, k, shapes)
            for s, _ in node.inputs:  # the value may be new after on_param
                if graph.nodes[s].is_var:
                    env[s] = (values[graph.nodes[s].name],)
        ins = [env[s][o] if o < len(env[s]) else _hidden(graph, node, s, o)
               for s, o in node.inputs]
        try:
            outs = _run_node(node, ins)
        except FormatError:
            raise
        except KilnError as e:
            raise type(e)(f"{graph.source}: node {node.name!r} ({node.op}): {e}") from None
        _name_outputs(node, outs, ins)
        env[idx] = outs
    return [env[s][o] if o < len(env[s]) else _hidden(graph, None, s, o) for s, o in graph.heads]


def _maybe_shape(v):
    try:
        return tuple(v.shape)
    except Exception:
        return None


def _hidden(graph: MxGraph, node, src: int, out: int):
    who = f"node {node.name!r}" if node is not None else "the graph's outputs"
    raise KilnError(f"{graph.source}: {who} reads output {out} of {graph.nodes[src].name!r} "
                    f"({graph.nodes[src].op}), a hidden output (workspace or mask) that kiln "
                    "does not compute")


def _run_node(node: MxNode, ins: list) -> tuple:
    if node.op == _CONST_OP:
        return (wrap(_np.array(node.attrs["value"])),)
    if node.op.startswith(_ops.KILN_PREFIX):
        out = apply(_kiln_op(node), tuple(ins), node.attrs)
        return out if isinstance(out, tuple) else (out,)
    if node.subgraphs:  # control flow: the reader runs the bodies with run_graph
        return tuple(_ops.READERS[node.op].run(ins, node.attrs, node.subgraphs))
    return tuple(_ops.READERS[node.op].run(ins, node.attrs))


def _name_outputs(node: MxNode, outs, ins) -> None:
    """Give the graph nodes an imported node created (while tracing) the file's node name."""
    input_nodes = {id(v._outputs[0].node) for v in ins if getattr(v, "_kiln_symbolic", False)}
    for o in outs:
        if getattr(o, "_kiln_symbolic", False) and len(o._outputs) == 1:
            n = o._outputs[0].node
            if id(n) not in input_nodes and n.op not in (VAR, CONST):
                n.name = node.name


# ----------------------------------------------------------------------------------------------
# kiln graph -> MXNet graph
# ----------------------------------------------------------------------------------------------

def graph_to_mx(graph: Graph, mode: str = "numpy", params: dict | None = None,
                const_names: Iterable[str] = ()) -> tuple[MxGraph, dict]:
    """Translate a kiln graph into an MXNet graph.

    `params` (variable name -> Parameter, optional) supplies the hints parameter variables carry.
    Constant nodes become variables holding `__kiln_constant__` whose values are returned (name ->
    NumPy array) for the params file. Returns (graph, constants).
    """
    if mode not in ("numpy", "legacy"):
        raise KilnError(f"mode must be 'numpy' or 'legacy', not {mode!r}")
    from .mxnet_recurrent import prepare_graph, write_control_flow, write_rnn

    graph = prepare_graph(graph)
    params = params or {}
    nodes: list[MxNode] = []
    where: dict[Value, tuple[int, int]] = {}
    used_names: set[str] = set()
    taken = {n.name for n in graph.nodes if n.op == VAR} | set(const_names)
    constants: dict[str, _np.ndarray] = {}
    kiln_only: list[str] = []
    input_ids = {id(n) for n in graph.inputs}

    def unique(name: str) -> str:
        base, k = name, 1
        while name in used_names:
            name = f"{base}_{k}"
            k += 1
        used_names.add(name)
        return name

    # MXNet's order: each variable just before its first reader; graph inputs nobody reads lead
    order = topological_order(graph.outputs)
    reached = {id(n) for n in order}
    order = [n for n in graph.inputs if id(n) not in reached] + order
    for n in order:
        if n.op == VAR:
            hints = _var_attrs(n, params.get(n.name), id(n) in input_ids and n.name not in params)
            where[Value(n, 0)] = (len(nodes), 0)
            nodes.append(MxNode("null", unique(n.name), hints,
                                _var_hints(hints, n.name, "<export>"), []))
            continue
        if n.op == CONST:
            k = len(constants)
            cname = f"_const{k}"
            while cname in taken or cname in used_names:
                k += 1
                cname = f"_const{k}"
            value = _np.asarray(n.value)
            constants[cname] = value
            where[Value(n, 0)] = (len(nodes), 0)
            hints = _const_attrs(value)
            nodes.append(MxNode("null", unique(cname), hints,
                                _var_hints(hints, cname, "<export>"), []))
            continue
        inputs = [where[v] for v in n.inputs]
        if n.op == "rnn":  # kiln's fused recurrent layer: MXNet's RNN operator and helpers
            def emit(mx_op, attrs, entries, base):
                raw = {k: format_attr(v) for k, v in attrs.items()}
                parsed = _parse_op_attrs(mx_op, raw, f"node {base!r}", "<export>", 1)
                nodes.append(MxNode(mx_op, unique(base), raw, parsed, entries))
                return len(nodes) - 1
            for i, entry in enumerate(write_rnn(n, inputs, mode, emit)):
                where[Value(n, i)] = entry
            continue
        if n.subgraphs:  # control flow: one node holding its bodies (mxnet_recurrent.py)
            mx_op, attrs, entries, bodies = write_control_flow(n, inputs, mode)
            raw = {k: format_attr(v) for k, v in attrs.items()}
            parsed = _parse_op_attrs(mx_op, raw, f"node {n.name!r}", "<export>", 1)
            nodes.append(MxNode(mx_op, unique(n.name or mx_op), raw, parsed, entries,
                                subgraphs=bodies))
            for i in range(_ops.READERS[mx_op].num_outputs(parsed)):  # not kiln's trip count
                where[Value(n, i)] = (len(nodes) - 1, i)
            continue
        emitted = None
        writer = _ops.WRITERS.get(n.op)
        if writer is not None:
            emitted = writer(n, mode)
        name = n.name or f"{n.op}{len(nodes)}"
        if emitted is None:
            kiln_only.append(n.op)
            raw = {k: _format_kiln_literal(v) for k, v in n.attrs.items()}
            nodes.append(MxNode(_ops.KILN_PREFIX + n.op, unique(name), raw, dict(n.attrs),
                                inputs))
        else:
            for step, (mx_op, attrs) in enumerate(emitted):
                last = step == len(emitted) - 1
                raw = {k: format_attr(v) for k, v in attrs.items()}
                parsed = _parse_op_attrs(mx_op, raw, f"node {name!r}", "<export>", 1)
                aux = _ops.AUX_INPUTS.get(mx_op, ())
                versions = [1 if i in aux else 0 for i in range(len(inputs))]
                node_name = unique(name if last else f"{name}_{mx_op.strip('_').lower()}")
                nodes.append(MxNode(mx_op, node_name, raw, parsed, inputs, versions))
                inputs = [(len(nodes) - 1, 0)]
        for i in range(n.num_outputs):
            where[Value(n, i)] = (len(nodes) - 1, i)
    if kiln_only:
        warnings.warn(f"the exported graph holds kiln operators that MXNet cannot read: "
                      f"{sorted(set(kiln_only))}; kiln reads the file back, MXNet does not",
                      KilnOnlyWarning, stacklevel=3)
    heads = [where[v] for v in graph.outputs]
    return MxGraph(nodes, heads, mode == "numpy"), constants


def _var_attrs(node, param, is_data: bool) -> dict:
    if is_data:
        return {}
    aval = node.avals[0] if node.avals else None
    hints: dict[str, str] = {}
    dtype = None
    shape = None
    if aval is not None:
        shape, dtype = tuple(aval.shape), _np.dtype(aval.dtype).name
    elif param is not None:
        shape, dtype = param.shape, param.dtype.name
    elif "__shape__" in node.attrs:
        shape = node.attrs["__shape__"]
    if dtype is not None and dtype in _DTYPE_FLAG:
        hints["__dtype__"] = str(_DTYPE_FLAG[dtype])
    if param is not None:
        hints["__lr_mult__"] = format_attr(float(param.lr_mult))
    if shape is not None:
        hints["__shape__"] = format_attr(tuple(int(d) for d in shape))
    hints["__storage_type__"] = "0"
    if param is not None:
        hints["__wd_mult__"] = format_attr(float(param.wd_mult))
        if isinstance(param.init, str):
            hints["__init__"] = param.init
    return hints


def _const_attrs(value: _np.ndarray) -> dict:
    hints = {"__kiln_constant__": "True", "__shape__": format_attr(tuple(value.shape)),
             "__storage_type__": "0"}
    if value.dtype.name in _DTYPE_FLAG:
        hints["__dtype__"] = str(_DTYPE_FLAG[value.dtype.name])
    return hints


def _format_kiln_literal(v) -> str:
    """kiln's literal syntax, with arrays written in full (the IR printer abbreviates them)."""
    if isinstance(v, _np.ndarray):
        return f"array({_format_kiln_literal(v.tolist())}, dtype={v.dtype.name})"
    if isinstance(v, tuple):
        inner = ", ".join(_format_kiln_literal(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(_format_kiln_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_format_kiln_literal(k)}: {_format_kiln_literal(x)}"
                               for k, x in v.items()) + "}"
    return format_literal(v)


# ----------------------------------------------------------------------------------------------
# the public functions
# ----------------------------------------------------------------------------------------------

def symbol_to_json(sym, mode: str = "numpy") -> str:
    """A symbol's graph as MXNet symbol JSON ('numpy' or 'legacy' mode).

    Constants have no place in an MXNet file without its params; here they are written inline
    as `_kiln_constant` nodes (kiln reads them, MXNet does not). `export()` puts them in the
    params file instead.
    """
    graph = sym.graph()
    mx, constants = graph_to_mx(graph, mode)
    if constants:
        for node in mx.nodes:
            if node.is_var and node.name in constants:
                value = constants[node.name]
                node.op = _CONST_OP
                node.raw = {"value": _format_kiln_literal(value)}
                node.attrs = {"value": value}
        warnings.warn("the symbol holds constants, written inline as _kiln_constant nodes, "
                      "which MXNet cannot read", KilnOnlyWarning, stacklevel=2)
    return mx.to_json()


def symbol_from_json(text: str | bytes, source: str = "<json string>",
                     shapes: dict | None = None):
    """Read symbol JSON (kiln's or MXNet 1.x's) into a kiln `Symbol` of the predict-mode graph.

    Variables take their shapes from `shapes` (name -> shape) or, for parameters, from complete
    `__shape__` hints. Operators whose translation depends on a shape (Flatten, MXNet's reshape
    codes, SliceChannel) need their input's shape: pass `shapes` for the data inputs, or load
    the model with `SymbolBlock.imports`, which runs it on real inputs.
    """
    from ..symbol.symbol import Group, var

    graph = parse_json(text, source)
    shapes = dict(shapes or {})
    values = {}
    for node in graph.variables():
        shape = shapes.get(node.name)
        hint = node.attrs.get("shape")
        if shape is None and hint and all(d > 0 for d in hint) and node.raw.get("__shape__"):
            shape = hint
        values[node.name] = var(node.name, shape=shape, dtype=node.attrs.get("dtype"))

    def infer_param(name, node, k, in_shapes):  # a parameter's shape from its reader's rule
        spec = _ops.READERS.get(node.op)
        if spec is None or spec.params is None or name in shapes:
            return
        v = values[name]
        if v._outputs[0].aval is not None:
            return
        shape = spec.params(in_shapes, node.attrs).get(k)
        if shape is not None and all(d > 0 for d in shape):
            values[name] = var(name, shape=shape, dtype=v._outputs[0].node.attrs.get(
                "__dtype__"))

    with autograd.pause(train_mode=False):
        outs = run_graph(graph, values, infer_param)
    return outs[0] if len(outs) == 1 else Group(outs)


def load_json_file(fname) -> object:
    """Read a `*-symbol.json` file into a kiln `Symbol` (see `symbol_from_json`)."""
    return symbol_from_json(read_text(fname), os.fspath(fname))


def read_text(fname) -> str:
    source = os.fspath(fname)
    try:
        with open(fname, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise FormatError(f"{source}: cannot read ({e.strerror or e})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{source}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_mx_graph(fname) -> MxGraph:
    """Read and check a `*-symbol.json` file without running it."""
    return parse_json(read_text(fname), os.fspath(fname))
