"""The "numpy" backend: a graph becomes one generated Python function over NumPy calls.

Each node becomes one line. Hot operators (dense layers, elementwise arithmetic, activations)
are written as NumPy calls that store into planned buffers (`out=`), in place where the memory
plan allows; every other operator calls its registry implementation. The source is registered
with `linecache` under `<kiln-graph-N>`, so a traceback shows the generated line, whose comment
names the graph node and the user's source line that created it.

A control-flow node (`foreach`, `while_loop`, `cond`) calls its operator's `impl`, which owns the
loop, with its bodies compiled by this backend into nested functions of their own (`Body`);
their sources are appended to the graph's source as comments.
"""

from __future__ import annotations

import functools
import itertools
import linecache

import numpy as _np

from ..graph.ir import CONST, VAR, Graph, Node, Value, _value_names
from ..graph.literal import format_literal
from ..graph.passes.memory import plan_memory
from ..ops import _gemm
from ..ops.registry import REGISTRY, Aval
from . import Compiled, register_backend

_COUNTER = itertools.count()


# ----------------------------------------------------------------------------------------------
# lowerings: op name -> how to write it with NumPy calls
# ----------------------------------------------------------------------------------------------

class _Lowering:
    """`emit(node, args, out)` returns an expression computing the node (into `out` if given)."""

    def __init__(self, emit, elementwise: bool = True):
        self.emit = emit
        self.elementwise = elementwise


def _ufunc(name: str, arity: int) -> _Lowering:
    def emit(node, args, out, ctx):
        o = f", out={out}" if out else ""
        return f"np_{name}({', '.join(args[:arity])}{o})"
    return _Lowering(emit)


def _scalar_ufunc(name: str, reverse: bool = False) -> _Lowering:
    def emit(node, args, out, ctx):
        s = ctx.constant(node.attrs["scalar"])
        o = f", out={out}" if out else ""
        a, b = (s, args[0]) if reverse else (args[0], s)
        return f"np_{name}({a}, {b}{o})"
    return _Lowering(emit)


def _relu(node, args, out, ctx):
    o = f", out={out}" if out else ""
    return f"np_maximum({args[0]}, 0{o})"


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _product(a_aval, b_aval) -> str:
    """The function a 2-D product is emitted with: `_gemm` (NumPy's matmul, or the native
    kernels' GEMM for large float32 products), or NumPy's matmul itself when the static shapes
    say _gemm would hand it to NumPy anyway (a batch-1 layer: one Python call fewer)."""
    if a_aval is None or b_aval is None or len(a_aval.shape) != 2 or len(b_aval.shape) != 2:
        return "_gemm"
    m, k = a_aval.shape
    n = b_aval.shape[1]
    if _np.dtype(a_aval.dtype) != _np.float32 or float(m) * n * k < _gemm.MIN_WORK:
        return "np_matmul"
    return "_gemm"


def _fully_connected(node, args, out, ctx):
    x, w = args[0], args[1]
    x_aval = node.inputs[0].aval
    if len(x_aval.shape) != 2:
        x = f"{x}.reshape({x_aval.shape[0]}, -1)"
        x_aval = Aval((x_aval.shape[0], _size(x_aval.shape[1:])), x_aval.dtype)
    w_t = ctx.transposed(node.inputs[1], w)
    w_aval = node.inputs[1].aval
    fn = _product(x_aval, Aval(tuple(reversed(w_aval.shape)), w_aval.dtype) if w_aval else None)
    product = f"{fn}({x}, {w_t}, out={out})" if out else f"{fn}({x}, {w_t})"
    if len(args) > 2:
        if out:
            return f"np_add({product}, {args[2]}, out={out})"
        return f"_add_bias({product}, {args[2]})"
    return product


def _matmul(node, args, out, ctx):
    # Matmul.impl is _gemm.matmul: called here without the partial() around the impl
    fn = _product(node.inputs[0].aval, node.inputs[1].aval)
    return f"{fn}({args[0]}, {args[1]}, out={out})" if out else f"{fn}({args[0]}, {args[1]})"


_IN_PLACE_ACTIVATIONS = {"relu": "np_maximum({0}, 0, out={0})", "tanh": "np_tanh({0}, out={0})"}


def _fused_dense(node, args, out, ctx):
    product = _fully_connected(node, args, out, ctx)
    act = node.attrs["act_type"]
    template = _IN_PLACE_ACTIVATIONS.get(act)
    if template is None:
        return f"{ctx.add('A', REGISTRY[act].impl)}({product})"
    if out:
        return f"({product}, {template.format(out)})[1]"
    return f"_activate_{act}({product})"


_STEP_UFUNCS = {**{name: name for name in ("negative", "absolute", "exp", "log", "sqrt",
                                           "square", "tanh", "sin", "cos", "log1p", "expm1",
                                           "reciprocal", "sign", "floor", "ceil")},
                 "add": "add", "subtract": "subtract", "multiply": "multiply",
                 "true_divide": "true_divide", "maximum": "maximum", "minimum": "minimum",
                 "power": "power"}


def _step_ufunc(op_name: str):
    """(numpy ufunc name, reversed) for a chain step, or None when it has no single ufunc."""
    if op_name in _STEP_UFUNCS:
        return _STEP_UFUNCS[op_name], False
    if op_name == "relu":
        return "maximum", None
    if op_name.endswith("_scalar"):
        base = op_name[:-len("_scalar")]
        if base in _STEP_UFUNCS:
            return _STEP_UFUNCS[base], False
        if base.startswith("r") and base[1:] in _STEP_UFUNCS:
            return _STEP_UFUNCS[base[1:]], True
    return None


def _fused_elementwise_ok(node: Node) -> bool:
    return all(_step_ufunc(op) is not None for op, _ in node.attrs["program"])


def _fused_elementwise(node, args, out, ctx):
    """One ufunc call per step, the first reading the input, the rest updating `out` in
    place."""
    acc = args[0]
    target = out  # the memory plan gives every lowered node a buffer
    calls = []
    for op_name, operand in node.attrs["program"]:
        fn, reverse = _step_ufunc(op_name)
        if reverse is None:            # relu
            pair = (acc, "0")
        elif operand is None:
            calls.append(f"np_{fn}({acc}, out={target})")
            acc = target
            continue
        elif operand[0] == "scalar":
            s = ctx.constant(operand[1])
            pair = (s, acc) if reverse else (acc, s)
        else:
            other = args[1 + operand[1]]
            pair = (acc, other) if operand[2] == "rhs" else (other, acc)
        calls.append(f"np_{fn}({pair[0]}, {pair[1]}, out={target})")
        acc = target
    return "(" + ", ".join(calls) + ")[-1]"


def _activate_relu(y):
    return _np.maximum(y, 0, out=y)


def _activate_tanh(y):
    return _np.tanh(y, out=y)


def _add_bias(y, b):
    y += b
    return y


def _dense_ok(node: Node) -> bool:
    x = node.inputs[0].aval
    return node.attrs.get("flatten", True) or len(x.shape) == 2


_UNARY = ("negative", "absolute", "exp", "log", "sqrt", "square", "tanh", "sin", "cos",
          "log1p", "expm1", "reciprocal", "sign", "floor", "ceil", "rint")
_BINARY = {"add": "add", "subtract": "subtract", "multiply": "multiply",
           "true_divide": "true_divide", "maximum": "maximum", "minimum": "minimum",
           "power": "power"}

LOWERINGS: dict[str, _Lowering] = {name: _ufunc(name, 1) for name in _UNARY}
for _kiln, _numpy in _BINARY.items():
    LOWERINGS[_kiln] = _ufunc(_numpy, 2)
    LOWERINGS[_kiln + "_scalar"] = _scalar_ufunc(_numpy)
for _kiln, _numpy in (("rsubtract_scalar", "subtract"), ("rtrue_divide_scalar", "true_divide"),
                      ("rpower_scalar", "power")):
    LOWERINGS[_kiln] = _scalar_ufunc(_numpy, reverse=True)
LOWERINGS["relu"] = _Lowering(_relu)
LOWERINGS["fully_connected"] = _Lowering(_fully_connected, elementwise=False)
LOWERINGS["fused_dense"] = _Lowering(_fused_dense, elementwise=False)
LOWERINGS["fused_elementwise"] = _Lowering(_fused_elementwise)
LOWERINGS["matmul"] = _Lowering(_matmul, elementwise=False)


# ----------------------------------------------------------------------------------------------
# code generation
# ----------------------------------------------------------------------------------------------

# `np_add` rather than `_np.add` in generated lines: one dictionary lookup per call. Read from
# the module's namespace: getattr over dir(numpy) would import numpy's lazy submodules (slow).
_NUMPY_FUNCTIONS = {f"np_{name}": fn for name, fn in vars(_np).items()
                    if isinstance(fn, _np.ufunc) or name == "matmul"}


class _Context:
    """Globals of the generated module: constants, parameters, helper functions."""

    def __init__(self):
        self.globals: dict = {"_np": _np, "_empty": _np.empty, "_add_bias": _add_bias,
                              "_gemm": _gemm.matmul,
                              "_activate_relu": _activate_relu, "_single": _single,
                              "_activate_tanh": _activate_tanh,
                              **_NUMPY_FUNCTIONS}
        self.prelude: list[str] = []
        self.bodies: list = []          # compiled bodies of control-flow nodes
        self._by_id: dict[int, str] = {}
        self.bound_names: dict[int, str] = {}

    def add(self, prefix: str, value) -> str:
        key = id(value)
        if key in self._by_id:
            return self._by_id[key]
        name = f"{prefix}{len(self.globals)}"
        self.globals[name] = value
        self._by_id[key] = name
        return name

    def constant(self, value) -> str:
        if isinstance(value, (bool, int, float)) and not isinstance(value, _np.generic):
            return format_literal(value) if not (isinstance(value, float) and
                                                 not _np.isfinite(value)) else \
                self.add("K", value)
        return self.add("K", value)

    def transposed(self, v: Value, expr: str) -> str:
        """`expr.T`, precomputed once when `v` is a bound parameter (a view, so it follows
        in-place updates)."""
        name = self.bound_names.get(id(v.node))
        if name is not None:
            return self.add("T", self.globals[name].T)
        return f"{expr}.T"


def _lowerable(node: Node) -> bool:
    if node.op not in LOWERINGS or node.num_outputs != 1 or node.avals[0] is None:
        return False
    if node.op in ("fully_connected", "fused_dense"):
        return _dense_ok(node)
    if node.op == "fused_elementwise":
        return _fused_elementwise_ok(node)
    return True


def _wants_buffer(node: Node) -> bool:
    return _lowerable(node)


def _can_overwrite(node: Node, i: int) -> bool:
    low = LOWERINGS.get(node.op)
    if low is None or not low.elementwise:
        return False
    # In a fused chain only the start may be overwritten: later steps read the other inputs, and
    # the start must not be read again after the first step has replaced it.
    if node.op == "fused_elementwise" and (i != 0 or node.inputs[0] in node.inputs[1:]):
        return False
    a, out = node.inputs[i].aval, node.avals[0]
    return a is not None and tuple(a.shape) == tuple(out.shape) and a.dtype == out.dtype


def generate(graph: Graph, bound: dict, static_alloc: bool, fname: str):
    """Python source for `graph` and the globals it needs."""
    ctx = _Context()
    plan = plan_memory(graph, _wants_buffer, _can_overwrite)
    names = {v: f"v{k}" for v, k in _value_names(graph).items()}
    free_inputs = [n for n in graph.inputs if id(n) not in bound]
    for n in graph.inputs:
        if id(n) in bound:
            g = ctx.add("P", bound[id(n)])
            ctx.bound_names[id(n)] = g
            names[Value(n, 0)] = g
        else:
            names[Value(n, 0)] = _safe_name(n.name, len(names))
    buffer_names = {}
    for b, (shape, dtype) in enumerate(plan.buffers):
        if static_alloc and b not in plan.output_buffers:
            buffer_names[b] = ctx.add("B", _np.empty(shape, dtype))
        else:
            buffer_names[b] = f"b{b}"
    allocated: set[int] = set()
    ids = _value_names(graph)

    body: list[str] = []
    for pos, n in enumerate(graph.nodes):
        if n.op == VAR:
            continue
        if n.op == CONST:
            names[Value(n, 0)] = ctx.add("C", n.value)
            continue
        args = [names[v] for v in n.inputs]
        comment = _comment(n, ids, graph)
        v0 = Value(n, 0)
        if v0 in plan.buffer_of:
            b = plan.buffer_of[v0]
            buf = buffer_names[b]
            if buf.startswith("b") and b not in allocated and v0 not in plan.inplace:
                shape, dtype = plan.buffers[b]
                body.append(f"{buf} = _empty({shape!r}, {ctx.add('D', dtype)})")
            allocated.add(b)
            if v0 in plan.inplace:
                buf = names[plan.inplace[v0]]
            expr = LOWERINGS[n.op].emit(n, args, buf, ctx)
            body.append(f"{names[v0]} = {expr}   {comment}")
        else:
            op = REGISTRY[n.op]
            if n.subgraphs:  # control flow: the op's loop calls the bodies, compiled here
                bodies = tuple(compile_body(g) for g in n.subgraphs)
                ctx.bodies.extend(bodies)
                fn = ctx.add("F", functools.partial(op.impl, bodies, **n.attrs))
            else:
                fn = ctx.add("F", functools.partial(op.impl, **n.attrs))
            targets = ", ".join(names[Value(n, i)] for i in range(n.num_outputs))
            call = f"{fn}({', '.join(args)})"
            if n.num_outputs > 1:
                targets += ","
            elif op.num_outputs_for is not None:
                # One output of an operator whose output count varies: its implementation may
                # return a tuple of one (split in one section) or the array (topk).
                call = f"_single({call})"
            body.append(f"{targets} = {call}   {comment}")
        if not static_alloc:  # free what no later node reads (static buffers outlive a call)
            dead = [names[v] for v in plan.dead_after.get(pos, ()) if v in names
                    and names[v].startswith("v") and v not in graph.outputs]
            dead += [buffer_names[b] for b in plan.buffer_dead_after.get(pos, ())
                     if b in allocated]
            if dead:
                body.append(f"del {', '.join(sorted(set(dead)))}")
    if body and body[-1].startswith("del "):
        body.pop()  # returning frees them anyway
    outs = []
    for v in graph.outputs:
        expr = names[v]
        root = plan.root_of.get(v, v)
        b = plan.buffer_of.get(root)
        # Never hand out memory the next call overwrites, nor an input's or parameter's own.
        if (static_alloc and b is not None and b not in plan.output_buffers) or \
                root.node.op in (VAR, CONST):
            expr = f"_np.array({expr})"
        outs.append(expr)
    params = ", ".join(names[Value(n, 0)] for n in free_inputs)
    lines = [f"def {fname}({params}):"]
    lines += [f"    {line}" for line in body]
    lines.append(f"    return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
    source = "\n".join(lines) + "\n"
    for k, b in enumerate(ctx.bodies):  # for reading: the bodies are compiled on their own
        source += f"\n# subgraph {k}:\n" + "".join(f"#   {line}\n" for line in
                                                   b.source.splitlines())
    return source, ctx.globals, free_inputs, plan


def compile_body(graph: Graph):
    """A control-flow body as a nested generated function (its own `<kiln-graph-N>` source, so
    tracebacks show the body's lines), wrapped as the `Body` the operator's loop calls."""
    from ..ops.control_flow import Body

    compiled = NumpyBackend().compile(graph, {}, {})
    return Body(compiled.fn, graph, compiled.source)


def _single(result):
    return result[0] if type(result) is tuple else result


def _safe_name(name: str | None, k: int) -> str:
    base = "".join(c if c.isalnum() else "_" for c in (name or "x"))
    return f"in_{base}_{k}"


def _comment(n: Node, ids: dict, graph: Graph) -> str:
    outs = ", ".join(f"%{ids[Value(n, i)]}" for i in range(n.num_outputs))
    args = ", ".join(f"%{ids[v]}" for v in n.inputs)
    where = f" at {n.loc}" if n.loc else ""
    return f"# {outs} = {n.op}({args}){where}"


class NumpyBackend:
    name = "numpy"

    def compile(self, graph: Graph, bound: dict, options: dict) -> Compiled:
        fname = f"kiln_graph_{next(_COUNTER)}"
        source, env, free_inputs, plan = generate(graph, bound,
                                                  bool(options.get("static_alloc")), fname)
        filename = f"<{fname.replace('_', '-')}>"
        code = compile(source, filename, "exec")
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        env["__name__"] = "kiln_generated"
        exec(code, env)
        return Compiled(env[fname], "numpy", source, free_inputs,
                        {"memory": plan.describe()})


register_backend("numpy", NumpyBackend)
