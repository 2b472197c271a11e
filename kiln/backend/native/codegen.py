"""A graph becomes one C function, `kiln_graph_run`, over one arena of memory.

Every value of the graph is a *view*: a storage (a graph input, a parameter, an output array or
a stretch of the arena), an element offset, a shape, strides and a dtype. Operators that only
move metadata (reshape, expand_dims, squeeze, broadcast_to, transpose, stop_gradient) make a new
view of the same storage and emit no code; elementwise loops read any view (broadcast and
transposed ones included), matrix products fold transposed views into their transpose flags,
and kernels that need contiguous data get a copy only when the view is not.

Arena storages are placed after the whole function is emitted: each storage lives from the first
to the last node that mentions it, and storages whose lives do not overlap share memory (first
fit). An elementwise node whose input dies there writes over it (in place). A graph output is
computed straight into the NumPy array returned to the caller when it can be.

Nodes without a C lowering call back into Python (`kiln_graph_callbacks`): the node's NumPy
implementation runs on views of the same memory (see NativeProgram.callbacks).

The generated source is readable: each node's code is preceded by a comment with the node as
the IR prints it and the user's source line that created it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as _np

from ...graph.ir import CONST, VAR, Graph, Node, Value, _value_names
from ...graph.literal import format_literal
from .ctypes_map import c_type, supported_dtype

__all__ = ["Storage", "View", "NativeProgram", "generate"]

ALIGN = 64
GRAPH_ABI = 1


# ----------------------------------------------------------------------------------------------
# storages and views
# ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Storage:
    """Bytes that values live in: kind 'arena', 'input', 'output' or 'param'."""

    sid: int
    kind: str
    index: int = -1
    nbytes: int = 0
    first: int = -1          # first and last node position that mention it (arena)
    last: int = -1
    offset: int = -1         # byte offset in the arena, once planned
    note: str = ""

    def token(self) -> str:
        return f"@S{self.sid}@"

    def c_base(self) -> str:
        if self.kind == "arena":
            return f"ARENA({self.offset})"
        return {"input": "IN", "output": "OUT", "param": "PRM"}[self.kind] + f"({self.index})"


@dataclass(frozen=True)
class View:
    """A value: `shape`/`strides` (elements) over `storage` from element `offset`; or a scalar
    `literal` (storage None)."""

    storage: Storage | None
    offset: int
    shape: tuple
    strides: tuple
    dtype: _np.dtype
    literal: object = None

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_literal(self) -> bool:
        return self.storage is None

    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape) or self.size <= 1 or \
            _dense_ignoring_ones(self.shape, self.strides)

    def covers_storage(self) -> bool:
        """Contiguous from the start of its storage to the end."""
        return (self.storage is not None and self.offset == 0 and self.contiguous()
                and self.size * self.dtype.itemsize == self.storage.nbytes)


def contiguous_strides(shape: tuple) -> tuple:
    strides = []
    acc = 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def _dense_ignoring_ones(shape, strides) -> bool:
    expect = 1
    for d, s in zip(reversed(shape), reversed(strides), strict=True):
        if d == 1:
            continue
        if s != expect:
            return False
        expect *= d
    return True


# ----------------------------------------------------------------------------------------------
# the program
# ----------------------------------------------------------------------------------------------

@dataclass
class CallbackSpec:
    """A node run in Python: its operator, attributes, input views and output views."""

    node_index: int
    op: str
    attrs: dict
    inputs: list[View]
    outputs: list[View]
    label: str
    #: the node's NumPy implementation with its attributes (and control-flow bodies) bound
    impl: object = None


@dataclass
class NativeProgram:
    source: str
    free_inputs: list[Node]
    input_specs: list[tuple[int, tuple]]      # (NumPy type number, shape) per free input
    output_specs: list[tuple[int, tuple]]
    params: list                              # arrays read in place, in PRM order
    arena_bytes: int
    callbacks: list[CallbackSpec]
    lowered: dict[str, int] = field(default_factory=dict)     # op -> nodes lowered to C
    fallback: dict[str, int] = field(default_factory=dict)    # op -> nodes run in Python
    inplace: int = 0
    profile_labels: list[str] = field(default_factory=list)   # timed nodes (profile=True)
    # where each param array comes from, to rebuild `params` without generating the C again
    # (known.py): ("input", position in graph.inputs), ("const", position in graph.nodes) or
    # ("fill", value, shape, dtype); None when unknown
    param_origins: list = field(default_factory=list)


class LoweringError(Exception):
    """A node the lowering cannot handle after all (the generator falls back to Python)."""


# Functions run on the Generator before emission; they may mark nodes as absorbed by others
# (gen.skip) and record what was absorbed (gen.fusions). See conv.py.
PREPASSES: list = []

# Operators whose result is a new view of their first input (no code).
VIEW_OPS = frozenset({"reshape", "expand_dims", "squeeze", "broadcast_to", "transpose",
                      "stop_gradient", "copy", "batch_flatten"})


class Generator:
    """Turns one graph into a NativeProgram (see the module docstring)."""

    def __init__(self, graph: Graph, bound: dict):
        self.graph = graph
        self.bound = bound
        self.names = _value_names(graph)
        self.storages: list[Storage] = []
        self.views: dict[Value, View] = {}
        self.functions: list[str] = []
        self.body: list[str] = []
        self.params: list = []
        self.param_origins: list = []
        self._param_ids: dict[int, int] = {}
        self.callbacks: list[CallbackSpec] = []
        self.pos = 0
        self.end = len(graph.nodes)
        self.lowered: dict[str, int] = {}
        self.fallback: dict[str, int] = {}
        self.inplace_count = 0
        self.profile_labels: list[str] = []
        self._fn_names: set[str] = set()
        self.skip: set[int] = set()            # ids of nodes another node's code computes
        self.fusions: dict[int, dict] = {}     # id(node) -> what it absorbed (see conv.py)
        self._prepass()
        # the lowering modules register the prepasses when first imported: import them before
        # reading the list, or the first graph of a process would miss them
        from . import lowering  # noqa: F401
        for hook in PREPASSES:
            hook(self)

    # -- analysis before emission ---------------------------------------------------------------
    def _prepass(self) -> None:
        g = self.graph
        index = {id(n): i for i, n in enumerate(g.nodes)}
        root: dict[Value, Value] = {}
        for n in g.nodes:
            for i in range(n.num_outputs):
                v = Value(n, i)
                if n.op in VIEW_OPS and n.inputs:
                    root[v] = root.get(n.inputs[0], n.inputs[0])
                else:
                    root[v] = v
        self.root = root
        last: dict[Value, int] = {}
        for n in g.nodes:
            for v in n.inputs:
                r = root[v]
                last[r] = max(last.get(r, -1), index[id(n)])
        for v in g.outputs:
            last[root[v]] = self.end
        self.last_use = last
        # Graph outputs computed straight into the returned arrays: the output value itself,
        # or a reshape-like view of it, produced by a node that writes contiguous memory.
        self.claims: dict[Value, int] = {}
        claimed_roots: set = set()
        for i, v in enumerate(g.outputs):
            r = root[v]
            if r.node.op in (VAR, CONST) or r in claimed_roots:
                continue
            if v != r and not self._reshape_like(v, r):
                continue
            if v.aval is None or r.aval is None or not supported_dtype(v.aval.dtype):
                continue
            if _np.dtype(v.aval.dtype) != _np.dtype(r.aval.dtype):
                continue
            self.claims[r] = i
            claimed_roots.add(r)
        self.output_done = [False] * len(g.outputs)

    def _reshape_like(self, v: Value, r: Value) -> bool:
        """`v` is reached from `r` through reshape-type views only (same elements, same order)."""
        while v != r:
            n = v.node
            if n.op not in ("reshape", "expand_dims", "squeeze", "stop_gradient", "copy",
                            "batch_flatten"):
                return False
            v = n.inputs[0]
        return True

    def readers(self) -> dict[Value, list[Node]]:
        """For each value, the nodes reading it (graph outputs count as a None reader)."""
        out: dict[Value, list] = {}
        for n in self.graph.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        for v in self.graph.outputs:
            out.setdefault(v, []).append(None)
        return out

    def dies_here(self, v: Value) -> bool:
        """The memory behind `v` is read by no later node and is no graph output."""
        return self.last_use.get(self.root[v], -1) == self.pos

    # -- storages ---------------------------------------------------------------------------------
    def new_storage(self, kind: str, nbytes: int, index: int = -1, note: str = "") -> Storage:
        s = Storage(len(self.storages), kind, index, int(nbytes), note=note)
        self.storages.append(s)
        return s

    def touch(self, s: Storage | None) -> None:
        if s is None or s.kind != "arena":
            return
        if s.first < 0:
            s.first = self.pos
        s.first = min(s.first, self.pos)
        s.last = max(s.last, self.pos)

    def param_storage(self, array, origin=None) -> Storage:
        key = id(array)
        if key in self._param_ids:
            return self.storages[self._param_ids[key]]
        s = self.new_storage("param", array.nbytes, len(self.params))
        self.params.append(array)
        self.param_origins.append(origin)
        self._param_ids[key] = s.sid
        return s

    def output_view(self, node: Node, i: int = 0, reuse: View | None = None) -> View:
        """A contiguous view for output i of `node`: the returned array when the output is
        claimed, the storage of `reuse` (in place) when given, else new arena memory."""
        v = Value(node, i)
        aval = v.aval
        shape = tuple(aval.shape)
        dtype = _np.dtype(aval.dtype)
        nbytes = _size(shape) * dtype.itemsize
        if v in self.claims:
            k = self.claims[v]
            s = self.new_storage("output", nbytes, k)
            self.output_done[k] = self._claim_final(k, v)
        elif reuse is not None:
            s = reuse.storage
            self.inplace_count += 1
        else:
            s = self.new_storage("arena", nbytes, note=self.names.get(v, ""))
        self.touch(s)
        view = View(s, 0, shape, contiguous_strides(shape), dtype)
        self.views[v] = view
        return view

    def _claim_final(self, k: int, r: Value) -> bool:
        return True

    def temp(self, nbytes: int, note: str = "") -> Storage:
        s = self.new_storage("arena", nbytes, note=note or "scratch")
        self.touch(s)
        return s

    def view(self, v: Value) -> View:
        return self.views[v]

    # -- C expressions ----------------------------------------------------------------------------
    def ptr(self, view: View, const: bool = False) -> str:
        """A typed pointer to the first element of `view` (marks the storage used here)."""
        self.touch(view.storage)
        t = c_type(view.dtype)
        q = "const " if const else ""
        base = f"({q}{t} *){view.storage.token()}"
        return f"({base} + {view.offset})" if view.offset else f"({base})"

    def storage_ptr(self, s: Storage, dtype="float32") -> str:
        self.touch(s)
        return f"(({c_type(dtype)} *){s.token()})"

    def resolve(self, text: str) -> str:
        """`text` with its storage tokens replaced by C (once the arena is planned)."""
        return _TOKEN.sub(lambda m: self.storages[int(m.group(1))].c_base(), text)

    def emit(self, line: str) -> None:
        self.body.append(line)

    def add_function(self, code: str) -> None:
        self.functions.append(code)

    def fn_name(self, prefix: str, node: Node | None = None) -> str:
        """A new function name, numbered after the node being lowered."""
        name = f"{prefix}_{self.pos}"
        k = 1
        while name in self._fn_names:
            k += 1
            name = f"{prefix}_{self.pos}_{k}"
        self._fn_names.add(name)
        return name

    # -- materialisation --------------------------------------------------------------------------
    def contiguous(self, view: View, note: str = "") -> View:
        """`view` itself when contiguous, else a contiguous copy (emitted here)."""
        if view.is_literal:
            arr = _np.full(view.shape, view.literal, view.dtype)
            s = self.param_storage(arr, ("fill", _np.asarray(view.literal, view.dtype).item(),
                                         list(view.shape), arr.dtype.str))
            return View(s, 0, view.shape, contiguous_strides(view.shape), view.dtype)
        if view.contiguous():
            return view
        from .elementwise import emit_copy

        s = self.new_storage("arena", view.size * view.dtype.itemsize, note=note or "copy")
        self.touch(s)
        out = View(s, 0, view.shape, contiguous_strides(view.shape), view.dtype)
        emit_copy(self, view, out)
        return out

    # -- comments ---------------------------------------------------------------------------------
    def node_comment(self, n: Node) -> str:
        outs = ", ".join(f"%{self.names[Value(n, i)]}" for i in range(n.num_outputs))
        args = ", ".join(f"%{self.names[v]}" for v in n.inputs)
        text = f"{outs} = {n.op}({args})"
        if n.attrs:
            attrs = ", ".join(f"{k}={_short(format_literal(v))}" for k, v in n.attrs.items())
            text += f" {{{attrs}}}"
        types = ", ".join(_fmt_aval(a) for a in n.avals)
        text += f" : {types}"
        if n.loc:
            text += f"   # {n.loc}"
        return "/* " + text.replace("*/", "* /") + " */"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fmt_aval(a) -> str:
    from ...ops.registry import format_aval

    return "?" if a is None else format_aval(a)


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ----------------------------------------------------------------------------------------------
# driving the lowering
# ----------------------------------------------------------------------------------------------

def generate(graph: Graph, bound: dict, label: str = "graph",
             profile: bool | str = False) -> NativeProgram:
    """C source and runtime description for `graph` (`bound`: id(var node) -> array).

    `profile` wraps each node's code in a timer (see kiln.backend.native.profile_report):
    wall-clock time, or the calling thread's CPU time with profile='cpu'."""
    gen = Generator(graph, bound)
    free_inputs, output_specs, arena_bytes = lower_graph(gen, profile)
    input_specs = [(_np.dtype(n.avals[0].dtype).num, tuple(n.avals[0].shape))
                   for n in free_inputs]
    gen.profile_clock = "CLOCK_THREAD_CPUTIME_ID" if profile == "cpu" else "CLOCK_MONOTONIC"
    source = _assemble(gen, graph, label, arena_bytes)
    return NativeProgram(source, free_inputs, input_specs, output_specs, gen.params,
                         arena_bytes, gen.callbacks, gen.lowered, gen.fallback,
                         gen.inplace_count, gen.profile_labels, gen.param_origins)


def lower_graph(gen: Generator, profile: bool | str = False) -> tuple[list, list, int]:
    """Emit the code of `gen.graph` into `gen.body`: (free input nodes, output specs, arena
    bytes). The graph's free inputs are IN(0), IN(1) ... in order, its outputs OUT(0) ...;
    generate() wraps this in the exported entry point, control_flow.py in a loop body."""
    from .lowering import lower_node, lower_view

    graph, bound = gen.graph, gen.bound
    free_inputs: list[Node] = []
    for k, n in enumerate(graph.inputs):
        v = Value(n, 0)
        aval = n.avals[0]
        if id(n) in bound:
            arr = bound[id(n)]
            s = gen.param_storage(arr, ("input", k))
            gen.views[v] = View(s, 0, tuple(arr.shape), contiguous_strides(tuple(arr.shape)),
                                _np.dtype(arr.dtype))
        else:
            if aval is None:
                raise LoweringError(f"input {n.name!r} has no known shape")
            shape = tuple(aval.shape)
            dtype = _np.dtype(aval.dtype)
            s = gen.new_storage("input", _size(shape) * dtype.itemsize, len(free_inputs))
            free_inputs.append(n)
            gen.views[v] = View(s, 0, shape, contiguous_strides(shape), dtype)

    for pos, n in enumerate(graph.nodes):
        gen.pos = pos
        if n.op == VAR:
            continue
        if n.op == CONST:
            value = _np.asarray(n.value)
            if value.ndim == 0 and supported_dtype(value.dtype):
                gen.views[Value(n, 0)] = View(None, 0, (), (), value.dtype, value.item())
            else:
                arr = _np.ascontiguousarray(value)
                s = gen.param_storage(arr, ("const", pos))
                gen.views[Value(n, 0)] = View(s, 0, tuple(arr.shape),
                                              contiguous_strides(tuple(arr.shape)), arr.dtype)
            continue
        if id(n) in gen.skip:
            continue
        if n.op in VIEW_OPS and lower_view(gen, n):
            continue
        mark = len(gen.body)
        gen.emit("")
        gen.emit(gen.node_comment(n))
        if lower_node(gen, n):
            gen.lowered[n.op] = gen.lowered.get(n.op, 0) + 1
        else:
            del gen.body[mark + 2:]
            _lower_callback(gen, n)
            gen.fallback[n.op] = gen.fallback.get(n.op, 0) + 1
        if profile:
            slot = len(gen.profile_labels)
            gen.profile_labels.append(gen.node_comment(n)[3:-3])
            code = gen.body[mark + 2:]
            del gen.body[mark + 2:]
            gen.emit("{ double kiln_t0 = kiln_prof_now();")
            gen.body += ["  " + line for line in code]
            gen.emit(f"  kiln_prof[{slot}] += kiln_prof_now() - kiln_t0; }}")

    # outputs not computed in place into the returned arrays: copy them there
    gen.pos = gen.end
    output_specs = []
    for k, v in enumerate(graph.outputs):
        aval = v.aval
        shape = tuple(aval.shape)
        dtype = _np.dtype(aval.dtype)
        output_specs.append((dtype.num, shape))
        if gen.output_done[k] and gen.views[v].storage.kind == "output" and \
                gen.views[v].storage.index == k:
            continue
        src = gen.views[v]
        s = gen.new_storage("output", _size(shape) * dtype.itemsize, k)
        dst = View(s, 0, shape, contiguous_strides(shape), dtype)
        gen.emit("")
        gen.emit(f"/* output {k}: %{gen.names[v]} */")
        from .elementwise import emit_copy

        emit_copy(gen, src, dst)

    return free_inputs, output_specs, _plan_arena(gen.storages)


def _lower_callback(gen: Generator, n: Node) -> None:
    inputs = [gen.view(v) for v in n.inputs]
    for view in inputs:
        gen.touch(view.storage)
    outputs = []
    for i in range(n.num_outputs):
        aval = n.avals[i]
        if aval is None or not supported_dtype(aval.dtype):
            raise LoweringError(f"{n.op}: output {i} has an unsupported type {aval}")
        outputs.append(gen.output_view(n, i))
    from .. import node_impl

    gen.callbacks.append(CallbackSpec(gen.pos, n.op, dict(n.attrs), inputs, outputs,
                                      gen.node_comment(n), node_impl(n)))
    gen.emit(f"if (cb->call(cb->ctx, {gen.pos})) return -1;   "
             f"/* no C lowering: runs {n.op} in Python */")


def _plan_arena(storages: list[Storage]) -> int:
    """Place arena storages: first fit over storages alive at the same time."""
    arena = sorted((s for s in storages if s.kind == "arena" and s.nbytes > 0),
                   key=lambda s: (s.first, -s.nbytes))
    live: list[Storage] = []
    top = 0
    for s in arena:
        live = [t for t in live if t.last >= s.first]
        live.sort(key=lambda t: t.offset)
        size = (s.nbytes + ALIGN - 1) // ALIGN * ALIGN
        offset = 0
        for t in live:
            if offset + size <= t.offset:
                break
            offset = max(offset, t.offset + (t.nbytes + ALIGN - 1) // ALIGN * ALIGN)
        s.offset = offset
        live.append(s)
        top = max(top, offset + size)
    for s in storages:
        if s.kind == "arena" and s.nbytes == 0:
            s.offset = 0
    return top


_TOKEN = re.compile(r"@S(\d+)@")


def _assemble(gen: Generator, graph: Graph, label: str, arena_bytes: int) -> str:
    sub = gen.resolve

    ins = ", ".join(f"%{gen.names[Value(n, 0)]}" for n in graph.inputs)
    outs = ", ".join(f"%{gen.names[v]}" for v in graph.outputs)
    lowered = sum(gen.lowered.values())
    header = [
        f"/* kiln native graph: {label}",
        f" *   inputs:  {_short(ins, 200)}",
        f" *   outputs: {_short(outs, 200)}",
        f" *   {lowered} nodes in C, {len(gen.callbacks)} in Python; arena {arena_bytes} "
        f"bytes; {gen.inplace_count} in place",
        " * Generated by kiln.backend.native (codegen.py); do not edit. */",
        "#include <math.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        '#include "kiln_kernels.h"',
        '#include "kiln_math.h"',
        "",
        f"#define KILN_GRAPH_ABI {GRAPH_ABI}",
        "typedef struct kiln_graph_callbacks {",
        "    int (*call)(void *ctx, int node);   /* runs graph node `node` in Python */",
        "    void *ctx;",
        "} kiln_graph_callbacks;",
        "",
        "#define IN(i) ((char *)in[i])",
        "#define OUT(i) ((char *)out[i])",
        "#define PRM(i) ((char *)prm[i])",
        "#define ARENA(off) (arena + (off))",
        "",
    ]
    if gen.profile_labels:
        n = len(gen.profile_labels)
        header += [
            "/* KILN_PROFILE: each node's code is timed; kiln_graph_profile reads the totals */",
            "#include <time.h>",
            f"static double kiln_prof[{n}];",
            "static long kiln_prof_calls;",
            "static inline double kiln_prof_now(void) {",
            "    struct timespec t;",
            f"    clock_gettime({gen.profile_clock}, &t);",
            "    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;",
            "}",
            "__attribute__((visibility(\"default\")))",
            "int kiln_graph_profile(const double **times, long *calls) {",
            "    *times = kiln_prof;",
            "    *calls = kiln_prof_calls;",
            f"    return {n};",
            "}",
            "",
        ]
    params_doc = []
    for i, arr in enumerate(gen.params):
        params_doc.append(f"/* PRM({i}): {arr.dtype.name}{list(arr.shape)} */")
    body = [
        "__attribute__((visibility(\"default\")))",
        "int kiln_graph_run(void *const *in, void *const *out, void *const *prm, char *arena,",
        "                   const kiln_graph_callbacks *cb) {",
        "    (void)in; (void)out; (void)prm; (void)arena; (void)cb;",
    ]
    if gen.profile_labels:
        body.append("    kiln_prof_calls++;")
    body += [("    " + sub(line)) if line else "" for line in gen.body]
    body += ["    return 0;", "}", ""]
    return "\n".join(header + params_doc + [""] + [sub(f) for f in gen.functions] + body)
