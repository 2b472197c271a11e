"""Reverse-mode differentiation of a graph, giving a forward graph and a backward graph.

The gradient rules of the registry are applied to symbols standing for the forward values, so
the backward graph is built by the same rules that autograd runs eagerly. Control-flow nodes are
first linearized (`kiln/graph/loop_grad.py`): a loop's forward then also stacks the per-step
residuals that its backward, a reverse loop, reads. The joint graph is then
split: the backward part (everything that depends on the output cotangents) becomes its own
graph, and the forward values it reads ("residuals") become extra outputs of the forward graph.

    fwd(inputs)                  -> outputs, residuals
    bwd(saved inputs, residuals, cotangents) -> gradients of the inputs in `wrt`
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import KilnError
from ..ops.fused import BINARY_CHAIN_OPS, SCALAR_CHAIN_OPS, UNARY_CHAIN_OPS
from ..ops.registry import REGISTRY
from .ir import CONST, VAR, Graph, Node, Value, const_node, var_node


@dataclass
class Differentiated:
    forward: Graph          # inputs as given; outputs: the original outputs, then residuals
    backward: Graph         # inputs: input residuals, computed residuals, cotangents
    joint: Graph            # inputs: forward inputs, cotangents; outputs: gradients (reference)
    input_residuals: list[int]   # forward input positions the backward graph reads
    num_residuals: int           # computed residuals appended to the forward outputs
    wrt: list[int]               # forward input positions that get gradients
    cotangent_outputs: list[int]  # forward output positions that take a cotangent


def _sym(v: Value):
    from ..symbol.symbol import Symbol

    return Symbol((v,))


def _active(graph: Graph, wrt: list[int]) -> set[int]:
    """Ids of the nodes whose value depends on the inputs in `wrt`."""
    active = {id(graph.inputs[i]) for i in wrt}
    for n in graph.nodes:
        if any(id(v.node) in active for v in n.inputs):
            active.add(id(n))
    return active


def _linearize_loops(graph: Graph, wrt: list[int]) -> tuple[Graph, dict]:
    """Replace each control-flow node that needs a gradient by its linearized form (a loop that
    also stacks the residuals its backward reads); returns the graph and, per new node id, the
    (outputs standing for the old node's, backward rule) pair for the reverse sweep."""
    active = _active(graph, wrt)
    rules: dict[int, tuple] = {}

    def visit(n: Node, inputs: list[Value]):
        op = n.op_def
        if op is None or op.linearize is None or id(n) not in active:
            return None
        outs, backward = op.linearize(n.subgraphs, [_sym(v) for v in inputs], n.attrs)
        values = [o._outputs[0] for o in outs]
        rules[id(values[0].node)] = (values, backward)
        return values

    if not any(n.subgraphs for n in graph.nodes):
        return graph, rules
    from .passes.rewrite import rewrite

    return rewrite(graph, visit), rules


def differentiate(graph: Graph, wrt: list[int], num_outputs: int) -> Differentiated:
    """Differentiate the first `num_outputs` outputs of `graph` w.r.t. inputs `wrt`."""
    from ..ops.elementwise import zeros_like
    from ..symbol import symbol as symbol_module

    graph, loop_rules = _linearize_loops(graph, wrt)
    active = _active(graph, wrt)
    ct_inputs: list[Node] = []
    cotangent_outputs: list[int] = []
    cts: dict[Value, object] = {}
    for i, v in enumerate(graph.outputs[:num_outputs]):
        if v.aval is None or v.aval.dtype.kind != "f":
            continue
        node = var_node(f"cotangent{i}", v.aval)
        ct_inputs.append(node)
        cotangent_outputs.append(i)
        ct = _sym(Value(node, 0))
        cts[v] = cts[v] + ct if v in cts else ct

    for n in reversed(graph.nodes):
        if n.op in (VAR, CONST):
            continue
        out_cts = [cts.pop(Value(n, i), None) for i in range(n.num_outputs)]
        if all(c is None for c in out_cts) or id(n) not in active:
            continue
        op = REGISTRY[n.op]
        if not op.differentiable:
            continue
        if op.grad is None:
            raise KilnError(f"{n.op} has no gradient rule")
        where = symbol_module.location(f"grad of {n.op}" + (f" at {n.loc}" if n.loc else ""))
        if id(n) in loop_rules:  # a linearized loop: its rule takes the old outputs' cotangents
            values, backward = loop_rules[id(n)]
            out_cts = [out_cts[v.index] for v in values]
            with where:
                in_cts = backward(out_cts)
        else:
            outputs = [_sym(Value(n, i)) for i in range(n.num_outputs)]
            out_cts = [c if c is not None else zeros_like(o) for c, o in zip(out_cts, outputs)]
            inputs = [_sym(v) for v in n.inputs]
            with where:
                if op.has_subgraphs:
                    in_cts = op.grad(n.subgraphs, inputs, outputs, out_cts, **n.attrs)
                else:
                    in_cts = op.grad(inputs, outputs, out_cts, **n.attrs)
        for v, g in zip(n.inputs, in_cts):
            if g is None or v.aval is None or v.aval.dtype.kind != "f":
                continue
            cts[v] = cts[v] + g if v in cts else g

    grads = []
    for i in wrt:
        v = Value(graph.inputs[i], 0)
        g = cts.get(v)
        if g is None:
            g = _sym(Value(const_node(_zeros(v.aval)), 0))
        grads.append(g._outputs[0])
    joint = Graph(list(graph.inputs) + ct_inputs, grads)
    return _split(graph, joint, ct_inputs, wrt, num_outputs, cotangent_outputs)


def _zeros(aval):
    import numpy as _np

    return _np.zeros(aval.shape, aval.dtype)


# Elementwise operators cheap enough to compute again in the backward graph (see _recompute).
_RECOMPUTED_OPS = UNARY_CHAIN_OPS | SCALAR_CHAIN_OPS | BINARY_CHAIN_OPS


def _recompute(graph: Graph, joint: Graph, backward_ids: set[int]) -> None:
    """Move into the backward graph the cheap elementwise nodes that gradient rules made without
    reading a cotangent and that only the backward reads (sigmoid's `1 - y`, tanh's `y * y`).

    Left in the forward graph, each would be computed there and saved: one more array written
    forward and read backward. Recomputed, the backward reads the values they are made from,
    which it usually saves anyway (y), and the fusion pass folds them into its elementwise
    chain. LeNet's training step (sigmoid on 256x6x28x28) lost a 1.1 ms forward pass this way.
    """
    original = {id(n) for n in graph.nodes}
    outputs = {id(v.node) for v in joint.outputs}
    users: dict[int, list[Node]] = {}
    for n in joint.nodes:
        for v in n.inputs:
            users.setdefault(id(v.node), []).append(n)
    for n in reversed(joint.nodes):     # users first, so chains move whole
        if id(n) in backward_ids or id(n) in original or id(n) in outputs or \
                n.op not in _RECOMPUTED_OPS:
            continue
        readers = users.get(id(n), ())
        if readers and all(id(r) in backward_ids for r in readers):
            backward_ids.add(id(n))


def _split(graph: Graph, joint: Graph, ct_inputs: list[Node], wrt, num_outputs,
           cotangent_outputs) -> Differentiated:
    backward_ids = {id(n) for n in ct_inputs}
    for n in joint.nodes:
        if any(id(v.node) in backward_ids for v in n.inputs):
            backward_ids.add(id(n))
    _recompute(graph, joint, backward_ids)
    input_pos = {id(n): i for i, n in enumerate(graph.inputs)}

    input_residuals: list[int] = []
    computed: list[Value] = []
    residual_var: dict[Value, Value] = {}

    def residual(v: Value) -> Value:
        if v in residual_var:
            return residual_var[v]
        if v.node.op == CONST:
            return v  # constants are copied into the backward graph as they are
        node = var_node(f"residual{len(residual_var)}", v.aval)
        residual_var[v] = Value(node, 0)
        if id(v.node) in input_pos:
            input_residuals.append(input_pos[id(v.node)])
        else:
            computed.append(v)
        return residual_var[v]

    env: dict[Value, Value] = {Value(n, 0): Value(n, 0) for n in ct_inputs}
    for n in joint.nodes:
        if id(n) not in backward_ids or n.op == VAR:
            continue
        inputs = [env[v] if id(v.node) in backward_ids else residual(v) for v in n.inputs]
        copy = Node(n.op, inputs, n.attrs, n.avals, n.name, n.loc, n.value, n.subgraphs)
        for i in range(n.num_outputs):
            env[Value(n, i)] = Value(copy, i)
    outputs = [env[v] if id(v.node) in backward_ids else residual(v) for v in joint.outputs]

    res_inputs = [residual_var[Value(graph.inputs[i], 0)].node for i in input_residuals]
    res_computed = [residual_var[v].node for v in computed]
    backward = Graph(res_inputs + res_computed + ct_inputs, outputs)
    forward = Graph(graph.inputs, list(graph.outputs) + computed)
    return Differentiated(forward, backward, joint, input_residuals, len(computed), list(wrt),
                          cotangent_outputs)
