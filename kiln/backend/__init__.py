"""Backends: turn an optimised graph into something callable.

A backend is an object with a `name` and `compile(graph, bound, options) -> Compiled`. `bound`
maps some graph inputs (parameters) to the NumPy arrays that hold them: a backend may refer to
those arrays directly (they are updated in place by optimizers), and the compiled function takes
only the other inputs. Backends register themselves by name; `get_backend` finds one.

Control-flow nodes (`foreach`, `while_loop`, `cond`) carry their bodies as graphs in
`node.subgraphs`; a backend compiles each body as a nested function or loop body and calls the
operator's `impl(bodies, *arrays, **attrs)`, or lowers the loop itself (docs/control_flow.md).
`node_impl(node)` is any node's NumPy implementation with everything bound, for nodes a backend
runs in Python.

    numpy   one generated Python function over NumPy calls and planned buffers (always present)
    native  generated C compiled with the system compiler (kiln.backend.native, when available)
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Callable

from ..base import KilnError

__all__ = ["Backend", "Compiled", "register_backend", "get_backend", "available_backends",
           "node_impl"]


@dataclass
class Compiled:
    """A compiled graph. `fn(*free_inputs)` takes and returns NumPy arrays (a tuple)."""

    fn: Callable
    backend: str
    source: str = ""
    free_inputs: list = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __call__(self, *args):
        return self.fn(*args)


class Backend(Protocol):
    name: str

    def compile(self, graph, bound: dict, options: dict) -> Compiled: ...


_BACKENDS: dict[str, Callable[[], Backend]] = {}


def node_impl(node) -> Callable:
    """`node`'s NumPy implementation as a function of its input arrays, attributes bound: what
    a backend calls for a node it does not lower. A control-flow node's bodies are bound too,
    compiled by the numpy backend (`kiln.ops.control_flow.bodies_for`); see
    docs/control_flow.md for lowering them natively instead."""
    import functools

    from ..ops.registry import REGISTRY

    op = REGISTRY[node.op]
    if node.subgraphs:
        from ..ops.control_flow import bodies_for

        return functools.partial(op.impl, bodies_for(node.subgraphs), **node.attrs)
    return functools.partial(op.impl, **node.attrs)


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    _BACKENDS[name] = factory


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str | None) -> Backend:
    """The backend called `name`.

    None and 'auto' mean $KILN_BACKEND when it is set (KILN_BACKEND=numpy|native forces that
    backend on every block hybridized without an explicit one), else the automatic choice:
    'native' when a C compiler is present, 'numpy' otherwise.
    """
    if name is None or name == "auto":
        name = os.environ.get("KILN_BACKEND") or "auto"
    if name == "auto":
        name = _auto_choice()
    if name not in _BACKENDS:
        _load_optional(name)
    if name not in _BACKENDS:
        raise KilnError(f"unknown backend {name!r}; available: {available_backends()}")
    return _BACKENDS[name]()


def _auto_choice() -> str:
    _load_optional("native")
    if "native" in _BACKENDS:
        from .native import native_available

        if native_available():
            return "native"
    return "numpy"


def _load_optional(name: str) -> None:
    if name == "native":
        with contextlib.suppress(ImportError):
            from . import native  # noqa: F401  (registers itself)


from . import numpy_backend  # noqa: E402,F401  (registers "numpy")
