"""Symbolic control flow: `npx.foreach`, `npx.while_loop` and `npx.cond` (MXNet 2 signatures).

Eagerly they are the Python loop or branch they describe, recorded by autograd op by op. On
symbols (a hybridized forward, `kiln.jit`, `sym.var` graphs) each becomes one graph node whose
bodies are traced once into subgraphs (`kiln/symbol/subgraph.py`), compiled as nested functions
and differentiated in reverse mode (`kiln/ops/control_flow.py`, `kiln/graph/loop_grad.py`).

    >>> def step(x_t, states):                 # one step of a recurrence
    ...     h = np.tanh(x_t + states[0])
    ...     return h, [h]
    >>> outs, [h] = npx.foreach(step, x, [h0])  # outs stacks h over axis 0 of x

Python control flow in a hybridized forward: `if`/`while` on a symbol's value raises an error
naming these operators; `for` over a Python range (or over a symbol's first axis, whose length is
known) unrolls into one copy of the body per step, which is fine for short fixed loops.

Differences from Python worth knowing: `while_loop` stacks `max_iterations` rows of each
per-step output (rows past the last step are zero, eagerly too); a loop state must keep its
shape and dtype; both branches of `cond` must return the same shapes and dtypes. A loop of zero
steps still knows its outputs' shapes: the body is traced once on symbols to find them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as _np

from . import ndarray as _nd
from .base import DTypeError, KilnError, ShapeError, default_dtype
from .ndarray import apply, ndarray, wrap
from .ops import joining as _join
from .ops.control_flow import Cond, Foreach, WhileLoop
from .ops.registry import Aval, format_aval

__all__ = ["foreach", "while_loop", "cond"]


# ----------------------------------------------------------------------------------------------
# nested lists of arrays
# ----------------------------------------------------------------------------------------------

def _flatten(x, leaves: list):
    """Append the leaves of nested lists/tuples to `leaves`; returns the structure."""
    if isinstance(x, (list, tuple)):
        return (type(x), [_flatten(e, leaves) for e in x])
    leaves.append(x)
    return None


def flatten(x) -> tuple[list, object]:
    leaves: list = []
    return leaves, _flatten(x, leaves)


def unflatten(tree, leaves):
    it = iter(leaves)

    def build(t):
        if t is None:
            return next(it)
        kind, items = t
        return kind(build(s) for s in items)
    return build(tree)


def _is_symbol(x) -> bool:
    return getattr(x, "_kiln_symbolic", False)


def _symbolic(values) -> bool:
    hook = _nd.tracing_hook
    return any(_is_symbol(v) for v in values) or (hook is not None and hook.active())


def _array(x, what: str) -> ndarray:
    if isinstance(x, ndarray):
        return x
    if isinstance(x, (_np.ndarray, list, tuple, int, float, bool, _np.generic)):
        arr = _np.asarray(x)
        if arr.dtype == _np.float64 and not isinstance(x, _np.ndarray):
            arr = arr.astype(default_dtype)
        return wrap(arr)
    raise KilnError(f"{what}: expected arrays, not {type(x).__name__}")


def _symbol(x, what: str):
    from .symbol.symbol import Symbol, constant

    if isinstance(x, Symbol):
        if len(x._outputs) != 1:
            raise KilnError(f"{what}: a group of {len(x._outputs)} symbols; pick one with sym[i]")
        return x
    return constant(_array(x, what))


def _where() -> str:
    from .symbol.symbol import user_location

    loc = user_location(3)
    return f" (at {loc})" if loc else ""


def _check_states(what: str, old: list, new: list) -> None:
    """A loop state keeps its count, shape and dtype (the compiled loop reuses its slots)."""
    if len(new) != len(old):
        raise KilnError(f"{what}: the body returns {len(new)} states for {len(old)} initial "
                        f"states{_where()}")
    for j, (a, b) in enumerate(zip(old, new)):
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            err = ShapeError if tuple(a.shape) != tuple(b.shape) else DTypeError
            raise err(f"{what}: state {j} comes in as {format_aval(Aval(a.shape, a.dtype))} "
                      f"and the body returns {format_aval(Aval(b.shape, b.dtype))}{_where()}; a "
                      "loop state must keep its shape and dtype")


def _pair(res, what: str) -> tuple:
    """(outputs, new_states) from a body; either part may be None (nothing)."""
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        raise KilnError(f"{what} must return a pair (outputs, new_states), not "
                        f"{type(res).__name__}{_where()}")
    return ([] if res[0] is None else res[0]), ([] if res[1] is None else res[1])


def _steps(data: list, what: str) -> int:
    lengths = {tuple(d.shape)[:1] for d in data}
    if any(not d.shape for d in data):
        raise ShapeError(f"{what}: data must have at least one axis to loop over{_where()}")
    if len(lengths) != 1:
        raise ShapeError(f"{what}: every data array is looped over along axis 0, but their "
                         f"lengths differ: {[d.shape[0] for d in data]}{_where()}")
    return data[0].shape[0]


def _traced_outputs(fn: Callable, avals: list, names: list, what: str):
    """Trace `fn` on symbols of `avals` and hand back its flat outputs (as symbols)."""
    from .symbol.subgraph import BodyTrace, trace_body

    flat, inputs, local = trace_body(fn, avals, names, what)
    flat = [_symbol(x, what) for x in flat]
    return BodyTrace(inputs, [x._outputs[0] for x in flat], local), flat


def _zeros(aval: Aval, rows: int) -> ndarray:
    return wrap(_np.zeros((rows,) + tuple(aval.shape), aval.dtype))


# ----------------------------------------------------------------------------------------------
# foreach
# ----------------------------------------------------------------------------------------------

def foreach(body: Callable, data, init_states):
    """Loop `body` over axis 0 of `data`, carrying states; returns (outputs, final states).

    `body(data_t, states) -> (outputs_t, new_states)`, with `data_t` one slice of `data` (an
    array or a list of arrays, each of the same length) and `states` shaped as `init_states`.
    The outputs are stacked over the steps. As MXNet's `npx.foreach`.
    """
    what = "foreach"
    d_leaves, d_tree = flatten(data)
    s_leaves, s_tree = flatten(init_states)
    if not d_leaves:
        raise KilnError(f"foreach: data must hold at least one array{_where()}")
    if _symbolic(d_leaves + s_leaves):
        return _foreach_traced(body, d_leaves, d_tree, s_leaves, s_tree)
    data_arrays = [_array(d, what) for d in d_leaves]
    states = [_array(s, what) for s in s_leaves]
    steps = _steps(data_arrays, what)
    per_step, out_tree = [], None
    for t in range(steps):
        out, new_states = _pair(body(unflatten(d_tree, [d[t] for d in data_arrays]),
                                     unflatten(s_tree, states)), "foreach: the body")
        out_leaves, out_tree = flatten(out)
        new_leaves = [_array(s, what) for s in flatten(new_states)[0]]
        _check_states(what, states, new_leaves)
        per_step.append([_array(o, what) for o in out_leaves])
        states = new_leaves
    if steps == 0:  # the body never ran: trace it once to know what it returns
        holder = [None]

        def flat(*args):
            out, _ = _pair(body(unflatten(d_tree, args[:len(d_leaves)]),
                                unflatten(s_tree, args[len(d_leaves):])), what)
            leaves, holder[0] = flatten(out)
            return leaves
        _, outs = _traced_outputs(flat, [Aval(d.shape[1:], d.dtype) for d in data_arrays] +
                                  [Aval(s.shape, s.dtype) for s in states],
                                  _names("slice", data_arrays) + _names("state", states), what)
        out_tree = holder[0]
        stacked = [_zeros(o._aval, 0) for o in outs]
    else:
        stacked = [_join.stack([step[i] for step in per_step]) for i in range(len(per_step[0]))]
    return unflatten(out_tree, stacked), unflatten(s_tree, states)


def _names(prefix: str, values: list) -> list[str]:
    return [f"{prefix}{i}" for i in range(len(values))]


def _foreach_traced(body, d_leaves, d_tree, s_leaves, s_tree):
    what = "foreach"
    data = [_symbol(d, what) for d in d_leaves]
    states = [_symbol(s, what) for s in s_leaves]
    steps = _steps(data, what)
    nd = len(data)
    info = {}

    def flat(*args):
        out, new_states = _pair(body(unflatten(d_tree, args[:nd]), unflatten(s_tree, args[nd:])),
                                "foreach: the body")
        out_leaves, info["tree"] = flatten(out)
        new_leaves = [_symbol(s, what) for s in flatten(new_states)[0]]
        _check_states(what, states, new_leaves)
        info["n_out"] = len(out_leaves)
        return out_leaves + new_leaves

    trace, _ = _traced_outputs(flat, [Aval(d.shape[1:], d.dtype) for d in data] +
                               [Aval(s.shape, s.dtype) for s in states],
                               _names("slice", data) + _names("state", states), what)
    graph = trace.graph(trace.captures)
    attrs = {"num_steps": steps, "num_data": nd, "num_states": len(states),
             "num_out_data": info["n_out"], "reverse": False, "has_length": False}
    outs = _as_tuple(apply(Foreach, (*data, *states, *_captured(trace.captures)), attrs,
                           (graph,)))
    n_out = info["n_out"]
    return unflatten(info["tree"], outs[:n_out]), unflatten(s_tree, outs[n_out:])


def _as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def _captured(values) -> list:
    from .symbol.symbol import Symbol

    return [Symbol((v,)) for v in values]


# ----------------------------------------------------------------------------------------------
# while_loop
# ----------------------------------------------------------------------------------------------

def while_loop(cond: Callable, func: Callable, loop_vars, max_iterations: int | None = None):
    """Run `func` while `cond` holds, at most `max_iterations` times; returns
    (stacked outputs, final loop_vars).

    `cond(*loop_vars)` gives a one-element array (or a bool); `func(*loop_vars)` gives
    `(step_output, new_loop_vars)`. Each output is stacked into `max_iterations` rows, the rows
    past the last step being zero. Gradients flow through the steps actually run, in reverse
    mode too. As MXNet's `npx.while_loop`.
    """
    what = "while_loop"
    if max_iterations is None:
        raise KilnError(f"while_loop: max_iterations is required: it bounds the loop, its "
                        f"stacked outputs and its backward pass{_where()}")
    m = int(max_iterations)
    if m < 0:
        raise KilnError(f"while_loop: max_iterations must be >= 0, not {m}{_where()}")
    single = not isinstance(loop_vars, (list, tuple))
    top = [loop_vars] if single else list(loop_vars)
    leaves, tree = flatten(top)
    if not leaves:
        raise KilnError(f"while_loop: loop_vars must hold at least one array{_where()}")

    def finish(outputs, final):
        final = unflatten(tree, final)
        return outputs, (final[0] if single else final)

    if _symbolic(leaves):
        return finish(*_while_loop_traced(cond, func, leaves, tree, m))
    values = [_array(v, what) for v in leaves]
    per_step, out_tree, steps = [], None, 0
    while steps < m and _truth(cond(*unflatten(tree, values)), what):
        out, new = _func_result(func(*unflatten(tree, values)))
        out_leaves, out_tree = flatten(out)
        new_leaves = [_array(v, what) for v in flatten(new)[0]]
        _check_states(what, values, new_leaves)
        per_step.append([_array(o, what) for o in out_leaves])
        values = new_leaves
        steps += 1
    if steps == 0:  # func never ran: trace it once to know what it returns
        holder = [None]

        def flat(*args):
            out, _ = _func_result(func(*unflatten(tree, args)))
            leaves_out, holder[0] = flatten(out)
            return leaves_out
        _, outs = _traced_outputs(flat, [Aval(v.shape, v.dtype) for v in values],
                                  _names("loop_var", values), what)
        out_tree = holder[0]
        stacked = [_zeros(o._aval, m) for o in outs]
    else:
        stacked = []
        for i in range(len(per_step[0])):
            rows = _join.stack([step[i] for step in per_step])
            if steps < m:
                pad = _zeros(Aval(rows.shape[1:], rows.dtype), m - steps)
                rows = _join.concatenate([rows, pad], axis=0)
            stacked.append(rows)
    return finish(unflatten(out_tree, stacked), values)


def _func_result(res) -> tuple:
    return _pair(res, "while_loop: func")


def _truth(pred, what: str) -> bool:
    if isinstance(pred, (bool, int, _np.bool_)):
        return bool(pred)
    if _is_symbol(pred):
        raise KilnError(f"{what}: the condition is a symbol, but the loop runs eagerly{_where()}")
    arr = _np.asarray(pred._data if isinstance(pred, ndarray) else pred)
    if arr.size != 1:
        raise ShapeError(f"{what}: the condition must have one element, not shape "
                         f"{arr.shape}{_where()}")
    return bool(arr.reshape(()))


def _while_loop_traced(cond, func, leaves, tree, m):
    from .symbol.subgraph import union_captures

    what = "while_loop"
    values = [_symbol(v, what) for v in leaves]
    avals = [Aval(v.shape, v.dtype) for v in values]
    names = _names("loop_var", values)
    cond_trace, _ = _traced_outputs(lambda *a: [cond(*unflatten(tree, a))], avals, names,
                                    "while_loop: cond")
    info = {}

    def flat(*args):
        out, new = _func_result(func(*unflatten(tree, args)))
        out_leaves, info["tree"] = flatten(out)
        new_leaves = [_symbol(v, what) for v in flatten(new)[0]]
        _check_states(what, values, new_leaves)
        info["n_out"] = len(out_leaves)
        return out_leaves + new_leaves

    func_trace, _ = _traced_outputs(flat, avals, names, "while_loop: func")
    captures = union_captures(cond_trace, func_trace)
    attrs = {"max_iterations": m, "num_loop_vars": len(values), "num_out_data": info["n_out"]}
    outs = _as_tuple(apply(WhileLoop, (*values, *_captured(captures)), attrs,
                           (cond_trace.graph(captures), func_trace.graph(captures))))
    n = info["n_out"]
    return unflatten(info["tree"], outs[:n]), list(outs[n:n + len(values)])


# ----------------------------------------------------------------------------------------------
# cond
# ----------------------------------------------------------------------------------------------

def cond(pred, then_func: Callable, else_func: Callable, inputs=None):
    """`then_func(*inputs)` if `pred` is true, else `else_func(*inputs)`.

    `pred` is a one-element array (or a function of the inputs giving one). Hybridized, both
    branches are traced and must return the same shapes and dtypes; only the taken one runs.
    As MXNet's `npx.cond`.
    """
    what = "cond"
    operands = [] if inputs is None else (list(inputs) if isinstance(inputs, (list, tuple))
                                          else [inputs])
    if callable(pred) and not isinstance(pred, ndarray) and not _is_symbol(pred):
        pred = pred(*operands)
    if not _is_symbol(pred):  # the branch is known now (eagerly, or a constant while tracing)
        return then_func(*operands) if _truth(pred, what) else else_func(*operands)
    from .symbol.subgraph import union_captures

    leaves, tree = flatten(operands)
    values = [_symbol(v, what) for v in leaves]
    avals = [Aval(v.shape, v.dtype) for v in values]
    trees = []

    def branch(fn):
        def flat(*args):
            out_leaves, out_tree = flatten(fn(*unflatten(tree, args)))
            trees.append(out_tree)
            return out_leaves
        return flat

    then_trace, then_outs = _traced_outputs(branch(then_func), avals, _names("input", values),
                                            "cond: then_func")
    else_trace, else_outs = _traced_outputs(branch(else_func), avals, _names("input", values),
                                            "cond: else_func")
    if len(then_outs) != len(else_outs) or trees[0] != trees[1]:
        raise KilnError(f"cond: the branches return different structures ({len(then_outs)} "
                        f"and {len(else_outs)} values){_where()}")
    for i, (a, b) in enumerate(zip(then_outs, else_outs)):
        if a._aval != b._aval:
            raise ShapeError(f"cond: output {i} is {format_aval(a._aval)} in the then branch but "
                             f"{format_aval(b._aval)} in the else branch{_where()}; both "
                             "branches must return the same shapes and dtypes")
    captures = union_captures(then_trace, else_trace)
    outs = _as_tuple(apply(Cond, (pred, *values, *_captured(captures)),
                           {"num_outputs": len(then_outs)},
                           (then_trace.graph(captures), else_trace.graph(captures))))
    return unflatten(trees[0], outs)
