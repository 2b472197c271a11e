"""kiln's operators, one module per family; importing this package registers them all.

`REGISTRY` maps each operator's name to its `Op` class (see `registry.py`).
"""

from . import control_flow, elementwise, fused, linalg, nn, random, reduce, shape  # noqa: F401
from .registry import REGISTRY, Aval, Op, get_op

__all__ = ["REGISTRY", "Aval", "Op", "get_op"]
