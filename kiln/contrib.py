"""`F.contrib`: MXNet 1.x's control-flow operators, for seed-style `hybrid_forward(self, F, x)`.

`F` is `kiln.ndarray` eagerly and `kiln.symbol` while tracing; `F.contrib` is this module in
both cases, and each function runs eagerly or becomes a graph node depending on its inputs.

    outs, states = F.contrib.foreach(body, data, init_states)
    outs, loop_vars = F.contrib.while_loop(cond, func, loop_vars, max_iterations)
    out = F.contrib.cond(pred, then_func, else_func)      # zero-argument branch functions
"""

from __future__ import annotations

from collections.abc import Callable

from . import control_flow as _cf

__all__ = ["foreach", "while_loop", "cond"]

foreach = _cf.foreach
while_loop = _cf.while_loop


def cond(pred, then_func: Callable, else_func: Callable):
    """MXNet 1.x's `contrib.cond`: `then_func()` if `pred` else `else_func()` (the branches take
    no arguments; whatever they read from outside becomes an input of the node)."""
    return _cf.cond(pred, then_func, else_func, [])
