"""kiln's operators, one module per family; importing this package registers them all.

`REGISTRY` maps each operator's name to its `Op` class (see `registry.py`).
"""

from . import (  # noqa: F401
    activations, control_flow, conv, elementwise, fused, linalg, nn, nn_extra, norm, pooling,
    random, reduce, rnn, shape,
)
from .registry import REGISTRY, Aval, Op, get_op

__all__ = ["REGISTRY", "Aval", "Op", "get_op"]
