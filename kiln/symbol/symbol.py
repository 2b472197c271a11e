"""`Symbol`: a handle on graph values, and `symbolic_apply`, which records operator nodes.

A symbol is what flows through a block while it is traced (and what `kiln.sym.var` makes by
hand). Applying any kiln operator to a symbol records a node instead of computing; arithmetic,
methods and broadcasting are exactly those of arrays (both come from `ArrayMethods`). Asking a
symbol for a concrete value (`asnumpy()`, `if x:` ...) raises an error that names the user's line
and the way out.
"""

from __future__ import annotations

import os
import sys

import numpy as _np

from .. import ndarray as _nd
from .._array_methods import ArrayMethods
from ..base import KilnError, ShapeError, SymbolicValueError
from ..graph.ir import CONST, VAR, Graph, Node, Value, const_node, topological_order, var_node
from ..ops.registry import Aval, infer_avals

__all__ = ["Symbol", "var", "Variable", "Group", "symbolic_apply", "user_location"]

_KILN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_LOCATION_OVERRIDE: list[str | None] = [None]


class location:
    """Attribute the nodes recorded inside this context to `text` (e.g. 'grad of relu at
    model.py:12') instead of the calling line."""

    def __init__(self, text: str):
        self.text = text

    def __enter__(self):
        self.previous = _LOCATION_OVERRIDE[0]
        _LOCATION_OVERRIDE[0] = self.text
        return self

    def __exit__(self, *exc):
        _LOCATION_OVERRIDE[0] = self.previous
        return False


def user_location(skip: int = 1) -> str | None:
    """'file.py:12' of the innermost caller outside kiln's own source."""
    if _LOCATION_OVERRIDE[0] is not None:
        return _LOCATION_OVERRIDE[0]
    f = sys._getframe(skip)
    while f is not None and f.f_code.co_filename.startswith(_KILN_DIR):
        f = f.f_back
    if f is None:
        return None
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"


class Symbol(ArrayMethods):
    """Symbolic value(s) of a graph: one output, or a group of several."""

    __slots__ = ("_outputs",)
    _kiln_symbolic = True
    __array_ufunc__ = None  # NumPy defers to our operators

    def __init__(self, outputs):
        self._outputs = tuple(outputs)

    # -- what is known without running ------------------------------------------------------------
    def _single(self, what: str) -> Value:
        if len(self._outputs) != 1:
            raise KilnError(f"{what} of a group of {len(self._outputs)} symbols; pick one with "
                            "sym[i]")
        return self._outputs[0]

    @property
    def _aval(self) -> Aval:
        aval = self._single("shape").aval
        if aval is None:
            raise ShapeError(f"the shape of symbol {self.name!r} is not known yet; give the "
                             "input variables shapes (sym.var(name, shape=...)) or call "
                             "infer_shape(...)")
        return aval

    @property
    def shape(self) -> tuple:
        return tuple(self._aval.shape)

    @property
    def dtype(self) -> _np.dtype:
        return _np.dtype(self._aval.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(_np.prod(self.shape))

    @property
    def name(self) -> str:
        v = self._outputs[0]
        if v.node.name:
            return v.node.name
        return f"{v.node.op}{id(v.node) % 100000}"

    def __repr__(self) -> str:
        if len(self._outputs) != 1:
            return f"<Symbol group [{', '.join(Symbol((v,)).name for v in self._outputs)}]>"
        aval = self._outputs[0].aval
        typ = "" if aval is None else f" : {aval}"
        return f"<Symbol {self.name}{typ}>"

    __hash__ = object.__hash__

    def __len__(self) -> int:
        if len(self._outputs) != 1:
            return len(self._outputs)
        return self.shape[0]

    def __iter__(self):
        if len(self._outputs) != 1:
            return (Symbol((v,)) for v in self._outputs)
        return (self[i] for i in range(self.shape[0]))

    def __getitem__(self, key):
        if len(self._outputs) != 1:
            if isinstance(key, str):
                names = self.list_outputs()
                if key not in names:
                    raise KilnError(f"no output named {key!r}; outputs: {names}")
                return Symbol((self._outputs[names.index(key)],))
            return Symbol((self._outputs[key],)) if isinstance(key, int) else \
                Symbol(self._outputs[key])
        return super().__getitem__(key)

    # -- concrete values do not exist -------------------------------------------------------------
    def _no_value(self, what: str):
        loc = user_location(3)
        where = f" (at {loc})" if loc else ""
        raise SymbolicValueError(
            f"{what} is not available on a Symbol{where}: while a hybridized block is traced "
            f"its values do not exist yet. Function {what} is not implemented for Symbol and "
            "only available in NDArray. Compute it outside the forward, or call "
            "net.hybridize(False) to debug with concrete arrays.")

    def asnumpy(self):
        self._no_value("asnumpy")

    def item(self, *args):
        self._no_value("item")

    def tolist(self):
        self._no_value("tolist")

    def asscalar(self):
        self._no_value("asscalar")

    def __array__(self, dtype=None, copy=None):
        self._no_value("np.array(symbol)")

    def __float__(self):
        self._no_value("float(symbol)")

    def __int__(self):
        self._no_value("int(symbol)")

    def __index__(self):
        self._no_value("using a symbol as an index")

    def __bool__(self):
        loc = user_location(2)
        where = f" at {loc}" if loc else ""
        raise SymbolicValueError(
            f"Python control flow on a symbolic value{where} (`if x:`, `while x:`, `and`/`or` "
            "on an array): its value is unknown while the block is traced, so Python cannot "
            "choose the branch. Write it with kiln's control-flow operators, which become one "
            "graph node (and have gradients):\n"
            "    y = npx.cond(x.sum() > 0, lambda x: x * 2, lambda x: -x, [x])      # if/else\n"
            "    _, [s] = npx.while_loop(lambda s: s.sum() < 10, lambda s: (None, [s * 2]), "
            "[s], max_iterations=100)  # while\n"
            "and npx.foreach(body, data, init_states) for a loop over an axis (F.contrib.cond, "
            "F.contrib.while_loop and F.contrib.foreach in hybrid_forward). A Python `for` over "
            "a fixed range unrolls, and branching on shapes or Python values is fine: it "
            "specializes the trace.")

    def _inplace(self, what: str):
        loc = user_location(3)
        where = f" at {loc}" if loc else ""
        raise SymbolicValueError(
            f"in-place update `{what}`{where} is not supported on a Symbol (not implemented "
            "for Symbol): a traced graph computes new values rather than overwriting. Write "
            "`a = a + b` instead of `a += b`, and build a new array instead of `a[:] = v`.")

    def __iadd__(self, other):
        self._inplace("a += b")

    def __isub__(self, other):
        self._inplace("a -= b")

    def __imul__(self, other):
        self._inplace("a *= b")

    def __itruediv__(self, other):
        self._inplace("a /= b")

    def __ifloordiv__(self, other):
        self._inplace("a //= b")

    def __imod__(self, other):
        self._inplace("a %= b")

    def __ipow__(self, other):
        self._inplace("a **= b")

    def __setitem__(self, key, value):
        self._inplace("a[...] = v")

    def attach_grad(self, *args, **kwargs):
        raise SymbolicValueError("attach_grad() is for arrays; a symbol's gradient comes from "
                                 "the compiled graph's backward pass")

    def wait_to_read(self) -> None:
        """Nothing to wait for: a symbol has no value."""

    def as_np_ndarray(self) -> Symbol:
        return self

    def as_nd_ndarray(self) -> Symbol:
        return self

    def detach(self) -> Symbol:
        from ..ops.elementwise import stop_gradient

        return stop_gradient(self)

    # -- the graph behind the symbol --------------------------------------------------------------
    def graph(self) -> Graph:
        """The graph computing this symbol from its variables."""
        nodes = topological_order(self._outputs)
        inputs = [n for n in nodes if n.op == VAR]
        return Graph(inputs, list(self._outputs), nodes)

    def _variables(self) -> list[Node]:
        return [n for n in topological_order(self._outputs) if n.op == VAR]

    def _aux_nodes(self) -> set[int]:
        aux = set()
        for n in topological_order(self._outputs):
            op = n.op_def
            for i in getattr(op, "aux_inputs", ()) if op is not None else ():
                if i < len(n.inputs) and n.inputs[i].node.op == VAR:
                    aux.add(id(n.inputs[i].node))
        return aux

    def list_arguments(self) -> list[str]:
        """Names of the input variables that are not auxiliary states, in graph order."""
        aux = self._aux_nodes()
        return [n.name for n in self._variables() if id(n) not in aux]

    def list_auxiliary_states(self) -> list[str]:
        """Names of variables that hold state (BatchNorm's running mean and variance)."""
        aux = self._aux_nodes()
        return [n.name for n in self._variables() if id(n) in aux]

    def list_inputs(self) -> list[str]:
        return [n.name for n in self._variables()]

    def list_outputs(self) -> list[str]:
        from .naming import output_names

        return output_names(self._outputs)

    def get_internals(self) -> Symbol:
        """Every value of the graph as a group (select one by index or by output name)."""
        values = [Value(n, i) for n in topological_order(self._outputs)
                  for i in range(n.num_outputs)]
        return Symbol(values)

    def get_children(self) -> Symbol | None:
        node = self._single("get_children").node
        return Symbol(node.inputs) if node.inputs else None

    def attr(self, key: str):
        node = self._single("attr").node
        value = node.attrs.get(key)
        return None if value is None else str(value)

    def list_attr(self) -> dict:
        return {k: str(v) for k, v in self._single("list_attr").node.attrs.items()}

    def infer_shape(self, *args, **kwargs):
        """(argument shapes, output shapes, auxiliary shapes) from the given input shapes."""
        from .inference import infer_shape

        return infer_shape(self, *args, **kwargs)

    def infer_type(self, *args, **kwargs):
        """(argument dtypes, output dtypes, auxiliary dtypes) from the given input dtypes."""
        from .inference import infer_type

        return infer_type(self, *args, **kwargs)

    def eval(self, ctx=None, **arrays):
        """Run the graph on concrete arrays given by variable name; returns a list of arrays."""
        from .executor import evaluate

        return evaluate(self, arrays)

    def bind(self, ctx=None, args=None, args_grad=None, grad_req="write", aux_states=None,
             **kwargs):
        """An `Executor` for MXNet 1.x style forward/backward over this graph."""
        from .executor import Executor

        return Executor(self, args, args_grad, grad_req, aux_states)

    def simple_bind(self, ctx=None, grad_req="write", **shapes):
        from .executor import Executor

        return Executor.allocate(self, grad_req, shapes)

    def tojson(self, remove_amp_cast: bool = True) -> str:
        """The graph in MXNet's symbol-JSON format."""
        from ..io.symbol_json import symbol_to_json

        return symbol_to_json(self)

    def save(self, fname: str, remove_amp_cast: bool = True) -> None:
        with open(fname, "w", encoding="utf-8") as f:
            f.write(self.tojson())

    def optimize(self, **options) -> Symbol:
        """This graph after kiln's optimisation passes (for inspection)."""
        from ..graph.passes import run_pipeline

        g = run_pipeline(self.graph(), training=False, **options)
        return Symbol(g.outputs)


def var(name: str, attr=None, shape=None, lr_mult=None, wd_mult=None, dtype=None, init=None,
        stype=None, **kwargs) -> Symbol:
    """A named input variable, optionally with a shape (dims of 0 or -1 are unknown)."""
    if not isinstance(name, str) or not name:
        raise KilnError(f"a variable needs a non-empty string name, not {name!r}")
    dt = _np.dtype(dtype) if dtype is not None else _np.dtype(_np.float32)
    aval = None
    if shape is not None:
        shape = tuple(int(d) for d in shape)
        if all(d > 0 for d in shape):
            aval = Aval(shape, dt)
    attrs = {}
    if shape is not None:
        attrs["__shape__"] = shape
    if dtype is not None:
        attrs["__dtype__"] = dt.name
    for key, value in (("__lr_mult__", lr_mult), ("__wd_mult__", wd_mult), ("__init__", init)):
        if value is not None:
            attrs[key] = value
    attrs.update(attr or {})
    node = var_node(name, aval, **attrs)
    return Symbol((Value(node, 0),))


Variable = var


def Group(symbols) -> Symbol:
    """One symbol with the outputs of several."""
    outputs = []
    for s in symbols:
        outputs.extend(s._outputs)
    return Symbol(outputs)


def _as_input(a, op) -> Value:
    if isinstance(a, Symbol):
        if len(a._outputs) != 1:
            raise KilnError(f"{op.name}: an input is a group of {len(a._outputs)} symbols; "
                            "pick one with sym[i]")
        return a._outputs[0]
    if isinstance(a, _nd.ndarray):
        return Value(const_node(a._data, user_location(3)), 0)
    if a is None:
        raise KilnError(f"{op.name}: an input is None")
    return Value(const_node(_nd.asarray_input(a), user_location(3)), 0)


#: While a control-flow body is traced, the ids of the nodes it creates (innermost body last):
#: what a body reads from outside is not in its set and becomes an input of the body.
BODY_NODES: list[set[int]] = []


def symbolic_apply(op, args, attrs, subgraphs: tuple = ()):
    """Record a node applying `op`; returns a symbol (or a tuple of symbols for several
    outputs). Control-flow operators take their bodies as graphs in `subgraphs`."""
    inputs = [_as_input(a, op) for a in args]
    full = op.full_attrs(attrs)
    n_out = op.n_outputs(full)
    loc = user_location(2)
    in_avals = [v.aval for v in inputs]
    if all(a is not None for a in in_avals):
        try:
            avals = infer_avals(op, in_avals, full, subgraphs)
        except KilnError as e:
            raise type(e)(f"{e} (while tracing, at {loc})") from None
        except (ValueError, TypeError, IndexError) as e:
            shapes = ", ".join(str(a) for a in in_avals)
            raise ShapeError(f"{op.name}: {e} (inputs: {shapes}; while tracing, at {loc})") \
                from None
    else:
        avals = (None,) * n_out
    from .tracing import current_scope

    node = Node(op.name, inputs, full, avals, loc=loc, name=current_scope(op.name),
                subgraphs=tuple(subgraphs))
    if BODY_NODES:
        BODY_NODES[-1].add(id(node))
    if n_out == 1:
        return Symbol((Value(node, 0),))
    return tuple(Symbol((Value(node, i),)) for i in range(n_out))


def constant(value) -> Symbol:
    """A symbol with a fixed value."""
    arr = value._data if isinstance(value, _nd.ndarray) else _np.asarray(value)
    return Symbol((Value(const_node(arr, user_location(2)), 0),))


def is_const(sym: Symbol) -> bool:
    return len(sym._outputs) == 1 and sym._outputs[0].node.op == CONST
