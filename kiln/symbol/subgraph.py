"""Tracing control-flow bodies: a nested trace inside the current one.

`trace_body(fn, avals)` calls `fn` on fresh variables (one per aval) and records the nodes it
creates (`BODY_NODES`, filled by `symbolic_apply`). Whatever the body reads from outside those
nodes (a parameter's variable, an input of the block, any value computed before the loop) is a
*capture*: it becomes an input of the body graph, and the control-flow node passes the outer
value in. Parameters therefore resolve to the outer graph's parameter variables, and nested
bodies capture from their enclosing body the same way. Constants are shared, not captured.
"""

from __future__ import annotations

from collections.abc import Callable

from ..base import KilnError
from ..graph.ir import CONST, VAR, Graph, Node, Value, var_node
from ..ops.registry import Aval
from .symbol import BODY_NODES, Symbol

__all__ = ["BodyTrace", "trace_body", "union_captures"]


class BodyTrace:
    """A traced body: its input variables, output values, and the outer values it captures."""

    def __init__(self, inputs: list[Node], outputs: list[Value], local: set[int]):
        self.inputs = inputs
        self.outputs = outputs
        self._local = local
        own = {id(n) for n in inputs}
        self.captures: list[Value] = []
        self._order: list[Node] = []       # the body's own nodes, producers first
        seen: set[int] = set()
        found: set[Value] = set()
        for out in outputs:
            stack = [(out, False)]
            while stack:
                v, expanded = stack.pop()
                node = v.node
                if expanded:
                    self._order.append(node)
                    continue
                if id(node) in own or node.op == CONST or id(node) in seen:
                    continue
                if id(node) not in local:      # outside the body: a capture
                    if v not in found:
                        found.add(v)
                        self.captures.append(v)
                    continue
                seen.add(id(node))
                stack.append((v, True))
                for w in reversed(node.inputs):
                    stack.append((w, False))

    def graph(self, captures: list[Value]) -> Graph:
        """The body as a graph taking its own inputs, then one input per value of `captures`
        (which must include this body's captures; bodies of one node share the list)."""
        cap_vars = {v: var_node(_capture_name(v), v.aval) for v in captures}
        missing = [v for v in self.captures if v not in cap_vars]
        if missing:
            raise KilnError("internal error: a body's captures are missing from the list")
        own = {id(n) for n in self.inputs}
        copies: dict[int, Node] = {}

        def mapped(v: Value) -> Value:
            if id(v.node) in own or v.node.op == CONST:
                return v
            if id(v.node) in copies:
                return Value(copies[id(v.node)], v.index)
            return Value(cap_vars[v], 0)

        for n in self._order:
            copies[id(n)] = Node(n.op, [mapped(v) for v in n.inputs], n.attrs, n.avals, n.name,
                                 n.loc, n.value, n.subgraphs)
        return Graph(self.inputs + [cap_vars[v] for v in captures],
                     [mapped(v) for v in self.outputs])


def _capture_name(v: Value) -> str:
    if v.node.op == VAR and v.node.name:
        return v.node.name
    return "captured"


def trace_body(fn: Callable, avals: list[Aval], names: list[str], what: str) -> tuple:
    """Call `fn(*symbols)` on new variables with `avals`; returns (its result, the input
    nodes, the set of node ids it created). `what` names the body in errors."""
    for name, a in zip(names, avals):
        if a is None:
            raise KilnError(f"{what}: the shape of {name!r} is unknown; control flow on symbols "
                            "needs inputs of known shapes (sym.var(name, shape=...))")
    inputs = [var_node(name, aval) for name, aval in zip(names, avals)]
    BODY_NODES.append(set())
    try:
        result = fn(*[Symbol((Value(n, 0),)) for n in inputs])
    finally:
        local = BODY_NODES.pop()
    return result, inputs, local


def union_captures(*bodies: BodyTrace) -> list[Value]:
    """The captures of several bodies, each once, in order of first use."""
    out: list[Value] = []
    seen: set[Value] = set()
    for b in bodies:
        for v in b.captures:
            if v not in seen:
                seen.add(v)
                out.append(v)
    return out
