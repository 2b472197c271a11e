"""kiln's graph IR: nodes in topological order, printed as readable text, parsed back, verified.

A `Graph` is a list of `Node`s (producers before consumers), its input variables and its output
`Value`s. A node applies one registry operator (or is a graph input, `var`, or a constant,
`const`); each of its outputs is a `Value(node, index)` with an `Aval` (shape, dtype). Nodes carry
the user's source line that created them. Printed, a graph reads:

    graph(%data: f32[1,512], %0.weight: f32[256,512], %0.bias: f32[256]) {
      %1 = fully_connected(%data, %0.weight, %0.bias) {num_hidden=256, no_bias=False,
           flatten=True} : f32[1,256]   # model.py:12
      %2 = relu(%1) : f32[1,256]   # model.py:12
      return %2
    }

Passes treat graphs as values: they build new nodes rather than mutate the ones they are given.
"""

from __future__ import annotations

import math
from typing import NamedTuple
from collections.abc import Iterable

import numpy as _np

from ..base import KilnError
from ..ops.registry import REGISTRY, Aval, format_aval, infer_avals, parse_aval
from .literal import format_literal, parse_literal

__all__ = ["Node", "Value", "Graph", "GraphError", "VAR", "CONST"]

# Node kinds that are not operators. Neither may be a registry name ("var" is the variance).
VAR = "<var>"
CONST = "const"


class GraphError(KilnError):
    """A graph that breaks the IR's rules (found by the verifier or the parser)."""


class Node:
    """One operator application (or a graph input / constant) with its output avals."""

    __slots__ = ("op", "inputs", "attrs", "avals", "name", "loc", "value", "subgraphs",
                 "__weakref__")

    def __init__(self, op: str, inputs: Iterable[Value] = (), attrs: dict | None = None,
                 avals: Iterable[Aval | None] = (), name: str | None = None,
                 loc: str | None = None, value=None, subgraphs: tuple = ()):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs if attrs is not None else {}
        self.avals = tuple(avals)
        self.name = name
        self.loc = loc
        self.value = value            # the array of a `const` node
        self.subgraphs = subgraphs    # bodies of control-flow operators

    @property
    def num_outputs(self) -> int:
        return len(self.avals)

    def out(self, index: int = 0) -> Value:
        return Value(self, index)

    @property
    def op_def(self):
        """The registry class of this node's operator (None for var/const)."""
        return REGISTRY.get(self.op)

    def __repr__(self) -> str:
        return f"<Node {self.op}{' ' + self.name if self.name else ''} at {self.loc or '?'}>"


class Value(NamedTuple):
    """Output `index` of `node`."""

    node: Node
    index: int = 0

    @property
    def aval(self) -> Aval | None:
        return self.node.avals[self.index]


def var_node(name: str, aval: Aval | None, **attrs) -> Node:
    return Node(VAR, (), dict(attrs), (aval,), name=name)


def const_node(value, loc: str | None = None) -> Node:
    arr = _np.asarray(value)
    return Node(CONST, (), {}, (Aval(arr.shape, arr.dtype),), value=arr, loc=loc)


class Graph:
    """Inputs (var nodes), outputs (values) and every node in topological order."""

    def __init__(self, inputs: list[Node], outputs: list[Value], nodes: list[Node] | None = None):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.nodes = nodes if nodes is not None else topological_order(self.outputs,
                                                                       self.inputs)

    def __str__(self) -> str:
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph: {len(self.inputs)} inputs, {len(self.nodes)} nodes, " \
               f"{len(self.outputs)} outputs>"

    def op_nodes(self) -> list[Node]:
        """Nodes that compute (not inputs or constants)."""
        return [n for n in self.nodes if n.op not in (VAR, CONST)]

    def count(self, op: str) -> int:
        return sum(1 for n in self.nodes if n.op == op)

    def users(self) -> dict[Value, list[Node]]:
        """For each value, the nodes that read it (outputs are read by nobody here)."""
        out: dict[Value, list[Node]] = {}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out


def topological_order(outputs: Iterable[Value], inputs: Iterable[Node] = ()) -> list[Node]:
    """Every node the outputs depend on, producers first; graph inputs lead, in their order."""
    order: list[Node] = []
    seen: set[int] = set()
    for n in inputs:
        if id(n) not in seen:
            seen.add(id(n))
            order.append(n)
    for out in outputs:
        stack = [(out.node, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for v in reversed(node.inputs):
                if id(v.node) not in seen:
                    stack.append((v.node, False))
    return order


# ----------------------------------------------------------------------------------------------
# printing and parsing
# ----------------------------------------------------------------------------------------------

def _value_names(graph: Graph) -> dict[Value, str]:
    names: dict[Value, str] = {}
    counter = 0
    taken: set[str] = set()
    for n in graph.nodes:
        if Value(n, 0) in names:  # a node listed twice (the verifier reports it) keeps its name
            continue
        if n.op == VAR:
            name = n.name or f"in{counter}"
            if name in taken or name.isdigit():  # two variables of one name would read as one
                name = f"{name}~{len(taken)}"
            taken.add(name)
            names[Value(n, 0)] = name
            continue
        for i in range(n.num_outputs):
            counter += 1
            names[Value(n, i)] = str(counter)
    return names


def format_attr_value(v) -> str:
    return format_literal(v)


def format_graph(graph: Graph, indent: str = "") -> str:
    """The graph as text (see the module docstring); `parse_graph` reads it back."""
    names = _value_names(graph)
    params = ", ".join(f"%{names[Value(n, 0)]}: {_fmt_aval(n.avals[0])}" for n in graph.inputs)
    lines = [f"{indent}graph({params}) {{"]
    for n in graph.nodes:
        if n.op == VAR:
            if n not in graph.inputs:
                lines.append(f"{indent}  %{names[Value(n, 0)]} = var : {_fmt_aval(n.avals[0])}")
            continue
        lhs = ", ".join(f"%{names[Value(n, i)]}" for i in range(n.num_outputs))
        if n.op == CONST:
            body = f"const {{value={format_literal(n.value)}}}"
        else:
            args = ", ".join(f"%{names[v]}" for v in n.inputs)
            body = f"{n.op}({args})"
            if n.attrs:
                attrs = ", ".join(f"{k}={format_literal(v)}" for k, v in n.attrs.items())
                body += f" {{{attrs}}}"
        types = ", ".join(_fmt_aval(a) for a in n.avals)
        line = f"{indent}  {lhs} = {body} : {types}"
        if n.loc:
            line += f"   # {n.loc}"
        lines.append(line)
        for k, sub in enumerate(n.subgraphs):
            lines.append(f"{indent}    subgraph {k}:")
            lines.append(format_graph(sub, indent + "    "))
    outs = ", ".join(f"%{names[v]}" for v in graph.outputs)
    lines.append(f"{indent}  return {outs}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _fmt_aval(aval: Aval | None) -> str:
    return "?" if aval is None else format_aval(aval)


def parse_graph(text: str) -> Graph:
    """Read the text `format_graph` writes (constants must be printed in full).

    Nodes keep the order of the text, dead ones included, so that a pass's test can start from
    any graph. Attributes left out take the operator's defaults. Errors name the line.
    """
    lines = [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not lines[0].lstrip().startswith("graph(") or lines[-1].strip() != "}":
        raise GraphError("graph text must start with 'graph(...) {' and end with '}'")
    env: dict[str, Value] = {}
    inputs = []
    header = lines[0].strip()[len("graph("):]
    header = header[:header.rindex(")")]
    for part in _split_top(header, ","):
        if not part.strip():
            continue
        name, _, typ = part.partition(":")
        name = name.strip().lstrip("%")
        node = var_node(name, _parse_aval_or_none(typ))
        _define(env, name, Value(node), 1)
        inputs.append(node)
    outputs: list[Value] = []
    nodes = list(inputs)
    body = lines[1:-1]
    k = 0
    while k < len(body):
        line, lineno = body[k], k + 2
        k += 1
        if line.strip().startswith("subgraph ") and line.strip().endswith(":"):
            end = _block_end(body, k)
            if not nodes or nodes[-1].op in (VAR, CONST):
                raise GraphError(f"graph text line {lineno}: a subgraph must follow the node "
                                 "it belongs to")
            nodes[-1].subgraphs += (parse_graph("\n".join(body[k:end + 1])),)
            k = end + 1
            continue
        try:
            if line.strip().startswith("return"):
                outputs = [_lookup(env, t) for t in line.strip()[len("return"):].split(",")
                           if t.strip()]
                continue
            node, targets = _parse_node(line, env)
        except KilnError as e:
            raise GraphError(f"graph text line {lineno} ({line.strip()!r}): {e}") from None
        nodes.append(node)
        for i, t in enumerate(targets):
            _define(env, t, Value(node, i), lineno)
    return Graph(inputs, outputs, nodes)


def _block_end(lines: list[str], start: int) -> int:
    """The index of the '}' closing the 'graph(...) {' at lines[start]."""
    depth = 0
    for i in range(start, len(lines)):
        text = lines[i].strip()
        if text.startswith("graph(") and text.endswith("{"):
            depth += 1
        elif text == "}":
            depth -= 1
            if depth == 0:
                return i
    raise GraphError(f"graph text: the subgraph starting at {lines[start].strip()!r} is not "
                     "closed")


def _parse_node(line: str, env: dict) -> tuple[Node, list[str]]:
    """One `%k = op(%a, %b) {attrs} : types   # loc` line."""
    code, _, loc = line.partition("   # ")
    loc = loc.strip() or None
    lhs, _, rhs = code.strip().partition(" = ")
    body, _, types = rhs.rpartition(" : ")
    avals = [_parse_aval_or_none(t) for t in _split_top(types, ",")]
    targets = [t.strip().lstrip("%") for t in lhs.split(",")]
    body = body.strip()
    if body == "var":
        return var_node(targets[0], avals[0]), targets
    if body.startswith("const"):
        attrs = _parse_attrs(body[len("const"):].strip())
        return const_node(_np.asarray(attrs["value"], dtype=avals[0].dtype), loc), targets
    op, _, rest = body.partition("(")
    args, _, attr_text = rest.partition(")")
    node_inputs = [_lookup(env, a) for a in args.split(",") if a.strip()]
    attrs = _with_defaults(op.strip(), _parse_attrs(attr_text.strip()))
    return Node(op.strip(), node_inputs, attrs, avals, loc=loc), targets


def _with_defaults(op_name: str, attrs: dict) -> dict:
    """The operator's attributes in declaration order, defaults filled in (unknown names are
    kept, last, for the verifier to report)."""
    op = REGISTRY.get(op_name)
    if op is None:
        return attrs
    full = {k: attrs.get(k, v) for k, v in op.attrs.items()}
    full.update((k, v) for k, v in attrs.items() if k not in full)
    return full


def _define(env: dict, name: str, value: Value, lineno: int) -> None:
    if name in env:  # single assignment
        raise GraphError(f"graph text line {lineno}: %{name} is assigned twice")
    env[name] = value


def _parse_aval_or_none(text: str) -> Aval | None:
    text = text.strip()
    return None if text == "?" else parse_aval(text)


def _lookup(env: dict, token: str) -> Value:
    name = token.strip().lstrip("%")
    if name not in env:
        raise GraphError(f"graph text uses %{name} before defining it")
    return env[name]


def _split_top(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets and quotes."""
    parts, depth, current, quote = [], 0, [], None
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _parse_attrs(text: str) -> dict:
    if not text:
        return {}
    if not (text.startswith("{") and text.endswith("}")):
        raise GraphError(f"bad attribute block {text!r}")
    out = {}
    for part in _split_top(text[1:-1], ","):
        if part.strip():
            key, _, val = part.partition("=")
            out[key.strip()] = parse_literal(val.strip())
    return out


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------

def verify(graph: Graph) -> None:
    """Check the IR's rules: each node once, inputs before use, types as the registry infers.

    Raises `GraphError` naming the node and its source line.
    """
    defined: set[int] = set()
    input_ids = {id(n) for n in graph.inputs}
    for n in graph.inputs:
        if n.op != VAR:
            raise GraphError(f"graph input {n!r} is not a var node")
    names = _value_names(graph)
    for n in graph.nodes:
        where = _describe_node(n, names)
        if id(n) in defined:
            raise GraphError(f"{where} appears twice in the node list")
        for v in n.inputs:
            if id(v.node) not in defined:
                raise GraphError(f"{where} uses a value before it is defined "
                                 "(nodes out of topological order)")
            if v.index >= v.node.num_outputs:
                raise GraphError(f"{where} reads output {v.index} of a node with "
                                 f"{v.node.num_outputs} outputs")
        if n.op == VAR and id(n) not in input_ids:
            raise GraphError(f"{where}: variable {n.name!r} is used but is not a graph input")
        if n.op not in (VAR, CONST):
            _check_types(n, where)
        defined.add(id(n))
    for v in graph.outputs:
        if id(v.node) not in defined:
            raise GraphError(f"graph output from {v.node!r} is not in the node list")


def _describe_node(n: Node, names: dict) -> str:
    """'%3 = relu node at model.py:12', how the verifier names a node."""
    lhs = ", ".join(f"%{names.get(Value(n, i), '?')}" for i in range(n.num_outputs))
    op = "var" if n.op == VAR else n.op
    return f"{lhs} = {op} node{' at ' + n.loc if n.loc else ''}"


def _check_types(n: Node, where: str) -> None:
    op = REGISTRY.get(n.op)
    if op is None:
        raise GraphError(f"{where}: unknown operator {n.op!r}")
    if bool(n.subgraphs) != op.has_subgraphs:
        raise GraphError(f"{where}: {'a' if op.has_subgraphs else 'no'} control-flow operator "
                         f"with {len(n.subgraphs)} subgraphs")
    for k, sub in enumerate(n.subgraphs):
        try:
            verify(sub)
        except GraphError as e:
            raise GraphError(f"{where}, subgraph {k}: {e}") from None
    in_avals = [v.aval for v in n.inputs]
    if any(a is None for a in in_avals):
        return
    try:
        out = infer_avals(op, in_avals, n.attrs, n.subgraphs)
    except Exception as e:
        raise GraphError(f"{where}: type inference failed: {e}") from e
    if len(out) != n.num_outputs:
        raise GraphError(f"{where}: node has {n.num_outputs} outputs, the operator infers "
                         f"{len(out)}")
    for i, (a, b) in enumerate(zip(out, n.avals)):
        if b is not None and (tuple(a.shape) != tuple(b.shape) or
                              _np.dtype(a.dtype) != _np.dtype(b.dtype)):
            raise GraphError(f"{where}: output {i} is recorded as {format_aval(b)} but the "
                             f"operator infers {format_aval(a)}")


def same_value(a, b) -> bool:
    """Equality for attribute values, with arrays compared by content (NaN equal to NaN)."""
    if isinstance(a, _np.ndarray) or isinstance(b, _np.ndarray):
        a, b = _np.asarray(a), _np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and bool(
            _np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def inline_graph(graph: Graph, inputs: list[Value]) -> list[Value]:
    """Copies of `graph`'s nodes reading `inputs` in place of its input variables; returns the
    values standing for its outputs (constants are shared, not copied)."""
    env: dict[Value, Value] = {Value(n, 0): v for n, v in zip(graph.inputs, inputs)}
    for n in graph.nodes:
        if n.op == VAR:
            continue
        if n.op == CONST:
            env[Value(n, 0)] = Value(n, 0)
            continue
        copy = Node(n.op, [env[v] for v in n.inputs], n.attrs, n.avals, n.name, n.loc, n.value,
                    n.subgraphs)
        for i in range(n.num_outputs):
            env[Value(n, i)] = Value(copy, i)
    return [env[v] for v in graph.outputs]
