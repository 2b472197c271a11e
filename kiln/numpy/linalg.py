"""`kiln.np.linalg`: norms built from differentiable operators."""

from __future__ import annotations

from ..base import KilnError
from ..ops import elementwise as _ew
from ..ops import reduce as _reduce


def norm(x, ord=None, axis=None, keepdims: bool = False):
    """Vector 2-norm (default), 1-norm, inf-norm, or the Frobenius norm of a matrix."""
    if ord in (None, 2, "fro") and (ord != 2 or axis is not None or len(x.shape) == 1):
        return _ew.sqrt(_reduce.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == 1:
        return _reduce.sum(_ew.absolute(x), axis=axis, keepdims=keepdims)
    if ord in (float("inf"), "inf"):
        return _reduce.max(_ew.absolute(x), axis=axis, keepdims=keepdims)
    raise KilnError(f"norm: ord={ord!r} is not supported (use None, 1, 2, 'fro' or inf)")
