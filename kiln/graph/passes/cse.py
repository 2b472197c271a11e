"""Common-subexpression elimination: one node for equal computations on equal inputs.

Random operators are never merged (two draws are two draws); constants merge when their
contents are equal.
"""

from __future__ import annotations

import numpy as _np

from ..ir import CONST, VAR, Graph, Node, Value
from ..literal import format_literal

_MAX_CONST_BYTES = 1 << 16


def _hashable(v):
    if isinstance(v, _np.ndarray):
        return ("array", v.shape, v.dtype.str, v.tobytes())
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_hashable(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, _hashable(x)) for k, x in v.items())))
    if isinstance(v, slice):
        return ("slice", v.start, v.stop, v.step)
    if isinstance(v, (float, _np.floating)):
        # by bits: 0.0 == -0.0 (x * -0.0 is not x * 0.0), and NaN != NaN
        return (type(v).__name__, _np.asarray(v).tobytes())
    try:
        hash(v)
    except TypeError:
        return ("repr", format_literal(v))
    return (type(v).__name__, v)


def _key(n: Node, inputs: list[Value]):
    if n.op == CONST:
        if n.value.nbytes > _MAX_CONST_BYTES:
            return None
        return ("const", _hashable(n.value))
    op = n.op_def
    if op is None or op.random or n.subgraphs:
        return None
    return (n.op, tuple((id(v.node), v.index) for v in inputs), _hashable(n.attrs))


def common_subexpression_elimination(graph: Graph) -> Graph:
    representative: dict = {}
    env: dict[Value, Value] = {Value(n, 0): Value(n, 0) for n in graph.inputs}
    for n in graph.nodes:
        if n.op == VAR:
            continue
        inputs = [env[v] for v in n.inputs]
        key = _key(n, inputs)
        if key is not None and key in representative:
            rep = representative[key]
            for i in range(n.num_outputs):
                env[Value(n, i)] = Value(rep, i)
            continue
        kept = n if all(a == b for a, b in zip(inputs, n.inputs)) else Node(
            n.op, inputs, n.attrs, n.avals, n.name, n.loc, n.value, n.subgraphs)
        if key is not None:
            representative[key] = kept
        for i in range(n.num_outputs):
            env[Value(n, i)] = Value(kept, i)
    return Graph(graph.inputs, [env[v] for v in graph.outputs])
