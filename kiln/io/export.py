"""`HybridBlock.export`: a block's predict-mode graph and parameters as MXNet 1.x model files.

`export_block(net, 'model', epoch)` writes

- `model-symbol.json`: the graph in MXNet's symbol-JSON format (see `symbol_json`), inputs
  named `data` (or `data0`, `data1` ...), parameters by their structured names ('0.weight');
- `model-%04d.params`: the parameters in MXNet's binary format (see `params`), named
  `arg:<name>` (trained) and `aux:<name>` (auxiliary states: BatchNorm's running statistics).

In numpy mode (the default, as MXNet 2 and `npx.set_np()` write) the graph carries
`is_np_shape` and the params file V3 records; `mode='legacy'` writes what MXNet 1.x reads
outside numpy mode (legacy op names, V2 records).

The graph is traced anew from the signature the block last ran with, in predict mode: BatchNorm
uses its running statistics, Dropout is gone. Only graph passes that keep MXNet operators run
(no fusion, no BatchNorm folding), so MXNet can read every file whose operators it has.
"""

from __future__ import annotations

import numpy as _np

from .. import autograd
from ..base import KilnError
from ..graph.ir import Graph, topological_order
from ..graph.passes import run_pipeline
from ..ndarray import wrap
from .params import save_params
from .symbol_json import graph_to_mx

__all__ = ["export_block", "trace_for_export", "NotHybridizedError"]

#: passes that never introduce operators MXNet lacks
EXPORT_PASSES = ("cse", "dce")


class NotHybridizedError(KilnError, RuntimeError):
    """export() before the block ran hybridized: there is no graph to export yet."""


def _last_signature(block) -> list:
    """The positional arguments (dummy arrays and static values) of the block's last call;
    lists of arrays (a recurrent layer's states) come back as lists."""
    cache = getattr(block, "_cache", None)
    nested = getattr(cache, "last_nested", None)
    if nested is not None and cache.last_key is None:
        from ..control_flow import unflatten

        tree, inner = nested
        return unflatten(tree, _arguments(inner.last_key[0]))
    if not getattr(block, "_active", False) or cache is None or cache.last_key is None:
        raise NotHybridizedError(
            f"{type(block).__name__}.export: the block has not run hybridized yet, so there is "
            "no graph to export. Call net.hybridize() and run one batch through it (net(x)), "
            "then export.")
    return _arguments(cache.last_key[0])


def _arguments(parts) -> list:
    args = []
    for part in parts:
        if len(part) == 3 and isinstance(part[0], tuple):
            shape, dtype_char, _ = part
            args.append(wrap(_np.zeros(shape, _np.dtype(dtype_char))))
        elif part[0] == "static":
            args.append(part[-1])
    return args


def trace_for_export(block, args: list | None = None) -> tuple[Graph, dict]:
    """The block's predict-mode graph for `args` (default: its last call's signature) and its
    parameters by variable name."""
    from ..symbol.tracing import scope, trace

    if args is None:
        args = _last_signature(block)
    block.collect_params()  # gives every parameter its structured name

    from ..control_flow import flatten, unflatten

    leaves, tree = flatten(list(args))   # lists of arrays: one input per array

    def forward(*sym_args):
        with scope(block.name):
            return block.forward(*unflatten(tree, sym_args))

    with autograd.predict_mode():
        traced = trace(forward, leaves)
    outputs = traced.graph.outputs[:traced.num_outputs]
    nodes = topological_order(outputs)
    used = {id(n) for n in nodes}
    inputs = [n for n in traced.graph.inputs if id(n) in used]
    graph = Graph(inputs, outputs, topological_order(outputs, inputs))
    graph = run_pipeline(graph, training=False, passes=EXPORT_PASSES)
    param_nodes = traced.graph.inputs[traced.num_args:]
    params = {n.name: p for n, p in zip(param_nodes, traced.params, strict=True)}
    return graph, params


def export_block(block, path: str, epoch: int = 0, mode: str = "numpy",
                 remove_amp_cast: bool = True) -> tuple[str, str]:
    """Write `path-symbol.json` and `path-%04d.params`; returns both file names."""
    if mode not in ("numpy", "legacy"):
        raise KilnError(f"export: mode must be 'numpy' or 'legacy', not {mode!r}")
    graph, params = trace_for_export(block)
    mx, constants = graph_to_mx(graph, mode, params)
    aux = mx.aux_names()
    arrays = {}
    for node in mx.nodes:
        if not node.is_var:
            continue
        if node.name in params:
            p = params[node.name]
            prefix = "aux:" if node.name in aux else "arg:"
            arrays[prefix + node.name] = p._data._data
        elif node.name in constants:
            value = constants[node.name]
            if mode == "legacy" and value.ndim == 0:  # V2 records cannot hold 0-d arrays
                value = value.reshape(1)
                node.raw["__shape__"] = "(1,)"
            arrays["arg:" + node.name] = value
    for name, value in arrays.items():
        if mode == "legacy" and value.ndim == 0:
            raise KilnError(f"export: parameter {name[4:]!r} is 0-dimensional, which the legacy "
                            "(V2) params format cannot hold; export with mode='numpy'")
    sym_file = f"{path}-symbol.json"
    params_file = f"{path}-{int(epoch):04d}.params"
    with open(sym_file, "w", encoding="utf-8") as f:
        f.write(mx.to_json())
    save_params(params_file, arrays, numpy_shape=mode == "numpy")
    return sym_file, params_file
