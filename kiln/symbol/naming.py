"""Names of graph values as MXNet spells them: `<node>_output`, `<node>_output<i>`, variables by
their own name."""

from __future__ import annotations

from ..graph.ir import VAR, Value


def node_name(node) -> str:
    return node.name or f"{node.op}{id(node) % 100000}"


def output_names(values) -> list[str]:
    names = []
    for v in values:
        node: object = v.node
        if node.op == VAR:
            names.append(node.name)
        elif node.num_outputs == 1:
            names.append(f"{node_name(node)}_output")
        else:
            names.append(f"{node_name(node)}_output{v.index}")
    return names


def value_of(values: list[Value], name: str) -> Value:
    names = output_names(values)
    return values[names.index(name)]
