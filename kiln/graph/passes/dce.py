"""Dead-code elimination: keep only what the outputs need (graph inputs always stay)."""

from __future__ import annotations

from ..ir import Graph


def dead_code_elimination(graph: Graph) -> Graph:
    return Graph(graph.inputs, graph.outputs)
