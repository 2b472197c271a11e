"""Control-flow nodes in C: `foreach` and `while_loop` become C loops, `cond` an `if`.

Each body graph is generated like a whole graph (codegen.lower_graph) by a Generator of its own
and emitted as a static function with the entry point's signature,

    static int body_<pos>(void *const *in, void *const *out, void *const *prm, char *arena,
                          const kiln_graph_callbacks *cb)

so a nested loop is a body calling a body. The node's code then calls it once per step with
pointers set up in place of copies: a data input's step `t` is the pointer to its row `t`
(data is made contiguous once), a per-step output is written straight into row `t` of the
stacked output, and each state lives in two scratch buffers that the steps alternate between
(step t reads one and writes the other: a body may write an output before it has read every
input). The body's own scratch memory is one block of the enclosing arena, reused by every
step. The semantics are the operators' `impl` (kiln/ops/control_flow.py): rows past the last
step are zero, a loop of no steps hands out copies of its initial states.

A body the generator cannot lower completely (an operator with no C lowering, which would call
back into Python) makes the node's lowering decline: the whole node then runs in Python as
before, with its bodies compiled by the numpy backend.
"""

from __future__ import annotations

import numpy as _np

from ...graph.ir import Graph, Node
from .codegen import Generator, LoweringError, View, lower_graph
from .ctypes_map import c_literal, c_type
from .lowering import register_lowering

__all__ = ["emit_body", "emit_bodies"]


def emit_bodies(gen: Generator, graphs, prefixes) -> list[tuple[str, int]] | None:
    """emit_body for each graph, or None (and `gen`'s functions as they were) when one of them
    cannot be lowered."""
    mark = len(gen.functions)
    lowered = dict(gen.lowered)
    try:
        return [emit_body(gen, g, p) for g, p in zip(graphs, prefixes)]
    except LoweringError:
        del gen.functions[mark:]
        gen.lowered = lowered
        return None


def emit_body(gen: Generator, graph: Graph, prefix: str) -> tuple[str, int]:
    """Generate `graph` as a static C function of `gen`'s source: (its name, the arena bytes
    it needs). Raises LoweringError when the body is not C all the way through; `gen` is
    unchanged then."""
    sub = Generator(graph, {})
    sub._fn_names = gen._fn_names                 # one namespace for the whole source
    _, _, arena_bytes = lower_graph(sub)
    if sub.callbacks:
        ops = sorted({c.op for c in sub.callbacks})
        raise LoweringError(f"a loop or branch body uses {', '.join(ops)}, which has no C "
                            "lowering")
    # the body's parameters (array constants) become the enclosing program's
    for s in sub.storages:
        if s.kind == "param":
            s.index = gen.param_storage(sub.params[s.index]).index
    name = gen.fn_name(prefix)
    for code in sub.functions:
        gen.add_function(sub.resolve(code))
    lines = [
        f"static int {name}(void *const *in, void *const *out, void *const *prm, char *arena,",
        "                   const kiln_graph_callbacks *cb) {",
        "    (void)in; (void)out; (void)prm; (void)arena; (void)cb;",
    ]
    lines += [("    " + sub.resolve(line)) if line else "" for line in sub.body]
    lines += ["    return 0;", "}", ""]
    gen.add_function("\n".join(lines))
    for op, count in sub.lowered.items():
        gen.lowered[op] = gen.lowered.get(op, 0) + count
    gen.inplace_count += sub.inplace_count
    return name, arena_bytes


# ----------------------------------------------------------------------------------------------
# helpers for the node's code
# ----------------------------------------------------------------------------------------------

def _nbytes(shape, dtype) -> int:
    n = _np.dtype(dtype).itemsize
    for d in shape:
        n *= int(d)
    return n


def _scalar(gen: Generator, view: View) -> str:
    """A C expression for the one element of `view`."""
    if view.is_literal:
        return c_literal(view.literal, view.dtype)
    return f"(*{gen.ptr(view, const=True)})"


def _address(gen: Generator, view: View) -> str:
    """`view`'s first byte as a `char *` (for the body's pointer tables)."""
    return f"((char *){gen.ptr(view)})"


def _inputs(gen: Generator, values) -> list[View]:
    """Contiguous views of the node's array inputs (literals become constants)."""
    return [gen.contiguous(gen.view(v)) for v in values]


def _scratch(gen: Generator, nbytes: int, note: str) -> str:
    return f"((char *){gen.storage_ptr(gen.temp(max(int(nbytes), 1), note), 'uint8')})"


def _states(gen: Generator, n: Node, inits: list[View], first_out: int) -> tuple[list, list]:
    """Two scratch buffers per state, and the node's final-state output views."""
    bufs = [(_scratch(gen, v.size * v.dtype.itemsize, "state a"),
             _scratch(gen, v.size * v.dtype.itemsize, "state b")) for v in inits]
    finals = [gen.output_view(n, first_out + j) for j in range(len(inits))]
    return bufs, finals


def _emit_finish(gen: Generator, stacked: list[View], finals: list[View], steps: str,
                 rows: int) -> None:
    """After the loop: copy the states out; zero the rows of stacked outputs never written."""
    for j, f in enumerate(finals):
        gen.emit(f"    memcpy({_address(gen, f)}, cur[{j}], {f.size * f.dtype.itemsize});")
    for o in stacked:
        row = _nbytes(o.shape[1:], o.dtype)
        gen.emit(f"    if ({steps} < {rows}) memset({_address(gen, o)} + {steps} * {row}L, 0, "
                 f"({rows} - {steps}) * {row}L);")


def _body_call(name: str, arena: str) -> str:
    return f"if ({name}(bin, bout, prm, {arena}, cb)) return -1;"


def _emit_loop_setup(gen: Generator, n_in: int, n_out: int, inits: list[View],
                     captures: list[View], first_capture: int) -> None:
    """Open the node's block: the body's pointer tables, `cur` (the states a step reads, the
    initial ones first) and the captured inputs, which every step reads in place."""
    gen.emit("{")
    gen.emit(f"    void *bin[{max(n_in, 1)}], *bout[{max(n_out, 1)}];")
    gen.emit(f"    char *cur[{max(len(inits), 1)}];")
    for j, v in enumerate(inits):
        gen.emit(f"    cur[{j}] = {_address(gen, v)};")
    for i, v in enumerate(captures):
        gen.emit(f"    bin[{first_capture + i}] = {_address(gen, v)};")


def _emit_step(gen: Generator, body: str, arena: str, stacked: list[View], bufs: list,
               row: str, parity: str) -> None:
    """One call of a loop body: its per-step outputs into row `row` of the stacked outputs,
    its new states into the scratch buffers `parity` picks, which the next step reads."""
    no = len(stacked)
    for i, o in enumerate(stacked):
        gen.emit(f"        bout[{i}] = {_address(gen, o)} + {row} * "
                 f"{_nbytes(o.shape[1:], o.dtype)}L;")
    for j, (b0, b1) in enumerate(bufs):
        gen.emit(f"        bout[{no + j}] = ({parity} & 1) ? {b1} : {b0};")
    gen.emit("        " + _body_call(body, arena))
    for j in range(len(bufs)):
        gen.emit(f"        cur[{j}] = (char *)bout[{no + j}];")


# ----------------------------------------------------------------------------------------------
# the operators
# ----------------------------------------------------------------------------------------------

@register_lowering("foreach")
def _foreach(gen: Generator, n: Node) -> bool:
    a = n.attrs
    bodies = emit_bodies(gen, n.subgraphs, ["foreach_body"])
    if bodies is None:
        return False
    (body, arena_bytes), = bodies
    steps_total, nd, ns, no = a["num_steps"], a["num_data"], a["num_states"], a["num_out_data"]
    k = 1 if a["has_length"] else 0
    count = _scalar(gen, gen.view(n.inputs[0])) if k else None
    views = _inputs(gen, n.inputs[k:])
    data, inits, captures = views[:nd], views[nd:nd + ns], views[nd + ns:]
    stacked = [gen.output_view(n, i) for i in range(no)]
    bufs, finals = _states(gen, n, inits, no)
    arena = _scratch(gen, arena_bytes, "loop body")
    _emit_loop_setup(gen, nd + ns + len(captures), no + ns, inits, captures, nd + ns)
    if count is None:
        gen.emit(f"    const long steps = {steps_total};")
    else:
        gen.emit(f"    long steps = (long){count};")
        gen.emit(f"    if (steps > {steps_total}) steps = {steps_total};")
        gen.emit("    if (steps < 0) steps = 0;")
    gen.emit("    for (long s = 0; s < steps; s++) {")
    step = "steps - 1 - s" if a["reverse"] else "s"
    gen.emit(f"        const long t = {step};")
    for i, v in enumerate(data):
        gen.emit(f"        bin[{i}] = {_address(gen, v)} + t * "
                 f"{_nbytes(v.shape[1:], v.dtype)}L;")
    for j in range(ns):
        gen.emit(f"        bin[{nd + j}] = cur[{j}];")
    _emit_step(gen, body, arena, stacked, bufs, "t", "s")
    gen.emit("    }")
    _emit_finish(gen, stacked, finals, "steps", steps_total)
    gen.emit("}")
    return True


@register_lowering("while_loop")
def _while_loop(gen: Generator, n: Node) -> bool:
    a = n.attrs
    pred_aval = n.subgraphs[0].outputs[0].aval
    bodies = emit_bodies(gen, n.subgraphs, ["while_cond", "while_body"])
    if bodies is None:
        return False
    (cond, cond_arena), (func, func_arena) = bodies
    limit, nv, no = a["max_iterations"], a["num_loop_vars"], a["num_out_data"]
    views = _inputs(gen, n.inputs)
    inits, captures = views[:nv], views[nv:]
    stacked = [gen.output_view(n, i) for i in range(no)]
    bufs, finals = _states(gen, n, inits, no)
    trips = gen.output_view(n, no + nv)
    arena = _scratch(gen, max(cond_arena, func_arena), "loop body")
    pred = _scratch(gen, _nbytes(pred_aval.shape, pred_aval.dtype), "loop condition")
    pred_type = c_type(pred_aval.dtype)
    _emit_loop_setup(gen, nv + len(captures), no + nv, inits, captures, nv)
    gen.emit("    long steps = 0;")
    gen.emit(f"    while (steps < {limit}) {{")
    for j in range(nv):
        gen.emit(f"        bin[{j}] = cur[{j}];")
    gen.emit(f"        bout[0] = {pred};")
    gen.emit("        " + _body_call(cond, arena))
    gen.emit(f"        if (!(*(const {pred_type} *){pred})) break;")
    _emit_step(gen, func, arena, stacked, bufs, "steps", "steps")
    gen.emit("        steps++;")
    gen.emit("    }")
    _emit_finish(gen, stacked, finals, "steps", limit)
    gen.emit(f"    *{gen.ptr(trips)} = (int64_t)steps;")
    gen.emit("}")
    return True


@register_lowering("cond")
def _cond(gen: Generator, n: Node) -> bool:
    bodies = emit_bodies(gen, n.subgraphs, ["cond_then", "cond_else"])
    if bodies is None:
        return False
    (then_fn, then_arena), (else_fn, else_arena) = bodies
    pred = _scalar(gen, gen.view(n.inputs[0]))
    operands = _inputs(gen, n.inputs[1:])
    outs = [gen.output_view(n, i) for i in range(n.num_outputs)]
    arena = _scratch(gen, max(then_arena, else_arena), "branch body")
    gen.emit("{")
    gen.emit(f"    void *bin[{max(len(operands), 1)}], *bout[{max(len(outs), 1)}];")
    for i, v in enumerate(operands):
        gen.emit(f"    bin[{i}] = {_address(gen, v)};")
    for i, o in enumerate(outs):
        gen.emit(f"    bout[{i}] = {_address(gen, o)};")
    gen.emit(f"    if ({pred}) {{ {_body_call(then_fn, arena)} }}")
    gen.emit(f"    else {{ {_body_call(else_fn, arena)} }}")
    gen.emit("}")
    return True
