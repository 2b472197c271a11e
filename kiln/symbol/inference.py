"""Shape and dtype inference over a symbol's graph (`infer_shape`, `infer_type`).

Given some input shapes, every node's output is inferred through the registry. Parameters whose
shapes were not given are inferred backwards where the operator knows how (`infer_inputs`, e.g.
a dense layer's weight from its input and `num_hidden`), as MXNet does for Gluon networks.
"""

from __future__ import annotations

import numpy as _np

from ..base import ShapeError
from ..graph.ir import CONST, VAR, Value
from ..ops.registry import REGISTRY, Aval, infer_avals


def _propagate(sym, known: dict[str, Aval]):
    graph = sym.graph()
    env: dict[Value, Aval | None] = {}
    for n in graph.nodes:
        if n.op == VAR:
            env[Value(n, 0)] = known.get(n.name, n.avals[0])
        elif n.op == CONST:
            env[Value(n, 0)] = n.avals[0]
    for _ in range(2):  # a second sweep uses what the first learnt about parameters
        for n in graph.nodes:
            if n.op in (VAR, CONST):
                continue
            op = REGISTRY[n.op]
            avals = [env.get(v) for v in n.inputs]
            hook = getattr(op, "infer_inputs", None)
            if hook is not None and any(a is None for a in avals) and avals[0] is not None:
                filled = hook(*avals, **n.attrs)
                for v, a in zip(n.inputs, filled):
                    if env.get(v) is None and a is not None:
                        env[v] = a
                avals = [env.get(v) for v in n.inputs]
            if any(a is None for a in avals):
                continue
            try:
                out = infer_avals(op, avals, n.attrs, n.subgraphs)
            except Exception as e:
                raise ShapeError(f"infer_shape: {n.op} ({n.name}): {e}") from None
            for i, a in enumerate(out):
                env[Value(n, i)] = a
    return graph, env


def _normalise(args, kwargs, sym, kind):
    known = dict(kwargs)
    if args:
        known.update(zip(sym.list_arguments(), args))
    return known


def infer_shape(sym, *args, **kwargs):
    given = _normalise(args, kwargs, sym, "shape")
    known = {k: Aval(tuple(v), _np.dtype(_np.float32)) for k, v in given.items()
             if v is not None}
    graph, env = _propagate(sym, known)

    def shape(v):
        a = env.get(v)
        return None if a is None else tuple(a.shape)

    var_of = {n.name: Value(n, 0) for n in graph.inputs}
    arg_shapes = [shape(var_of[n]) for n in sym.list_arguments()]
    aux_shapes = [shape(var_of[n]) for n in sym.list_auxiliary_states()]
    out_shapes = [shape(v) for v in sym._outputs]
    return arg_shapes, out_shapes, aux_shapes


def infer_type(sym, *args, **kwargs):
    given = _normalise(args, kwargs, sym, "type")
    graph = sym.graph()
    known = {}
    for n in graph.inputs:
        if n.name in given and n.avals[0] is not None:
            known[n.name] = Aval(n.avals[0].shape, _np.dtype(given[n.name]))
    _, env = _propagate(sym, known)

    def dtype(v):
        a = env.get(v)
        return None if a is None else _np.dtype(a.dtype).type

    var_of = {n.name: Value(n, 0) for n in graph.inputs}
    return ([dtype(var_of[n]) for n in sym.list_arguments()],
            [dtype(v) for v in sym._outputs],
            [dtype(var_of[n]) for n in sym.list_auxiliary_states()])
