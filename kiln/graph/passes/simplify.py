"""Algebraic simplification: identities that remove work without changing any value.

    x * 1, x / 1, x ** 1, x + 0, x - 0      ->  x
    -(-x)                                   ->  x
    transpose(transpose(x, a), b)           ->  transpose(x, a∘b), or x when that is the identity
    reshape(reshape(x, s), t)               ->  reshape(x, t); reshape to x's own shape -> x
    cast(x) to x's own dtype                ->  x

A rule applies only when the replacement has exactly the node's shape and dtype (so `x + 0` with
broadcasting, or an int array times 1.0, stays).
"""

from __future__ import annotations

import numpy as _np

from ..ir import Graph, Node, Value
from .rewrite import derived, rewrite

_IDENTITY_SCALARS = {
    "multiply_scalar": 1, "true_divide_scalar": 1, "power_scalar": 1,
    "add_scalar": 0, "subtract_scalar": 0,
}


def _same_aval(v: Value, n: Node) -> bool:
    a, b = v.aval, n.avals[0]
    return a is not None and b is not None and tuple(a.shape) == tuple(b.shape) and \
        _np.dtype(a.dtype) == _np.dtype(b.dtype)


def _compose(first, second, ndim: int) -> tuple:
    first = tuple(reversed(range(ndim))) if first is None else tuple(first)
    second = tuple(reversed(range(ndim))) if second is None else tuple(second)
    return tuple(first[i] for i in second)


def algebraic_simplification(graph: Graph) -> Graph:
    def visit(n: Node, inputs: list[Value]):
        if n.num_outputs != 1 or not inputs:
            return None
        x = inputs[0]
        src = x.node
        if n.op in _IDENTITY_SCALARS:
            s = n.attrs.get("scalar")
            if isinstance(s, (int, float)) and s == _IDENTITY_SCALARS[n.op] and _same_aval(x, n):
                return [x]
        elif n.op == "negative" and src.op == "negative" and _same_aval(src.inputs[0], n):
            return [src.inputs[0]]
        elif n.op == "transpose":
            ndim = len(x.aval.shape) if x.aval is not None else None
            if ndim is None:
                return None
            axes = n.attrs.get("axes")
            if src.op == "transpose":
                axes = _compose(src.attrs.get("axes"), axes, ndim)
                x = src.inputs[0]
            if axes is not None and tuple(axes) == tuple(range(ndim)):
                return [x]
            if x is not inputs[0]:
                return [Value(derived(n, "transpose", [x], {"axes": tuple(axes)}), 0)]
        elif n.op == "reshape":
            while x.node.op in ("reshape", "expand_dims", "squeeze") and x.node.num_outputs == 1:
                x = x.node.inputs[0]
            if _same_aval(x, n):
                return [x]
            if x is not inputs[0]:
                return [Value(derived(n, "reshape", [x],
                                      {"newshape": tuple(n.avals[0].shape)}), 0)]
        elif n.op == "cast" and _same_aval(x, n):
            return [x]
        return None
    return rewrite(graph, visit)
