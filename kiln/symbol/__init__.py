"""`kiln.symbol` (also `kiln.sym`): symbolic graphs, and `F` in a traced `hybrid_forward`.

`F.np` and `F.npx` are the same operators as `kiln.np` and `kiln.npx`: applied to symbols they
record graph nodes. MXNet 1.x spellings (`F.FullyConnected`, `F.Activation` ...) resolve too.

    >>> from kiln import sym
    >>> x = sym.var('x', shape=(2, 3))
    >>> y = sym.np.tanh(x) * 2
    >>> y.eval(x=kiln.np.ones((2, 3)))
"""

from __future__ import annotations

from .. import numpy as np
from .. import numpy_extension as npx
from . import legacy as _legacy
from . import tracing as _tracing
from .symbol import Group, Symbol, Variable, constant, var

_tracing.install()


def load(fname: str) -> Symbol:
    """Read a symbol-JSON file (kiln's or MXNet 1.x's)."""
    from ..io.symbol_json import load_json_file

    return load_json_file(fname)


def fromjson(json_str: str) -> Symbol:
    """Read a symbol from its JSON text (kiln's or MXNet 1.x's)."""
    from ..io.symbol_json import symbol_from_json

    return symbol_from_json(json_str, "<json string>")


load_json = fromjson


def __getattr__(name: str):
    if name == "contrib":  # F.contrib.foreach ...: control flow, MXNet 1.x signatures
        from .. import contrib

        return contrib
    # F.FullyConnected, F.Activation ...: MXNet 1.x names.
    try:
        return getattr(_legacy, name)
    except AttributeError:
        raise AttributeError(f"module 'kiln.symbol' has no attribute {name!r}") from None


__all__ = ["Symbol", "var", "Variable", "Group", "constant", "load", "fromjson", "np", "npx"]
