"""Reverse mode through control flow: loops keep per-step residuals, and run backwards.

A loop body `B(x_t, s_t, c) -> (y_t, s_{t+1})` (data slices, states, captures) is differentiated
once with `differentiate`, which splits it into

    forward  B'(x_t, s_t, c) -> (y_t, residuals_t, s_{t+1})
    backward one step of the reverse loop (below)

The loop is then linearized: the forward node runs B' and stacks the residuals like any
per-step output (a `while_loop` stacks `max_iterations` rows and reports its trip count), and the
backward is a `foreach` running the other way over those stacks:

    data     residuals_t, s_t (states the step's gradient reads), x_t (data it reads), dy_t
    states   ds (the cotangent of the state, carried), dc (the captures' gradient, summed)
    captures c (the captures the step's gradient reads)
    outputs  dx_t per step; final ds = gradient of the initial states; final dc

so `while_loop` is reverse-differentiable with a data-dependent trip count: its backward is a
foreach of `max_iterations` rows that stops after the trip count (`has_length`). Gradients of
gradients work too: the backward loop is a loop like any other.

`cond` is differentiated by recomputation: its backward is a `cond` whose branches are the
joint (forward + backward) graphs of the two branches, so nothing is stacked.

Graph autodiff calls `linearize` on each loop before its reverse sweep (the forward then keeps
the residuals the backward reads); an operator's `grad` (the eager tape, second order) calls it
on the spot, recomputing the forward with residuals.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as _np

from ..ndarray import apply
from .ir import Graph, Value, const_node, inline_graph, topological_order, var_node

__all__ = ["linearize_foreach", "linearize_while_loop", "cond_grad"]


def _float(aval) -> bool:
    return _np.dtype(aval.dtype).kind == "f"


def _as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


@dataclass
class _Split:
    """A loop body split for reverse mode (positions are body input positions)."""

    forward: Graph          # inputs as the body's; outputs: y, computed residuals, s_t, s_{t+1}
    diff: object            # the `Differentiated` body
    n_comp: int             # computed residuals stacked per step
    stacked: list[int]      # which of the body's computed residuals those are
    invariant: list[int]    # the others: loop-invariant (say, a transposed weight), recomputed
                            # in the backward step instead of stacked
    state_res: list[int]    # states whose per-step value the backward reads
    data_res: list[int]     # data whose slice the backward reads
    cap_res: list[int]      # captures the backward reads
    float_data: list[int]
    float_states: list[int]
    float_caps: list[int]


_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _split_body(body: Graph, nd: int, ns: int, ny: int) -> _Split:
    cache = _SPLITS.setdefault(body, {})
    key = (nd, ns, ny)
    if key in cache:
        return cache[key]
    from .autodiff import differentiate

    from .autodiff import _active

    n_in = len(body.inputs)
    wrt = [i for i in range(n_in) if _float(body.inputs[i].avals[0])]
    d = differentiate(body, wrt, len(body.outputs))
    primal = d.forward.outputs[:len(body.outputs)]
    computed = d.forward.outputs[len(body.outputs):]
    varying = _active(d.forward, list(range(nd + ns)))  # what changes from step to step
    stacked = [k for k, v in enumerate(computed) if id(v.node) in varying]
    invariant = [k for k, v in enumerate(computed) if id(v.node) not in varying]
    res = set(d.input_residuals)
    if invariant:  # recomputed from the captures they read
        reads = topological_order([computed[k] for k in invariant])
        res |= {p for p, n in enumerate(body.inputs) if n in reads}
    res = sorted(res)
    state_res = [p - nd for p in res if nd <= p < nd + ns]
    forward = Graph(d.forward.inputs, primal[:ny] + [computed[k] for k in stacked] +
                    [Value(body.inputs[nd + j], 0) for j in state_res] + primal[ny:])
    split = _Split(forward, d, len(stacked), stacked, invariant, state_res,
                   [p for p in res if p < nd], [p - nd - ns for p in res if p >= nd + ns],
                   [p for p in wrt if p < nd], [p - nd for p in wrt if nd <= p < nd + ns],
                   [p - nd - ns for p in wrt if p >= nd + ns])
    cache[key] = split
    return split


@dataclass
class _Step:
    graph: Graph              # one backward step (layout in the module docstring)
    ct_y: list[int]           # per-step outputs whose cotangent is fed in


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _backward_step(body: Graph, nd: int, ns: int, ny: int, present: tuple) -> _Step:
    """The body of the reverse loop, for the per-step output cotangents that are `present`."""
    cache = _STEPS.setdefault(body, {})
    key = (nd, ns, ny, present)
    if key in cache:
        return cache[key]
    split = _split_body(body, nd, ns, ny)
    d = split.diff
    ins = [n.avals[0] for n in body.inputs]
    comp = [var_node(f"residual{k}", v.aval)
            for k, v in enumerate(split.forward.outputs[ny:ny + split.n_comp])]
    s_t = [var_node(f"state{j}", ins[nd + j]) for j in split.state_res]
    x_t = [var_node(f"data{p}", ins[p]) for p in split.data_res]
    ct_y = [p for p in d.cotangent_outputs if p < ny and present[p]]
    dy = [var_node(f"d_out{p}", body.outputs[p].aval) for p in ct_y]
    ds = [var_node(f"d_state{j}", ins[nd + j]) for j in split.float_states]
    dc = [var_node(f"d_capture{c}", ins[nd + ns + c]) for c in split.float_caps]
    caps = [var_node(f"capture{c}", ins[nd + ns + c]) for c in split.cap_res]

    where = {}  # body input position -> the var standing for it in the step
    where.update((nd + j, Value(n, 0)) for j, n in zip(split.state_res, s_t))
    where.update((p, Value(n, 0)) for p, n in zip(split.data_res, x_t))
    where.update((nd + ns + c, Value(n, 0)) for c, n in zip(split.cap_res, caps))
    computed = d.forward.outputs[len(body.outputs):]
    residual = dict(zip(split.stacked, (Value(n, 0) for n in comp)))
    if split.invariant:
        feed_in = [where.get(p, Value(n, 0)) for p, n in enumerate(body.inputs)]
        again = inline_graph(Graph(d.forward.inputs, [computed[k] for k in split.invariant]),
                             feed_in)
        residual.update(zip(split.invariant, again))
    feed = [where[p] for p in d.input_residuals] + [residual[k] for k in range(len(computed))]
    dy_of = {p: Value(n, 0) for p, n in zip(ct_y, dy)}
    ds_of = {j: Value(n, 0) for j, n in zip(split.float_states, ds)}
    for p in d.cotangent_outputs:
        if p >= ny:
            feed.append(ds_of[p - ny])
        elif p in dy_of:
            feed.append(dy_of[p])
        else:  # no cotangent for this output: zeros, made inside the step rather than stacked
            aval = body.outputs[p].aval
            feed.append(Value(const_node(_np.zeros(aval.shape, aval.dtype)), 0))
    grads = dict(zip(d.wrt, inline_graph(d.backward, feed)))

    from ..symbol.symbol import Symbol

    outputs = [grads[p] for p in split.float_data]
    outputs += [grads[nd + j] for j in split.float_states]
    outputs += [(Symbol((Value(acc, 0),)) + Symbol((grads[nd + ns + c],)))._outputs[0]
                for c, acc in zip(split.float_caps, dc)]
    graph = Graph(comp + s_t + x_t + dy + ds + dc + caps, outputs)
    step = cache[key] = _Step(graph, ct_y)
    return step


def _reverse_loop(body: Graph, nd: int, ns: int, ny: int, residuals: list, data: list,
                  states: list, caps: list, cts_y: list, cts_s: list, num_steps: int,
                  reverse: bool, length: list) -> tuple[list, list, list]:
    """Run the backward loop; returns the gradients of (data, initial states, captures)."""
    from ..ops.control_flow import Foreach
    from ..ops.elementwise import zeros_like

    split = _split_body(body, nd, ns, ny)
    step = _backward_step(body, nd, ns, ny, tuple(c is not None for c in cts_y))
    data_in = residuals + [data[p] for p in split.data_res] + [cts_y[p] for p in step.ct_y]
    carried = [cts_s[j] if cts_s[j] is not None else zeros_like(states[j])
               for j in split.float_states]
    carried += [zeros_like(caps[c]) for c in split.float_caps]
    attrs = {"num_steps": num_steps, "num_data": len(data_in), "num_states": len(carried),
             "num_out_data": len(split.float_data), "reverse": not reverse,
             "has_length": bool(length)}
    out = _as_tuple(apply(Foreach, (*length, *data_in, *carried,
                                    *[caps[c] for c in split.cap_res]), attrs, (step.graph,)))
    g_data, g_states, g_caps = [None] * nd, [None] * ns, [None] * len(caps)
    for k, p in enumerate(split.float_data):
        g_data[p] = out[k]
    k0 = len(split.float_data)
    for k, j in enumerate(split.float_states):
        g_states[j] = out[k0 + k]
    k0 += len(split.float_states)
    for k, c in enumerate(split.float_caps):
        g_caps[c] = out[k0 + k]
    return g_data, g_states, g_caps


def linearize_foreach(body: Graph, inputs: list, attrs: dict):
    """(outputs, backward) of a foreach node: the forward stacks the residuals."""
    from ..ops.control_flow import Foreach

    nd, ns, ny = attrs["num_data"], attrs["num_states"], attrs["num_out_data"]
    k = 1 if attrs["has_length"] else 0
    length, data = list(inputs[:k]), list(inputs[k:k + nd])
    states, caps = list(inputs[k + nd:k + nd + ns]), list(inputs[k + nd + ns:])
    split = _split_body(body, nd, ns, ny)
    n_res = split.n_comp + len(split.state_res)
    out = _as_tuple(apply(Foreach, tuple(inputs), dict(attrs, num_out_data=ny + n_res),
                          (split.forward,)))
    primal = list(out[:ny]) + list(out[ny + n_res:])
    residuals = list(out[ny:ny + n_res])

    def backward(cts):
        g_data, g_states, g_caps = _reverse_loop(
            body, nd, ns, ny, residuals, data, states, caps, list(cts[:ny]), list(cts[ny:]),
            attrs["num_steps"], attrs["reverse"], length)
        return [None] * k + g_data + g_states + g_caps

    return primal, backward


def linearize_while_loop(graphs: tuple, inputs: list, attrs: dict):
    """(outputs, backward) of a while_loop node: the forward stacks `max_iterations` rows of
    residuals and counts its steps; the backward runs that many steps in reverse."""
    from ..ops.control_flow import WhileLoop

    cond, func = graphs
    nv, ny, m = attrs["num_loop_vars"], attrs["num_out_data"], attrs["max_iterations"]
    loop_vars, caps = list(inputs[:nv]), list(inputs[nv:])
    split = _split_body(func, 0, nv, ny)
    n_res = split.n_comp + len(split.state_res)
    out = _as_tuple(apply(WhileLoop, tuple(inputs), dict(attrs, num_out_data=ny + n_res),
                          (cond, split.forward)))
    primal = list(out[:ny]) + list(out[ny + n_res:])     # outputs, loop_vars, trip count
    residuals = list(out[ny:ny + n_res])
    count = out[-1]

    def backward(cts):
        _, g_vars, g_caps = _reverse_loop(
            func, 0, nv, ny, residuals, [], loop_vars, caps, list(cts[:ny]),
            list(cts[ny:ny + nv]), m, False, [count])
        return g_vars + g_caps

    return primal, backward


_BRANCH_GRADS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _branch_grad(branch: Graph, wrt: tuple):
    cache = _BRANCH_GRADS.setdefault(branch, {})
    if wrt not in cache:
        from .autodiff import differentiate

        cache[wrt] = differentiate(branch, list(wrt), len(branch.outputs))
    return cache[wrt]


def cond_grad(graphs: tuple, inputs: list, outputs: list, cts: list) -> list:
    """The gradient of a cond node: a cond over the two branches' joint graphs."""
    from ..ops.control_flow import Cond
    from ..ops.elementwise import zeros_like

    then, other = graphs
    wrt = tuple(i for i, n in enumerate(then.inputs) if _float(n.avals[0]))
    grads = [None] * len(inputs)
    if not wrt:
        return grads
    d_then, d_else = _branch_grad(then, wrt), _branch_grad(other, wrt)
    cts_in = [cts[p] if cts[p] is not None else zeros_like(outputs[p])
              for p in d_then.cotangent_outputs]
    out = _as_tuple(apply(Cond, (*inputs, *cts_in), {"num_outputs": len(wrt)},
                          (d_then.joint, d_else.joint)))
    for k, p in enumerate(wrt):
        grads[1 + p] = out[k]
    return grads

