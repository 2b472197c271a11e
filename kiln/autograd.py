"""Reverse-mode automatic differentiation on a tape, with MXNet's `autograd` API.

While `record()` is active, every operator applied to an array that needs a gradient (one with
`attach_grad()`, or computed from one) leaves a `TapeNode` behind; the result points at its node.
`backward()` walks the nodes from the head in reverse topological order and applies each
operator's gradient rule from the registry. The rules are written with kiln operators, so with
`create_graph=True` the backward pass is itself recorded and can be differentiated again.

    >>> from kiln import np, autograd
    >>> x = np.array([1.0, 2.0]); x.attach_grad()
    >>> with autograd.record():
    ...     y = (x * x).sum()
    >>> y.backward(); x.grad
    array([2., 4.])
"""

from __future__ import annotations

import sys
import weakref
from contextlib import contextmanager
from collections.abc import Iterator, Sequence

import numpy as _np

from .base import KilnError

__all__ = [
    "record", "pause", "train_mode", "predict_mode", "is_recording", "is_training",
    "backward", "grad", "mark_variables", "set_recording", "set_training", "Function",
    "needs_cotangent",
]


class _State:
    __slots__ = ("recording", "training")

    def __init__(self):
        self.recording = False
        self.training = False


#: read on every operator call, hence one small object rather than a context variable
STATE = _State()

# kiln.ndarray's class and `wrap`, set by that module once they exist (it imports this one
# first): backward() runs often enough that an import statement per call shows.
_ndarray = None
_wrap = None


class TapeNode:
    """One recorded operator application: enough to apply its gradient rule later."""

    __slots__ = ("vjp", "inputs", "attrs", "out_refs", "out_data", "n_out", "name")

    def __init__(self, vjp, inputs, attrs, n_out, name, outputs=None):
        # vjp: callable(inputs, outputs, cotangents, **attrs) -> input cotangents
        self.vjp = vjp
        self.inputs = inputs      # tuple of ndarrays (or None for absent optional inputs)
        self.attrs = attrs
        self.n_out = n_out
        self.name = name
        self.out_refs = None
        self.out_data = None
        if outputs is not None:   # the rule reads its outputs: keep their values, refer weakly
            self.out_refs = tuple(weakref.ref(o) for o in outputs)
            self.out_data = tuple(o._data for o in outputs)

    def outputs(self):
        """The outputs as arrays; an output nobody holds any more comes back as a constant."""
        outs = []
        for ref, data in zip(self.out_refs, self.out_data, strict=False):
            o = ref()
            outs.append(o if o is not None else _wrap(data))
        return outs


def is_recording() -> bool:
    return STATE.recording


def is_training() -> bool:
    return STATE.training


def set_recording(is_recording: bool) -> bool:
    """Set the recording flag; returns the previous value."""
    previous = STATE.recording
    STATE.recording = bool(is_recording)
    return previous


def set_training(train_mode: bool) -> bool:
    """Set the training flag; returns the previous value."""
    previous = STATE.training
    STATE.training = bool(train_mode)
    return previous


@contextmanager
def _scope(recording: bool | None, training: bool | None) -> Iterator[None]:
    old = (STATE.recording, STATE.training)
    if recording is not None:
        STATE.recording = recording
    if training is not None:
        STATE.training = training
    try:
        yield
    finally:
        STATE.recording, STATE.training = old


def record(train_mode: bool = True):
    """Record operations for differentiation; layers run in training mode unless told otherwise."""
    return _scope(True, train_mode)


def pause(train_mode: bool = False):
    """Stop recording inside a `record()` block."""
    return _scope(False, train_mode)


def train_mode():
    """Run layers (Dropout, BatchNorm) in training mode without changing recording."""
    return _scope(None, True)


def predict_mode():
    """Run layers in inference mode without changing recording."""
    return _scope(None, False)


def mark_variables(variables, gradients, grad_reqs="write") -> None:
    """Attach the given gradient buffers to the variables (MXNet's low-level attach_grad)."""
    from .ndarray import ndarray

    if isinstance(variables, ndarray):
        variables, gradients = [variables], [gradients]
    if isinstance(grad_reqs, str):
        grad_reqs = [grad_reqs] * len(variables)
    for var, g, req in zip(variables, gradients, grad_reqs, strict=False):
        var.attach_grad(req)
        var._grad = g


def needs_cotangent(x) -> bool:
    """Whether a gradient rule has to compute the cotangent of its input `x`.

    An array that is neither a variable (`attach_grad()`) nor computed from one gets nothing
    from its cotangent (backward drops it), so a rule may return None for it instead of
    computing it: a dense layer's gradient then skips the product for its data input, the
    costliest product of a first layer's backward. Symbols (graph differentiation) always say
    yes: there, unused gradients are pruned from the backward graph by dead-code elimination.
    """
    if getattr(x, "_kiln_symbolic", False):
        return True
    return x._node is not None or x._grad_req is not None


def _key(x) -> object:
    """Where the cotangent of array `x` is collected: its producing node output, or x itself."""
    node = x._node
    return (id(node), x._oidx) if node is not None else id(x)


def _topological_nodes(heads) -> list[TapeNode]:
    """Tape nodes reachable from the heads, producers before consumers."""
    order: list[TapeNode] = []
    seen: set[int] = set()
    stack = [(h._node, False) for h in heads if h._node is not None]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.inputs is None:
            raise KilnError(
                "backward through a graph whose intermediate values were already freed: the "
                "first backward() released them. Pass retain_graph=True to the first backward() "
                "to differentiate the same graph again.")
        stack.append((node, True))
        for x in node.inputs:
            if x is not None and x._node is not None and id(x._node) not in seen:
                stack.append((x._node, False))
    return order


def _run_backward(heads, head_grads, create_graph: bool, retain_graph: bool, keep=(),
                  train_mode: bool = True):
    """Propagate cotangents from the heads.

    Returns ({key: cotangent}, {key: leaf}) for the leaves reached and for the keys in `keep`.
    """
    ndarray, wrap = _ndarray, _wrap
    cts: dict[object, ndarray] = {}
    leaves: dict[object, ndarray] = {}
    for h, hg in zip(heads, head_grads, strict=False):
        if hg is None:
            hg = wrap(_np.ones(h.shape, dtype=h.dtype))
        elif not isinstance(hg, ndarray):
            hg = wrap(_np.asarray(hg, dtype=h.dtype))
        if hg.shape != h.shape:
            raise KilnError(f"backward(): head gradient of shape {hg.shape} for a head of shape "
                            f"{h.shape}")
        k = _key(h)
        if h._node is None:
            leaves[k] = h
        cts[k] = cts[k] + hg if k in cts else hg

    nodes = _topological_nodes(heads)
    keep = set(keep)
    old = (STATE.recording, STATE.training)
    STATE.recording = create_graph
    STATE.training = train_mode
    try:
        for node in reversed(nodes):
            nid = id(node)
            if node.n_out == 1 and not keep:    # the common case, without the general loops
                c = cts.pop((nid, 0), None)
                if c is None:
                    continue
                out_cts = [c]
            else:
                out_cts = [cts.get((nid, i)) if (nid, i) in keep else cts.pop((nid, i), None)
                           for i in range(node.n_out)]
                if all(c is None for c in out_cts):
                    continue
            outputs = node.outputs() if node.out_refs is not None else None
            if len(out_cts) > 1 and any(c is None for c in out_cts):
                out_cts = _fill_zeros(out_cts, node, outputs)
            in_cts = node.vjp(node.inputs, outputs, out_cts, **node.attrs)
            for x, g in zip(node.inputs, in_cts, strict=False):
                if g is None or x is None:
                    continue
                producer = x._node
                if producer is None:
                    if x._grad_req is None:
                        continue          # a constant: its cotangent goes nowhere
                    k = id(x)
                    leaves[k] = x
                else:
                    k = (id(producer), x._oidx)
                if g.shape != x.shape:
                    raise KilnError(f"internal error: the gradient rule of {node.name} returned "
                                    f"shape {g.shape} for an input of shape {x.shape}")
                prev = cts.get(k)
                cts[k] = g if prev is None else prev + g
            if not retain_graph:
                node.inputs = None
                node.out_data = None
    finally:
        STATE.recording, STATE.training = old
    return cts, leaves


def _fill_zeros(out_cts, node, outputs):
    wrap = _wrap
    filled = []
    for i, c in enumerate(out_cts):
        if c is None:
            if outputs is not None:
                ref = outputs[i]
                c = wrap(_np.zeros(ref.shape, ref.dtype))
            else:
                shape, dtype = _output_aval(node, i)
                c = wrap(_np.zeros(shape, dtype))
        filled.append(c)
    return filled


def _output_aval(node, i):
    from .ops.registry import REGISTRY, Aval

    op = REGISTRY[node.name]
    avals = [Aval(x.shape, x.dtype) for x in node.inputs if x is not None]
    outs = op.infer(*avals, **node.attrs)
    if isinstance(outs, Aval):
        outs = (outs,)
    return outs[i]


def backward(heads, head_grads=None, retain_graph: bool = False, train_mode: bool = True,
             create_graph: bool = False) -> None:
    """Compute gradients of `heads` and write them into the `.grad` of every variable reached."""
    heads, head_grads = _as_lists(heads, head_grads)
    _check_recorded(heads)
    cts, leaves = _run_backward(heads, head_grads, create_graph, retain_graph,
                                train_mode=train_mode)
    # Without create_graph or retain_graph nothing refers to a cotangent after this call, so a
    # variable may take a cotangent's buffer as its gradient instead of copying it (the W2
    # training step: six copies, about 70 us of 2 ms) when nothing else holds that buffer.
    users = {id(hg) for hg in head_grads if hg is not None}
    may_take = not (create_graph or retain_graph)
    for k, leaf in leaves.items():
        g = cts.get(k)
        if g is not None:
            if may_take and id(g) not in users and _sole_owner(g):
                g._handover = True
            leaf._accumulate_grad(g)


def _sole_owner(g) -> bool:
    """Whether cotangent `g` is the only holder of its buffer: made by a gradient rule in this
    backward pass (not a recorded or user array), owning its memory (not a view), and with no
    other reference to it (the attribute and the argument below are the two counted)."""
    if g._node is not None or g._grad_req is not None:
        return False
    data = g._data
    return data.base is None and sys.getrefcount(data) == 3


def grad(heads, variables, head_grads=None, retain_graph: bool | None = None,
         create_graph: bool = False, train_mode: bool = True):
    """Gradients of `heads` with respect to `variables`, returned rather than written to `.grad`.

    With `create_graph=True` the result is itself recorded, for higher-order derivatives.
    """
    from .ndarray import ndarray, wrap

    single = isinstance(variables, ndarray)
    variables = [variables] if single else list(variables)
    heads, head_grads = _as_lists(heads, head_grads)
    _check_recorded(heads)
    if retain_graph is None:
        retain_graph = create_graph
    cts, _ = _run_backward(heads, head_grads, create_graph, retain_graph,
                           keep=[_key(v) for v in variables], train_mode=train_mode)
    result = []
    for v in variables:
        g = cts.get(_key(v))
        if g is not None:
            g._handover = False   # the caller holds it now: never a gradient buffer later
        result.append(g if g is not None else wrap(_np.zeros(v.shape, v.dtype)))
    return result[0] if single else result


def _as_lists(heads, head_grads):
    if isinstance(heads, _ndarray):
        heads = [heads]
        if isinstance(head_grads, (list, tuple)) and len(head_grads) == 1:
            head_grads = list(head_grads)
        else:
            head_grads = [head_grads]
    else:
        heads = list(heads)
        head_grads = list(head_grads) if head_grads is not None else [None] * len(heads)
    return heads, head_grads


def _check_recorded(heads: Sequence) -> None:
    for h in heads:
        if h._node is None and h._grad_req is None:
            raise KilnError(
                "backward(): this array was not computed under autograd.record() from arrays "
                "that need gradients. Call attach_grad() on the inputs (Gluon parameters do "
                "this for you) and compute the head inside `with autograd.record():`.")


class Function:
    """A user-defined differentiable function with its own `forward` and `backward` (MXNet API).

    Subclasses implement ``forward(self, *inputs)`` and ``backward(self, *output_grads)`` on
    arrays; ``save_for_backward`` keeps what backward needs.
    """

    def __init__(self):
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    def __call__(self, *inputs):
        from .ndarray import ndarray

        with pause():
            outputs = self.forward(*inputs)
        single = isinstance(outputs, ndarray)
        outs = (outputs,) if single else tuple(outputs)
        tracked = any(x._node is not None or x._grad_req is not None
                      for x in inputs if isinstance(x, ndarray))
        if STATE.recording and tracked:
            def vjp(ins, _outs, cts, **_attrs):
                with pause():
                    grads = self.backward(*cts)
                return (grads,) if isinstance(grads, ndarray) else tuple(grads)

            node = TapeNode(vjp, tuple(inputs), {}, len(outs), type(self).__name__)
            outs = tuple(o.detach() for o in outs)
            for i, o in enumerate(outs):
                o._node, o._oidx = node, i
        return outs[0] if single else outs

    def forward(self, *inputs):
        raise NotImplementedError("subclasses of autograd.Function implement forward()")

    def backward(self, *output_grads):
        raise NotImplementedError("subclasses of autograd.Function implement backward()")
