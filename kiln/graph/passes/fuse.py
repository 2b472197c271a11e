"""Fusion: fewer, larger nodes.

- `fuse_dense_activation`: fully_connected whose only reader is an activation becomes one
  `fused_dense` node (matrix product, bias and activation in one pass over the output).
- `fuse_elementwise`: a chain of elementwise operators, each read only by the next, becomes one
  `fused_elementwise` node (one loop in native code; one buffer, updated in place, in NumPy).
"""

from __future__ import annotations

from ...ops.fused import BINARY_CHAIN_OPS, SCALAR_CHAIN_OPS, UNARY_CHAIN_OPS
from ..ir import Graph, Node, Value
from .rewrite import derived, rewrite

_ACTIVATIONS = ("relu", "sigmoid", "tanh", "softrelu", "softsign")


def _readers(graph: Graph) -> dict[Value, int]:
    count: dict[Value, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            count[v] = count.get(v, 0) + 1
    for v in graph.outputs:
        count[v] = count.get(v, 0) + 1
    return count


def fuse_dense_activation(graph: Graph) -> Graph:
    readers = _readers(graph)

    def visit(n: Node, inputs: list[Value]):
        if n.op not in _ACTIVATIONS or not inputs:
            return None
        # Count readers in the graph as given; build from the node as rewritten so far.
        if n.inputs[0].node.op != "fully_connected" or readers.get(n.inputs[0], 0) != 1:
            return None
        src = inputs[0].node
        attrs = dict(src.attrs, act_type=n.op)
        fused = derived(n, "fused_dense", src.inputs, attrs, n.avals)
        fused.loc = src.loc or n.loc
        return [Value(fused, 0)]
    return rewrite(graph, visit)


def _chain_step(n: Node, acc: Value, extras: list[Value]):
    """The program step for node `n` applied to the running value `acc`, or None."""
    if n.op in UNARY_CHAIN_OPS:
        return (n.op, None)
    if n.op in SCALAR_CHAIN_OPS:
        return (n.op, ("scalar", n.attrs["scalar"]))
    if n.op in BINARY_CHAIN_OPS and len(n.inputs) == 2:
        side = "rhs" if n.inputs[0] == acc else "lhs"
        other = n.inputs[1] if side == "rhs" else n.inputs[0]
        if other == acc:
            return None
        a, o = n.avals[0], other.aval
        if a is None or o is None or len(o.shape) > len(a.shape):
            return None
        if any(od not in (1, ad) for od, ad in zip(reversed(o.shape), reversed(a.shape))):
            return None
        extras.append(other)
        return (n.op, ("input", len(extras) - 1, side))
    return None


def fuse_elementwise(graph: Graph) -> Graph:
    readers = _readers(graph)
    # Find chains: a node continues the chain of its first elementwise input when that input has
    # exactly one reader and the same shape and dtype.
    chain_of: dict[int, list[Node]] = {}
    head_of: dict[int, Node] = {}
    for n in graph.nodes:
        if not _fusable(n):
            continue
        prev = _chain_input(n)
        if (prev is not None and id(prev.node) in head_of and readers.get(prev, 0) == 1
                and prev.aval == n.avals[0]):
            head = head_of[id(prev.node)]
            chain_of[id(head)].append(n)
            head_of[id(n)] = head
        else:
            chain_of[id(n)] = [n]
            head_of[id(n)] = n
    tails = {id(chain[-1]): chain for chain in chain_of.values() if len(chain) >= 2}
    if not tails:
        return graph

    def visit(n: Node, inputs: list[Value]):
        chain = tails.get(id(n))
        if chain is None:
            return None
        # Rebuild the chain's program from the original nodes; map their external inputs.
        first = chain[0]
        start = _chain_input(first)
        extras: list[Value] = []
        program = []
        acc = start
        for m in chain:
            step = _chain_step(m, acc, extras)
            program.append(step)
            acc = Value(m, 0)
        mapped = [_mapped(v) for v in [start] + extras]
        fused = derived(n, "fused_elementwise", mapped, {"program": tuple(program)}, n.avals)
        fused.loc = first.loc
        return [Value(fused, 0)]

    # Old value -> its counterpart in the graph being built (for the chain's external inputs).
    mapping: dict[Value, Value] = {}

    def _mapped(v: Value) -> Value:
        return mapping.get(v, v)

    def record(n: Node, inputs: list[Value]):
        mapping.update(zip(n.inputs, inputs))
        return visit(n, inputs)

    return rewrite(graph, record)


def _fusable(n: Node) -> bool:
    if n.num_outputs != 1 or n.avals[0] is None:
        return False
    if n.op in UNARY_CHAIN_OPS or n.op in SCALAR_CHAIN_OPS:
        return True
    if n.op not in BINARY_CHAIN_OPS:
        return False
    start = _chain_input(n)
    return start is not None and _chain_step(n, start, []) is not None


def _chain_input(n: Node) -> Value | None:
    """The input a chain would flow through: for binary nodes, one with the output's shape."""
    if not n.inputs:
        return None
    if n.op in BINARY_CHAIN_OPS:
        for v in n.inputs:
            if v.aval == n.avals[0]:
                return v
        return None
    return n.inputs[0]
