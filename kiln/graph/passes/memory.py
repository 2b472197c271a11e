"""Memory planning: which buffer each value lives in, when it dies, what can run in place.

The plan serves a backend that writes operator results into buffers it allocates (NumPy's
`out=`). Liveness is computed over the node order: a buffer returns to the pool after the last
node that reads it, or reads a view of it, and a later value of the same shape and dtype takes
it over. An elementwise node whose input dies at that node writes over the input's buffer (in
place). Values produced by other operators keep the memory their implementation allocated; they
are never written over, because an implementation may return a view of its input or of a
parameter. With `static_alloc` the buffers outlive a call and are reused by the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as _np

from ..ir import CONST, VAR, Graph, Node, Value

# Operators whose NumPy implementation may return a view of (or the very array of) an input.
VIEW_OPS = frozenset({"reshape", "transpose", "expand_dims", "squeeze", "getitem", "broadcast_to",
                      "flip", "split", "stop_gradient", "swapaxes", "batch_flatten", "einsum"})


def aliased_input(n: Node, i: int) -> int | None:
    """The input whose memory output `i` of node `n` may share, or None."""
    if n.op in VIEW_OPS and n.inputs:
        return 0
    # In inference batch_norm returns its running statistics themselves as outputs 1 and 2.
    if n.op == "batch_norm" and i in (1, 2) and not n.attrs.get("training"):
        return i + 2
    return None


@dataclass
class MemoryPlan:
    buffer_of: dict[Value, int] = field(default_factory=dict)   # value -> buffer index
    buffers: list[tuple[tuple, _np.dtype]] = field(default_factory=list)
    inplace: dict[Value, Value] = field(default_factory=dict)   # result -> input it overwrites
    dead_after: dict[int, list[Value]] = field(default_factory=dict)  # node index -> values
    output_buffers: set[int] = field(default_factory=set)       # buffers holding graph outputs
    root_of: dict[Value, Value] = field(default_factory=dict)   # value -> value it may alias
    buffer_dead_after: dict[int, list[int]] = field(default_factory=dict)  # node -> buffers

    def describe(self) -> str:
        sizes = sum(int(_np.prod(s)) * _np.dtype(d).itemsize for s, d in self.buffers)
        return (f"{len(self.buffers)} buffers ({sizes} bytes) for {len(self.buffer_of)} values, "
                f"{len(self.inplace)} in place")


def plan_memory(graph: Graph, wants_buffer, can_overwrite) -> MemoryPlan:
    """Plan buffers for `graph`.

    `wants_buffer(node)` says whether the backend writes the node's output into a buffer of its
    own (single-output nodes only); `can_overwrite(node, i)` whether it may write the result over
    input i (same shape and dtype, elementwise).
    """
    plan = MemoryPlan()
    index = {id(n): i for i, n in enumerate(graph.nodes)}
    end = len(graph.nodes)

    # Alias roots: a value's root is the buffer-backed (or foreign) value whose memory it may share.
    root: dict[Value, Value] = {}
    for n in graph.nodes:
        for i in range(n.num_outputs):
            v = Value(n, i)
            src = aliased_input(n, i)
            if src is not None:
                root[v] = root.get(n.inputs[src], n.inputs[src])
            else:
                root[v] = v
    plan.root_of = root

    last_use: dict[Value, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            r = root.get(v, v)
            last_use[r] = max(last_use.get(r, -1), index[id(n)])
    outputs = {root.get(v, v) for v in graph.outputs}
    for r in outputs:
        last_use[r] = end

    free: dict[tuple, list[int]] = {}
    releases: dict[int, list[int]] = {}
    for pos, n in enumerate(graph.nodes):
        if n.op not in (VAR, CONST) and n.num_outputs == 1 and wants_buffer(n):
            v = Value(n, 0)
            aval = v.aval
            key = (tuple(aval.shape), _np.dtype(aval.dtype).str)
            buf = _inplace_candidate(n, pos, plan, root, last_use, can_overwrite)
            if buf is not None:
                plan.inplace[v] = n.inputs[buf]
                b = plan.buffer_of[root[n.inputs[buf]]]
                releases[pos].remove(b)  # it no longer returns to the pool here
            elif free.get(key):
                b = free[key].pop()
            else:
                b = len(plan.buffers)
                plan.buffers.append((tuple(aval.shape), _np.dtype(aval.dtype)))
            plan.buffer_of[v] = b
            if v in outputs:
                plan.output_buffers.add(b)
            else:
                releases.setdefault(last_use.get(v, pos), []).append(b)
        for b in releases.pop(pos, []):
            shape, dtype = plan.buffers[b]
            free.setdefault((shape, _np.dtype(dtype).str), []).append(b)
    plan.dead_after = _deaths(graph, root, last_use)
    # A buffer is freed after the death of the last value that lives in it.
    death = {v: pos for pos, values in plan.dead_after.items() for v in values}
    buffer_end: dict[int, int] = {}
    for v, b in plan.buffer_of.items():
        if b not in plan.output_buffers:
            buffer_end[b] = max(buffer_end.get(b, -1), death.get(v, end))
    for b, pos in sorted(buffer_end.items()):
        plan.buffer_dead_after.setdefault(pos, []).append(b)
    return plan


def _deaths(graph: Graph, root, last_use) -> dict[int, list[Value]]:
    """node index -> the computed values nobody needs after it.

    A value dies with its alias root: a view kept alive would keep the root's memory alive. A
    value nobody reads (an unused output of a multi-output node) dies where it is made.
    """
    dead: dict[int, list[Value]] = {}
    for pos, n in enumerate(graph.nodes):
        if n.op in (VAR, CONST):
            continue
        for i in range(n.num_outputs):
            v = Value(n, i)
            r = root[v]
            dead.setdefault(max(last_use.get(r, pos), pos), []).append(v)
    end = len(graph.nodes)
    return {pos: values for pos, values in dead.items() if pos < end}


def _inplace_candidate(n: Node, pos: int, plan: MemoryPlan, root, last_use, can_overwrite):
    for i, v in enumerate(n.inputs):
        r = root.get(v, v)
        if r != v:          # a view of a buffer: other views may still read it
            continue
        if r not in plan.buffer_of or last_use.get(r) != pos:
            continue
        if sum(1 for w in n.inputs if root.get(w, w) == r) > 1:
            continue        # read twice by this node: NumPy handles it, but keep it simple
        if can_overwrite(n, i):
            return i
    return None
