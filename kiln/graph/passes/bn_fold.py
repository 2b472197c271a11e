"""BatchNorm folding for inference: conv/dense followed by batch_norm becomes one conv/dense.

    batch_norm(conv(x, w, b)) = conv(x, w * s, (b - mean) * s + beta),  s = gamma / sqrt(var + eps)

The scaled weights are computed in the graph from the live parameters (a few small elementwise
nodes per layer), so the rewrite stays exact when the parameters are trained further; what it
removes is a full pass over the activations.
"""

from __future__ import annotations

from ..ir import Graph, Node, Value
from .rewrite import build, rewrite

_FOLDABLE = {"convolution": "num_filter", "fully_connected": "num_hidden"}


def fold_batch_norm(graph: Graph) -> Graph:
    readers: dict[Value, int] = {}
    for n in graph.nodes:
        for v in n.inputs:
            readers[v] = readers.get(v, 0) + 1
    for v in graph.outputs:
        readers[v] = readers.get(v, 0) + 1

    def visit(n: Node, inputs: list[Value]):
        if n.op != "batch_norm" or n.attrs.get("training") or not _channels_first(n):
            return None
        if readers.get(Value(n, 1), 0) or readers.get(Value(n, 2), 0):
            return None  # someone reads the statistics: keep the node
        src = inputs[0].node
        if src.op not in _FOLDABLE or readers.get(n.inputs[0], 0) != 1:
            return None
        if src.op == "fully_connected" and len(n.avals[0].shape) != 2:
            return None
        _, gamma, beta, mean, var = inputs
        x, w = src.inputs[0], src.inputs[1]
        channels = w.aval.shape[0]
        std = build("sqrt", [build("add_scalar", [var], {"scalar": float(n.attrs["eps"])}, n)],
                    {}, n)
        if n.attrs.get("fix_gamma"):
            scale = build("reciprocal", [std], {}, n)
        else:
            scale = build("true_divide", [gamma, std], {}, n)
        bshape = (channels,) + (1,) * (len(w.aval.shape) - 1)
        w_scaled = build("multiply", [w, build("reshape", [scale], {"newshape": bshape}, n)], {},
                         src)
        shifted = build("negative", [mean], {}, n) if len(src.inputs) < 3 else \
            build("subtract", [src.inputs[2], mean], {}, n)
        bias = build("add", [build("multiply", [shifted, scale], {}, n), beta], {}, n)
        attrs = dict(src.attrs, no_bias=False)
        # It computes the batch_norm's output now: its name (verify=True compares by name).
        folded = Node(src.op, [x, w_scaled, bias], attrs, src.avals, n.name, src.loc)
        return [Value(folded, 0), mean, var]
    return rewrite(graph, visit)


def _channels_first(n: Node) -> bool:
    """Normalised over axis 1, the output channels of a dense or convolution layer (axis -3 is
    axis 1 only for 4-D data)."""
    aval = n.avals[0]
    return aval is not None and n.attrs.get("axis", 1) % len(aval.shape) == 1
