"""Graph optimisation passes, each a small `Graph -> Graph` function, run as one pipeline.

Each pass also runs inside the bodies of control-flow nodes (innermost first); at the outer
level such a node is opaque: never folded, never merged with another (cse, fold).

Switches (also per block: `hybridize(disable_passes=[...], dump_ir=True, verify_ir=True)`):

    KILN_DISABLE_PASSES=cse,fold   skip passes by name (bisecting a miscompilation)
    KILN_DEBUG=1                   print the graph after hybridize
    KILN_DEBUG=2                   ... and verify the IR after every pass
    KILN_DEBUG=3                   ... and print the IR after every pass
    KILN_DUMP_DIR=path             write the IR after every pass (and the generated code) there
"""

from __future__ import annotations

import os
import time

from ...base import KilnError, env_int, env_list
from ..ir import Graph, format_graph, verify
from .bn_fold import fold_batch_norm
from .cse import common_subexpression_elimination
from .dce import dead_code_elimination
from .fold import constant_folding
from .fuse import fuse_dense_activation, fuse_elementwise
from .rewrite import recursive
from .simplify import algebraic_simplification

__all__ = ["PIPELINE", "run_pipeline", "pass_names"]

# (name, pass, runs on training graphs too)
PIPELINE = [
    ("simplify", algebraic_simplification, True),
    ("fold", constant_folding, True),
    ("cse", common_subexpression_elimination, True),
    ("bn_fold", fold_batch_norm, False),
    ("fold_after_bn", constant_folding, False),
    ("fuse_dense", fuse_dense_activation, True),
    ("fuse_elementwise", fuse_elementwise, True),
    ("dce", dead_code_elimination, True),
]


def pass_names() -> list[str]:
    return [name for name, _, _ in PIPELINE]


def run_pipeline(graph: Graph, training: bool = False, disable=(), dump: bool | None = None,
                 verify_ir: bool | None = None, label: str = "graph", timings: dict | None = None,
                 passes=None) -> Graph:
    """Run the pipeline's passes in order; `training` graphs skip inference-only passes."""
    disabled = set(disable) | set(env_list("KILN_DISABLE_PASSES"))
    unknown = disabled - set(pass_names())
    if unknown:  # a misspelt name would silently disable nothing while bisecting
        raise KilnError(f"unknown pass {sorted(unknown)[0]!r} to disable; the passes are "
                        f"{pass_names()}")
    debug = env_int("KILN_DEBUG")
    dump = debug >= 3 if dump is None else dump
    verify_ir = debug >= 2 if verify_ir is None else verify_ir
    dump_dir = os.environ.get("KILN_DUMP_DIR")
    selected = PIPELINE if passes is None else [p for p in PIPELINE if p[0] in passes]
    for step, (name, fn, on_training) in enumerate(selected):
        if name in disabled or (training and not on_training):
            continue
        start = time.perf_counter()
        graph = recursive(fn)(graph)  # loop and branch bodies get the same passes
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        if verify_ir:
            verify(graph)
        if dump:
            print(f"--- {label} after {name} ---\n{format_graph(graph)}")
        if dump_dir:
            os.makedirs(dump_dir, exist_ok=True)
            with open(os.path.join(dump_dir, f"{label}.{step:02d}.{name}.ir"), "w") as f:
                f.write(format_graph(graph) + "\n")
    return graph
