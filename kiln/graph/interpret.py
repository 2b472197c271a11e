"""Run a graph one operator at a time through `apply`, on kiln arrays.

This is the reference semantics of a graph: compiled backends must agree with it, `verify=True`
compares against it, and because it goes through `apply`, running it under `autograd.record()`
records every operator (which is how gradients of gradients flow through compiled blocks).
A control-flow node runs its bodies compiled by the numpy backend (`apply` with `subgraphs`).
"""

from __future__ import annotations

from ..base import KilnError
from ..ndarray import apply, wrap
from ..ops.registry import REGISTRY
from .ir import CONST, VAR, Graph, Value


def interpret(graph: Graph, args, on_node=None) -> list:
    """Evaluate `graph` on `args` (one array per graph input); returns the output arrays.

    `on_node(node, outputs)` is called after each operator node, e.g. to compare values.
    """
    if len(args) != len(graph.inputs):
        raise KilnError(f"the graph takes {len(graph.inputs)} inputs, {len(args)} given")
    env: dict[Value, object] = {Value(n, 0): a for n, a in zip(graph.inputs, args)}
    for n in graph.nodes:
        if n.op == VAR:
            if Value(n, 0) not in env:
                raise KilnError(f"variable {n.name!r} has no value")
            continue
        if n.op == CONST:
            env[Value(n, 0)] = wrap(n.value)
            continue
        op = REGISTRY.get(n.op)
        if op is None:
            raise KilnError(f"unknown operator {n.op!r} in graph")
        out = apply(op, tuple(env[v] for v in n.inputs), n.attrs, n.subgraphs)
        outs = out if isinstance(out, tuple) else (out,)
        for i, o in enumerate(outs):
            env[Value(n, i)] = o
        if on_node is not None:
            on_node(n, outs)
    return [env[v] for v in graph.outputs]
