"""`kiln.np.linalg`: norms built from differentiable operators; inverses, determinants and
solves (differentiable too); NumPy 2's `diagonal`, `trace`, `matmul` and friends."""

from __future__ import annotations

import math

from ..base import KilnError, ShapeError
from ..ops import elementwise as _ew
from ..ops import reduce as _reduce
from ..ops import shape as _shape
from ..ops import linalg as _linalg
from ..ops.linalg import det, inv, matmul, outer, slogdet, solve, tensordot

__all__ = ["det", "diagonal", "inv", "matmul", "norm", "outer", "slogdet", "solve", "tensordot",
           "trace"]


def diagonal(x, offset: int = 0):
    """The diagonal of (each matrix in) the last two axes, as NumPy 2's `linalg.diagonal`."""
    return _linalg.diagonal(x, offset, -2, -1)


def trace(x, offset: int = 0, dtype=None):
    """Sum of the diagonal of (each matrix in) the last two axes, as NumPy 2's
    `linalg.trace`."""
    return _linalg.trace(x, offset, -2, -1, dtype)


def _vector_norm(x, ord, axis: int, keepdims: bool):
    if ord is None or ord == 2:
        return _ew.sqrt(_reduce.sum(x * x, axis=axis, keepdims=keepdims))
    if isinstance(ord, str):
        raise KilnError(f"norm: ord={ord!r} is a matrix norm; a vector norm takes None, inf, "
                        "-inf or a number")
    a = _ew.absolute(x)
    if ord == math.inf:
        return _reduce.max(a, axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return _reduce.min(a, axis=axis, keepdims=keepdims)
    if ord == 0:  # the number of non-zero elements, in the input's float type
        return _reduce.sum(_ew.astype(_ew.not_equal(x, 0), x.dtype), axis=axis,
                           keepdims=keepdims)
    if ord == 1:
        return _reduce.sum(a, axis=axis, keepdims=keepdims)
    p = float(ord)
    return _reduce.sum(a ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(x, ord, axes: tuple, keepdims: bool):
    row, col = axes
    if ord in (None, "fro"):
        out = _ew.sqrt(_reduce.sum(x * x, axis=axes, keepdims=True))
    elif ord in (1, -1, math.inf, -math.inf):
        # 1: largest column sum of |x|; inf: largest row sum (-1, -inf: the smallest)
        summed, other = (row, col) if ord in (1, -1) else (col, row)
        sums = _reduce.sum(_ew.absolute(x), axis=summed, keepdims=True)
        pick = _reduce.max if ord > 0 else _reduce.min
        out = pick(sums, axis=other, keepdims=True)
    else:
        raise KilnError(f"norm: the matrix norm ord={ord!r} is not supported (it needs a "
                        "singular value decomposition); use None, 'fro', 1, -1, inf or -inf")
    if not keepdims:
        out = _shape.squeeze(out, axes)
    return out


def norm(x, ord=None, axis=None, keepdims: bool = False):
    """Vector or matrix norm, as NumPy's `linalg.norm`.

    Over one axis (or a 1-D input): the 2-norm by default, or `ord` = 1, inf, -inf, 0 or any
    number p. Over two axes (or a 2-D input with `ord`): the Frobenius norm by default, or
    `ord` = 'fro', 1, -1, inf, -inf. Without `ord` and `axis`, the 2-norm of all elements.
    """
    if x.dtype.kind not in "fc":  # NumPy computes norms of integers in float64
        x = _ew.astype(x, "float64")
    ndim = len(x.shape)
    if axis is None:
        if ord is None:
            return _ew.sqrt(_reduce.sum(x * x, keepdims=keepdims))
        if ndim not in (1, 2):
            raise ShapeError(f"norm: with ord={ord!r} and no axis the input must be 1-D or 2-D, "
                             f"not shape {tuple(x.shape)}; give the axis (or axes)")
        axes = tuple(range(ndim))
    else:
        axes = _reduce.norm_axis(axis, ndim)
    if len(axes) == 1:
        return _vector_norm(x, ord, axes[0], keepdims)
    if len(axes) == 2:
        if axes[0] == axes[1]:
            raise ShapeError(f"norm: the two axes {axis} are the same axis")
        return _matrix_norm(x, ord, axes, keepdims)
    raise ShapeError(f"norm: axis must be one axis or two, not {axis}")
