"""Tracing: run Python code on symbols and collect the graph it builds.

`trace(fn, example_args)` calls `fn` with one symbolic variable per array argument (with the
argument's concrete shape, as MXNet 2 does), while

- every `Parameter.data()` returns a variable for that parameter (created on first use),
- sampling operators (`np.random.*`, dropout) become nodes drawn afresh at every run,
- `assign(state, value)` (BatchNorm's running statistics) becomes an extra graph output that the
  caller writes back after each run,
- autograd recording is off, and the train/predict mode is what the caller set.

The result is a `Traced` record: the graph (inputs: the arguments, then the parameters; outputs:
the function's results, then the state updates) and what is needed to call it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as _np

from .. import autograd
from .. import ndarray as _nd
from ..base import KilnError
from ..graph.ir import CONST, VAR, Graph, Node, Value, const_node, var_node
from ..ops.registry import Aval
from .symbol import BODY_NODES, Symbol, user_location

__all__ = ["trace", "Traced", "current_scope", "active_trace"]


class _Trace:
    """The state of one trace in progress."""

    def __init__(self):
        self.params: dict[int, tuple[object, Node]] = {}   # id(Parameter) -> (param, var node)
        self.updates: dict[int, tuple[object, Value]] = {}  # id(var node) -> (param, new value)
        self.scopes: list[str] = []
        self.counters: dict[str, itertools.count] = {}

    def param_symbol(self, param) -> Symbol:
        entry = self.params.get(id(param))
        if entry is None:
            if param._data is None:
                raise param._uninitialized_error()
            data = param._data._data
            node = var_node(param.full_name, Aval(data.shape, data.dtype))
            entry = (param, node)
            self.params[id(param)] = entry
        return Symbol((Value(entry[1], 0),))

    def assign(self, target, value) -> None:
        if not isinstance(target, Symbol) or target._outputs[0].node.op != VAR:
            raise KilnError("while tracing, only a parameter's state (e.g. BatchNorm's running "
                            "statistics) can be assigned in place")
        node = target._outputs[0].node
        owner = next((p for p, n in self.params.values() if n is node), None)
        if owner is None:
            raise KilnError(f"cannot assign to {node.name!r} while tracing: it is not a "
                            "parameter of the traced block")
        if not isinstance(value, Symbol):
            value = Symbol((Value(const_node(_nd.asarray_input(
                value._data if isinstance(value, _nd.ndarray) else value)), 0),))
        self.updates[id(node)] = (owner, value._outputs[0])

    def name(self, op_name: str) -> str:
        scope = "_".join(self.scopes)
        key = f"{scope}_{op_name}" if scope else op_name
        counter = self.counters.setdefault(key, itertools.count())
        return f"{key}{next(counter)}"


class _Hook:
    """What kiln.ndarray and kiln.ops consult to find out whether a trace is running."""

    def __init__(self):
        self.stack: list[_Trace] = []

    def active(self) -> bool:
        return bool(self.stack)

    def nullary(self, op, attrs) -> Symbol:
        full = op.full_attrs(attrs)
        out = op.infer(**full)
        avals = (out,) if isinstance(out, Aval) else tuple(out)
        node = Node(op.name, (), full, avals, loc=user_location(3), name=current_scope(op.name))
        if BODY_NODES:
            BODY_NODES[-1].add(id(node))
        return Symbol((Value(node, 0),))

    def assign(self, target, value) -> None:
        if BODY_NODES:
            raise KilnError(
                f"in-place state updates (such as BatchNorm's running statistics in training "
                f"mode) are not supported inside a control-flow body (at {user_location(3)}); "
                "use the layer outside the loop, or in predict mode")
        if not self.stack:
            raise KilnError("assigning a symbol into an array outside a trace")
        self.stack[-1].assign(target, value)


HOOK = _Hook()
_GLOBAL_COUNTERS: dict[str, itertools.count] = {}


def active_trace() -> _Trace | None:
    return HOOK.stack[-1] if HOOK.stack else None


def current_scope(op_name: str) -> str:
    """A readable, unique node name: '<block scopes>_<op><k>' while tracing, '<op><k>' else."""
    t = active_trace()
    if t is not None:
        return t.name(op_name)
    counter = _GLOBAL_COUNTERS.setdefault(op_name, itertools.count())
    return f"{op_name}{next(counter)}"


class scope:
    """Name the nodes a block creates after the block (`dense0_fully_connected0`)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        t = active_trace()
        if t is not None:
            t.scopes.append(self.name)
        return self

    def __exit__(self, *exc):
        t = active_trace()
        if t is not None and t.scopes and t.scopes[-1] == self.name:
            t.scopes.pop()
        return False


class parameter_symbols:
    """While a block is called on symbols outside a trace (`net(sym.var('data'))`), its
    parameters are variables of the graph, named by their structured names, as in MXNet (not
    constants holding today's values); BatchNorm's running statistics become auxiliary
    states."""

    def __enter__(self):
        from ..gluon.parameter import Parameter

        self.trace = None if HOOK.stack else _Trace()
        if self.trace is not None:
            HOOK.stack.append(self.trace)
            self.previous, Parameter._tracer = Parameter._tracer, self.trace
        return self

    def __exit__(self, *exc):
        from ..gluon.parameter import Parameter

        if self.trace is not None:
            HOOK.stack.pop()
            Parameter._tracer = self.previous
        return False


@dataclass
class Traced:
    """A traced function: its graph and how to call it."""

    graph: Graph
    num_args: int                     # graph.inputs[:num_args] are the arguments
    params: list                      # Parameters, in the order of graph.inputs[num_args:]
    num_outputs: int                  # graph.outputs[:num_outputs] are the results
    state_targets: list               # Parameters written from graph.outputs[num_outputs:]
    out_tree: object = None           # how to rebuild the result's structure
    static: dict = field(default_factory=dict)


def _flatten(out, values: list):
    """Flatten nested tuples/lists of symbols into `values`; returns the structure."""
    if isinstance(out, Symbol):
        if len(out._outputs) == 1:
            values.append(out._outputs[0])
            return "leaf"
        for v in out._outputs:
            values.append(v)
        return ("group", len(out._outputs))
    if isinstance(out, (tuple, list)):
        return (type(out).__name__, [_flatten(o, values) for o in out])
    if isinstance(out, (_nd.ndarray, _np.ndarray, int, float)):
        data = out._data if isinstance(out, _nd.ndarray) else _np.asarray(out)
        values.append(Value(const_node(data), 0))
        return "leaf"
    raise KilnError(f"a traced forward must return symbols (or tuples/lists of them), not "
                    f"{type(out).__name__}")


def unflatten(tree, values: list, pos: int = 0):
    """Rebuild the structure `_flatten` recorded from a flat list; returns (result, next pos)."""
    if tree == "leaf":
        return values[pos], pos + 1
    kind, payload = tree
    if kind == "group":
        return list(values[pos:pos + payload]), pos + payload
    items = []
    for sub in payload:
        item, pos = unflatten(sub, values, pos)
        items.append(item)
    return (tuple(items) if kind == "tuple" else items), pos


def trace(fn, args: list, arg_names: list[str] | None = None,
          static_as_constants: bool = False) -> Traced:
    """Trace `fn(*args)`: array arguments become variables with their shapes and dtypes.

    Python numbers are static (the trace specializes on them), or, with `static_as_constants`
    and no array argument, constant nodes of the graph (which constant folding then evaluates).
    """
    from ..gluon.parameter import Parameter

    t = _Trace()
    # A constant beside an array would be a strong 0-d operand (x_f32 + 2.0 would turn float64),
    # while eagerly a Python number is weak: with any array argument, numbers stay static.
    static_as_constants = static_as_constants and not any(
        isinstance(a, (_nd.ndarray, _np.ndarray)) for a in args)
    if arg_names is None:
        arg_names = ["data"] if len(args) == 1 else [f"data{i}" for i in range(len(args))]
    inputs, sym_args = [], []
    for name, a in zip(arg_names, args):
        if isinstance(a, (_nd.ndarray, _np.ndarray)):
            data = a._data if isinstance(a, _nd.ndarray) else a
            node = var_node(name, Aval(data.shape, data.dtype))
            inputs.append(node)
            sym_args.append(Symbol((Value(node, 0),)))
        elif static_as_constants and isinstance(a, (int, float, bool)):
            sym_args.append(Symbol((Value(const_node(_np.asarray(a)), 0),)))
        else:
            sym_args.append(a)  # Python values are static: the trace specializes on them
    previous_tracer = Parameter._tracer
    HOOK.stack.append(t)
    Parameter._tracer = t
    was_recording = autograd.set_recording(False)
    try:
        out = fn(*sym_args)
    finally:
        autograd.set_recording(was_recording)
        Parameter._tracer = previous_tracer
        HOOK.stack.pop()
    values: list[Value] = []
    tree = _flatten(out, values)
    params = [p for p, _ in t.params.values()]
    param_nodes = [n for _, n in t.params.values()]
    update_values = [v for _, v in t.updates.values()]
    state_targets = [p for p, _ in t.updates.values()]
    graph = Graph(inputs + param_nodes, values + update_values)
    _check_inputs(graph)
    return Traced(graph, len(inputs), params, len(values), state_targets, tree)


def _check_inputs(graph: Graph) -> None:
    inputs = {id(n) for n in graph.inputs}
    for n in graph.nodes:
        if n.op == VAR and id(n) not in inputs:
            raise KilnError(
                f"the traced forward used symbol {n.name!r}, which is not one of its inputs or "
                "parameters (a symbol created outside the forward, or a sym.var inside it); "
                "pass it as an input")
        if n.op == CONST and n.value is None:
            raise KilnError("internal error: a constant node without a value")


def install() -> None:
    """Make kiln.ndarray consult this module (done when kiln.symbol is imported)."""
    from . import symbol as _symbol_module

    _nd._symbolic_apply = _symbol_module.symbolic_apply
    _nd.tracing_hook = HOOK
