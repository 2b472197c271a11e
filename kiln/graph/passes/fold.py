"""Constant folding: evaluate at compile time every node whose inputs are all constants.

A traced `fancy_func(1, 2, 3, 4)` thus becomes the single constant 10, as the chapter says.
Random operators are never folded.
"""

from __future__ import annotations

import numpy as _np

from ..ir import CONST, Graph, Node, Value, const_node
from .rewrite import rewrite

# Folding must not turn a cheap broadcast into a huge constant.
_MAX_FOLDED_BYTES = 1 << 24


def constant_folding(graph: Graph) -> Graph:
    def visit(n: Node, inputs: list[Value]):
        op = n.op_def
        if op is None or op.random or n.subgraphs or not inputs:
            return None
        if not all(v.node.op == CONST for v in inputs):
            return None
        if any(a is None or _np.prod(a.shape) * _np.dtype(a.dtype).itemsize > _MAX_FOLDED_BYTES
               for a in n.avals):
            return None
        with _np.errstate(all="ignore"):
            out = op.impl(*[v.node.value for v in inputs], **n.attrs)
        outs = out if isinstance(out, tuple) else (out,)
        return [Value(const_node(_np.array(o, dtype=a.dtype if a is not None else None),
                                 n.loc), 0) for o, a in zip(outs, n.avals)]
    return rewrite(graph, visit)
