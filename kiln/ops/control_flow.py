"""Control-flow operators: `foreach`, `while_loop` and `cond`, whose bodies are graphs.

A node of these operators holds its bodies in `Node.subgraphs` (printed nested under the node);
its attributes stay small, printable and hashable. The registry functions take the bodies first:

- ``impl(bodies, *arrays, **attrs)``: each body is a `Body`, a callable over NumPy arrays that a
  backend built from the graph (the numpy backend compiles it into a nested generated function;
  `bodies_for` does that for arrays applied outside a compiled graph). The loops live here, once.
- ``infer(graphs, *avals, **attrs)`` checks the bodies against the inputs.
- ``grad(graphs, inputs, outputs, cotangents, **attrs)`` builds the backward as control flow
  too: a loop's backward is a reverse `foreach` over per-step residuals (`kiln/graph/loop_grad.py`),
  a branch's backward a `cond` over the branches' gradients.

The user-facing fronts (`npx.foreach` ...), which run Python loops eagerly and trace the bodies
into these nodes when hybridized, are in `kiln/control_flow.py`.

Node layouts (inputs | outputs):

    foreach     [length] data... states... captures  |  stacked outputs..., final states...
    while_loop  loop_vars... captures                |  stacked outputs (max_iterations rows,
                                                        zero past the last step)..., final
                                                        loop_vars..., trip count (int64, hidden)
    cond        pred, operands...                    |  the taken branch's outputs

Body signatures: foreach's body takes (one slice of each data, states, captures) and returns
(per-step outputs, new states); while_loop's cond body and func body both take (loop_vars,
captures), returning a scalar and (per-step outputs, new loop_vars); cond's branches both take
the operands. `reverse` runs a foreach from the last step down; `has_length` gives it a
first input, a step count <= num_steps, after which it stops (the backward of a while_loop).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as _np

from ..base import DTypeError, ShapeError
from .registry import Aval, Op, format_aval

__all__ = ["Body", "bodies_for", "Foreach", "WhileLoop", "Cond"]


class Body:
    """A body ready to run: ``fn(*arrays) -> tuple of arrays`` (never one of its inputs' own
    memory), with the avals of its outputs (what a loop of zero steps still needs). It keeps no
    reference to its graph (`bodies_for` caches bodies by graph, weakly)."""

    __slots__ = ("fn", "out_avals", "source")

    def __init__(self, fn: Callable, graph, source: str = ""):
        self.fn = fn
        self.out_avals = tuple(v.aval for v in graph.outputs)
        self.source = source

    def __call__(self, *arrays) -> tuple:
        return self.fn(*arrays)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def bodies_for(graphs) -> tuple[Body, ...]:
    """The graphs compiled by the numpy backend (once per graph), for control-flow nodes applied
    to arrays outside a compiled graph (eager gradients, the interpreter)."""
    from ..backend.numpy_backend import compile_body

    out = []
    for g in graphs:
        body = _COMPILED.get(g)
        if body is None:
            body = _COMPILED[g] = compile_body(g)
        out.append(body)
    return tuple(out)


def _check(what: str, expected: Aval, got: Aval) -> None:
    if tuple(expected.shape) != tuple(got.shape) or _np.dtype(expected.dtype) != _np.dtype(
            got.dtype):
        err = DTypeError if tuple(expected.shape) == tuple(got.shape) else ShapeError
        raise err(f"{what} is {format_aval(got)}, expected {format_aval(expected)}")


def _float(aval: Aval) -> bool:
    return _np.dtype(aval.dtype).kind == "f"


# ----------------------------------------------------------------------------------------------
# foreach
# ----------------------------------------------------------------------------------------------

class Foreach(Op):
    """Run the body once per step along axis 0 of the data, carrying states (MXNet `_foreach`)."""

    name = "foreach"
    mx_name = "_foreach"
    attrs = {"num_steps": 0, "num_data": 1, "num_states": 0, "num_out_data": 1,
             "reverse": False, "has_length": False}
    inputs = ("*data",)
    has_subgraphs = True

    def num_outputs_for(*, num_steps, num_data, num_states, num_out_data, reverse, has_length):
        return num_out_data + num_states

    def impl(bodies, *arrays, num_steps, num_data, num_states, num_out_data, reverse,
             has_length):
        body = bodies[0]
        fn = body.fn
        k = 1 if has_length else 0
        n = min(int(arrays[0]), num_steps) if has_length else num_steps
        data = arrays[k:k + num_data]
        states = list(arrays[k + num_data:k + num_data + num_states])
        rest = arrays[k + num_data + num_states:]
        make = _np.empty if n == num_steps else _np.zeros  # rows past the last step stay zero
        outs = [make((num_steps,) + tuple(a.shape), a.dtype) for a in body.out_avals[:num_out_data]]
        for t in (range(n - 1, -1, -1) if reverse else range(n)):
            res = fn(*[d[t] for d in data], *states, *rest)
            for o, r in zip(outs, res):
                o[t] = r
            states = res[num_out_data:]
        if n == 0:  # never hand out an input's own memory
            states = [_np.array(s) for s in states]
        return (*outs, *states)

    def infer(graphs, *avals, num_steps, num_data, num_states, num_out_data, reverse,
              has_length):
        body = graphs[0]
        k = 1 if has_length else 0
        if has_length and (avals[0].shape != () or _np.dtype(avals[0].dtype).kind not in "iu"):
            raise ShapeError(f"foreach: the step count is {format_aval(avals[0])}, expected an "
                             "integer scalar")
        if len(body.inputs) != len(avals) - k:
            raise ShapeError(f"foreach: the body takes {len(body.inputs)} inputs, the node "
                             f"gives {len(avals) - k}")
        if len(body.outputs) != num_out_data + num_states:
            raise ShapeError(f"foreach: the body returns {len(body.outputs)} values, expected "
                             f"{num_out_data} outputs and {num_states} states")
        for i, a in enumerate(avals[k:k + num_data]):
            if not a.shape or a.shape[0] != num_steps:
                raise ShapeError(f"foreach: data {i} has shape {tuple(a.shape)}; every data "
                                 f"input is looped over along axis 0, of length {num_steps}")
            _check(f"foreach: the body's input {i} (a slice of data {i})",
                   Aval(tuple(a.shape[1:]), a.dtype), body.inputs[i].avals[0])
        for j, a in enumerate(avals[k + num_data:k + num_data + num_states]):
            _check(f"foreach: the body's input for state {j}", a,
                   body.inputs[num_data + j].avals[0])
            _check(f"foreach: state {j} comes in as {format_aval(a)} and must keep its shape "
                   "and dtype; the new state the body returns", a,
                   body.outputs[num_out_data + j].aval)
        for i, a in enumerate(avals[k + num_data + num_states:]):
            _check(f"foreach: the body's captured input {i}", a,
                   body.inputs[num_data + num_states + i].avals[0])
        outs = [Aval((num_steps,) + tuple(v.aval.shape), v.aval.dtype)
                for v in body.outputs[:num_out_data]]
        return tuple(outs) + tuple(avals[k + num_data:k + num_data + num_states])

    def linearize(graphs, inputs, attrs):
        from ..graph.loop_grad import linearize_foreach

        return linearize_foreach(graphs[0], inputs, attrs)

    def grad(graphs, inputs, outputs, cts, **attrs):
        _, backward = Foreach.linearize(graphs, inputs, attrs)
        return backward(cts)


# ----------------------------------------------------------------------------------------------
# while_loop
# ----------------------------------------------------------------------------------------------

class WhileLoop(Op):
    """Run the func body while the cond body says so, at most `max_iterations` times (MXNet
    `_while_loop`). The trip count is a hidden last output (the backward loop's length)."""

    name = "while_loop"
    mx_name = "_while_loop"
    attrs = {"max_iterations": 0, "num_loop_vars": 1, "num_out_data": 0}
    inputs = ("*data",)
    has_subgraphs = True

    def num_outputs_for(*, max_iterations, num_loop_vars, num_out_data):
        return num_out_data + num_loop_vars + 1

    def impl(bodies, *arrays, max_iterations, num_loop_vars, num_out_data):
        cond, func = bodies[0].fn, bodies[1]
        fn = func.fn
        loop_vars = list(arrays[:num_loop_vars])
        rest = arrays[num_loop_vars:]
        outs = [_np.zeros((max_iterations,) + tuple(a.shape), a.dtype)
                for a in func.out_avals[:num_out_data]]
        n = 0
        while n < max_iterations and _truth(cond(*loop_vars, *rest)[0]):
            res = fn(*loop_vars, *rest)
            for o, r in zip(outs, res):
                o[n] = r
            loop_vars = res[num_out_data:]
            n += 1
        if n == 0:
            loop_vars = [_np.array(v) for v in loop_vars]
        return (*outs, *loop_vars, _np.array(n, dtype=_np.int64))

    def infer(graphs, *avals, max_iterations, num_loop_vars, num_out_data):
        cond, func = graphs
        for what, g in (("cond", cond), ("func", func)):
            if len(g.inputs) != len(avals):
                raise ShapeError(f"while_loop: the {what} body takes {len(g.inputs)} inputs, "
                                 f"the node gives {len(avals)}")
            for i, a in enumerate(avals):
                _check(f"while_loop: the {what} body's input {i}", a, g.inputs[i].avals[0])
        if len(cond.outputs) != 1 or _size(cond.outputs[0].aval.shape) != 1:
            raise ShapeError(f"while_loop: the condition must be one value of one element, not "
                             f"{', '.join(format_aval(v.aval) for v in cond.outputs)}")
        if len(func.outputs) != num_out_data + num_loop_vars:
            raise ShapeError(f"while_loop: the func body returns {len(func.outputs)} values, "
                             f"expected {num_out_data} outputs and {num_loop_vars} loop_vars")
        for j, a in enumerate(avals[:num_loop_vars]):
            _check(f"while_loop: loop_var {j} comes in as {format_aval(a)} and must keep its "
                   "shape and dtype; the new value func returns", a,
                   func.outputs[num_out_data + j].aval)
        outs = [Aval((max_iterations,) + tuple(v.aval.shape), v.aval.dtype)
                for v in func.outputs[:num_out_data]]
        return (*outs, *avals[:num_loop_vars], Aval((), _np.dtype(_np.int64)))

    def linearize(graphs, inputs, attrs):
        from ..graph.loop_grad import linearize_while_loop

        return linearize_while_loop(graphs, inputs, attrs)

    def grad(graphs, inputs, outputs, cts, **attrs):
        _, backward = WhileLoop.linearize(graphs, inputs, attrs)
        return backward(cts)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _truth(x) -> bool:
    return bool(_np.asarray(x).reshape(()))


# ----------------------------------------------------------------------------------------------
# cond
# ----------------------------------------------------------------------------------------------

class Cond(Op):
    """The then body's outputs if `pred` (one element) is true, else the else body's (MXNet
    `_cond`). Only the taken branch runs."""

    name = "cond"
    mx_name = "_cond"
    attrs = {"num_outputs": 1}
    inputs = ("pred", "*data")
    has_subgraphs = True

    def num_outputs_for(*, num_outputs):
        return num_outputs

    def impl(bodies, pred, *operands, num_outputs):
        return tuple(bodies[0 if _truth(pred) else 1](*operands))

    def infer(graphs, pred, *avals, num_outputs):
        if _size(pred.shape) != 1:
            raise ShapeError(f"cond: the predicate must have one element, not shape "
                             f"{tuple(pred.shape)}")
        for what, g in zip(("then", "else"), graphs):
            if len(g.inputs) != len(avals):
                raise ShapeError(f"cond: the {what} branch takes {len(g.inputs)} inputs, the "
                                 f"node gives {len(avals)}")
            for i, a in enumerate(avals):
                _check(f"cond: the {what} branch's input {i}", a, g.inputs[i].avals[0])
            if len(g.outputs) != num_outputs:
                raise ShapeError(f"cond: the {what} branch returns {len(g.outputs)} values, "
                                 f"expected {num_outputs}")
        for i, (a, b) in enumerate(zip(graphs[0].outputs, graphs[1].outputs)):
            _check(f"cond: output {i} of the else branch (the then branch gives "
                   f"{format_aval(a.aval)}; both must agree)", a.aval, b.aval)
        return tuple(v.aval for v in graphs[0].outputs)

    def grad(graphs, inputs, outputs, cts, **attrs):
        from ..graph.loop_grad import cond_grad

        return cond_grad(graphs, inputs, outputs, cts)

