"""Seeing graphs: `plot_network` draws a symbol, a graph or a hybridized block as Graphviz dot.

    >>> dot = kiln.viz.plot_network(net, x)          # a block and an example input
    >>> dot.save("mlp.dot"); dot.render("mlp.svg")  # rendering needs Graphviz's `dot`

The dot text is always produced; rendering to SVG/PNG uses the `dot` program when it is
installed and says how to get it when it is not.
"""

from __future__ import annotations

import shutil
import subprocess

from .base import KilnError
from .graph.ir import CONST, VAR, Graph
from .ops.registry import format_aval

__all__ = ["plot_network", "Digraph"]

_COLORS = {"fully_connected": "#fb8072", "fused_dense": "#fb8072", "convolution": "#fb8072",
           "pooling": "#80b1d3", "batch_norm": "#bebada", "relu": "#ffffb3",
           "sigmoid": "#ffffb3", "tanh": "#ffffb3", "softmax": "#fccde5",
           "fused_elementwise": "#b3de69"}


class Digraph:
    """Graphviz source with `save` and `render`."""

    def __init__(self, source: str):
        self.source = source

    def __str__(self) -> str:
        return self.source

    def save(self, path: str) -> str:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.source)
        return path

    def render(self, path: str, fmt: str | None = None) -> str:
        """Write `path` (.svg, .png, .pdf) with Graphviz's `dot` program."""
        fmt = fmt or path.rsplit(".", 1)[-1]
        exe = shutil.which("dot")
        if exe is None:
            raise KilnError("rendering needs Graphviz's `dot` program (apt-get install graphviz, "
                            "or brew install graphviz); the dot text itself is in .source")
        subprocess.run([exe, f"-T{fmt}", "-o", path], input=self.source.encode(), check=True)
        return path

    def _repr_svg_(self):  # shown inline in notebooks when Graphviz is present
        exe = shutil.which("dot")
        if exe is None:
            return None
        return subprocess.run([exe, "-Tsvg"], input=self.source.encode(), check=True,
                              capture_output=True).stdout.decode()


def _as_graph(obj, inputs) -> Graph:
    if isinstance(obj, Graph):
        return obj
    if getattr(obj, "_kiln_symbolic", False):
        return obj.graph()
    if hasattr(obj, "hybridize"):
        from .symbol.tracing import trace

        if not inputs:
            raise KilnError("plot_network(block, *inputs): give example inputs to trace with")
        return trace(lambda *a: obj.forward(*a), list(inputs)).graph
    raise KilnError(f"plot_network needs a symbol, a graph or a block, not {type(obj).__name__}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot_network(obj, *inputs, title: str = "plot", show_shapes: bool = True,
                 hide_weights: bool = True) -> Digraph:
    """The data-flow graph of `obj` as Graphviz dot (inputs, operators, shapes on edges)."""
    graph = _as_graph(obj, inputs)
    data_inputs = set()
    for n in graph.inputs:
        if not hide_weights or "." not in (n.name or "") and "weight" not in (n.name or ""):
            data_inputs.add(id(n))
    lines = [f"digraph {_quote(title)} {{", "  rankdir=BT;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];']
    ids: dict[int, str] = {}
    for k, n in enumerate(graph.nodes):
        if n.op == VAR and id(n) not in data_inputs:
            continue
        if n.op == CONST and hide_weights:
            continue
        ids[id(n)] = f"n{k}"
        label = n.name if n.op == VAR else n.op
        if n.op == CONST:
            label = f"const {format_aval(n.avals[0])}"
        color = "#8dd3c7" if n.op == VAR else _COLORS.get(n.op, "#d9d9d9")
        lines.append(f"  n{k} [label={_quote(label)}, fillcolor={_quote(color)}];")
    for n in graph.nodes:
        if id(n) not in ids:
            continue
        for v in n.inputs:
            if id(v.node) not in ids:
                continue
            label = ""
            if show_shapes and v.aval is not None:
                label = f" [label={_quote(format_aval(v.aval))}]"
            lines.append(f"  {ids[id(v.node)]} -> {ids[id(n)]}{label};")
    for i, v in enumerate(graph.outputs):
        lines.append(f'  out{i} [label="output {i}", shape=oval, fillcolor="#ffffff"];')
        if id(v.node) in ids:
            label = f" [label={_quote(format_aval(v.aval))}]" if show_shapes and v.aval else ""
            lines.append(f"  {ids[id(v.node)]} -> out{i}{label};")
    lines.append("}")
    return Digraph("\n".join(lines))
