"""The one way passes change graphs: walk the nodes in order and replace some of them."""

from __future__ import annotations

from collections.abc import Callable

from ..ir import VAR, Graph, Node, Value


def rewrite(graph: Graph, visit: Callable[[Node, list[Value]], list[Value] | None]) -> Graph:
    """A new graph where `visit(node, new_inputs)` may replace each node.

    `visit` returns None to keep the node (re-created only if its inputs changed), or one value
    per output of the node to use instead. Nodes nobody reads any more drop out.
    """
    env: dict[Value, Value] = {Value(n, 0): Value(n, 0) for n in graph.inputs}
    for n in graph.nodes:
        if n.op == VAR:
            continue
        new_inputs = [env[v] for v in n.inputs]
        replacement = visit(n, new_inputs)
        if replacement is None:
            if all(a == b for a, b in zip(new_inputs, n.inputs)):
                kept = n
            else:
                kept = Node(n.op, new_inputs, n.attrs, n.avals, n.name, n.loc, n.value,
                            n.subgraphs)
            for i in range(n.num_outputs):
                env[Value(n, i)] = Value(kept, i)
        else:
            for i, v in enumerate(replacement):
                env[Value(n, i)] = v
    return Graph(graph.inputs, [env[v] for v in graph.outputs])


def derived(node: Node, op: str, inputs, attrs, avals=None) -> Node:
    """A new node standing where `node` stood (same name and source line)."""
    return Node(op, inputs, attrs, avals if avals is not None else node.avals, node.name,
                node.loc)


def build(op_name: str, inputs, attrs: dict, like: Node | None = None) -> Value:
    """A new node of registry operator `op_name` with inferred output types (first output),
    attributed to `like`'s source line.

    It gets no name: a name says which traced node a node stands for (verify=True compares
    values by name), and a helper computation stands for none.
    """
    from ...ops.registry import REGISTRY, infer_avals

    op = REGISTRY[op_name]
    full = op.full_attrs(attrs)
    avals = infer_avals(op, [v.aval for v in inputs], full)
    node = Node(op_name, inputs, full, avals, None, like.loc if like else None)
    return Value(node, 0)


def map_subgraphs(graph: Graph, fn: Callable[[Graph], Graph]) -> Graph:
    """A new graph whose control-flow nodes hold `fn(body)` instead of each body.

    A body keeps its inputs and outputs (passes never change a graph's signature), so the node
    stays valid.
    """
    if not any(n.subgraphs for n in graph.nodes):
        return graph

    def visit(n: Node, inputs: list[Value]):
        if not n.subgraphs:
            return None
        bodies = tuple(fn(g) for g in n.subgraphs)
        node = Node(n.op, inputs, n.attrs, n.avals, n.name, n.loc, n.value, bodies)
        return [Value(node, i) for i in range(n.num_outputs)]
    return rewrite(graph, visit)


def recursive(fn: Callable[[Graph], Graph]) -> Callable[[Graph], Graph]:
    """`fn` run on every body (innermost first) and then on the graph itself."""
    def run(graph: Graph) -> Graph:
        return fn(map_subgraphs(graph, run))
    return run
