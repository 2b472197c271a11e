"""Matrix inverse, determinants and linear solves (`np.linalg.inv`, `det`, `slogdet`, `solve`),
on the last two axes, batched over the others as NumPy's."""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import numpy as _np

from ..base import ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import linalg as _linalg
from . import shape as _shape


def _square(name: str, a) -> None:
    shape = tuple(a.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(f"{name}: needs square matrices in the last two axes, not shape {shape}")


def _float_dtype(dtype) -> _np.dtype:
    # LAPACK works in float32/float64; integers are solved in float64, as NumPy does.
    dtype = _np.dtype(dtype)
    return dtype if dtype.kind == "f" and dtype.itemsize >= 4 else _np.dtype(_np.float64)


def _mT(x):
    return _shape.swapaxes(x, -1, -2)


class Inv(Op):
    """The inverse of each square matrix."""

    name = "inv"
    mx_name = "_npi_inv"
    save_outputs = True

    def impl(a):
        return _np.linalg.inv(a)

    def infer(a):
        _square("inv", a)
        return Aval(tuple(a.shape), _float_dtype(a.dtype))

    def grad(inputs, outputs, cts):
        # d(A^-1) = -A^-1 dA A^-1, so the cotangent of A is -A^-T G A^-T.
        y_t = _mT(outputs[0])
        return (-_linalg.matmul(_linalg.matmul(y_t, cts[0]), y_t),)


def inv(a):
    """The inverse of a square matrix (or of each one in a stack)."""
    _square("inv", a)
    return apply(Inv, (a,))


class Det(Op):
    """The determinant of each square matrix."""

    name = "det"
    mx_name = "_npi_det"
    save_outputs = True

    def impl(a):
        return _np.asarray(_np.linalg.det(a))

    def infer(a):
        _square("det", a)
        return Aval(tuple(a.shape[:-2]), _float_dtype(a.dtype))

    def grad(inputs, outputs, cts):
        # d det(A) / dA = det(A) A^-T (for invertible A).
        a = inputs[0]
        scale = _shape.expand_dims(_shape.expand_dims(cts[0] * outputs[0], -1), -1)
        return (scale * _mT(inv(a)),)


def det(a):
    """The determinant of a square matrix (or of each one in a stack)."""
    _square("det", a)
    return apply(Det, (a,))


class Slogdet(Op):
    """(sign, log|det|) of each square matrix: the determinant without overflow."""

    name = "slogdet"
    mx_name = "_npi_slogdet"
    num_outputs = 2

    def impl(a):
        sign, logabs = _np.linalg.slogdet(a)
        return _np.asarray(sign), _np.asarray(logabs)

    def infer(a):
        _square("slogdet", a)
        aval = Aval(tuple(a.shape[:-2]), _float_dtype(a.dtype))
        return aval, aval

    def grad(inputs, outputs, cts):
        # The sign is piecewise constant; d log|det A| / dA = A^-T.
        g = _shape.expand_dims(_shape.expand_dims(cts[1], -1), -1)
        return (g * _mT(inv(inputs[0])),)


def slogdet(a):
    """(sign, log|det|) of a square matrix (or of each one in a stack)."""
    _square("slogdet", a)
    return apply(Slogdet, (a,))


class Solve(Op):
    """x with a @ x = b, for square `a`; `b` is a matrix, or a vector when it has one axis
    fewer than `a` (NumPy 2's rule)."""

    name = "solve"
    mx_name = "_npi_solve"
    inputs = ("a", "b")
    save_outputs = True

    def impl(a, b):
        return _np.linalg.solve(a, b)

    def infer(a, b):
        _square("solve", a)
        n = a.shape[-1]
        vector = len(b.shape) == 1
        rows = b.shape[-1] if vector else b.shape[-2]
        if rows != n:
            raise ShapeError(f"solve: a of shape {tuple(a.shape)} and b of shape "
                             f"{tuple(b.shape)} do not match ({n} != {rows})")
        if vector:
            shape = tuple(a.shape[:-1])
        else:
            shape = _np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2])) + tuple(
                b.shape[-2:])
        return Aval(shape, _np.result_type(_float_dtype(a.dtype), _float_dtype(b.dtype)))

    def grad(inputs, outputs, cts):
        # x = A^-1 b: the cotangent of b is A^-T g, that of A is -(A^-T g) x^T. A vector b is
        # handled as a one-column matrix.
        a, b = inputs
        x, g = outputs[0], cts[0]
        vector = len(b.shape) == 1
        if vector:
            x, g = _shape.expand_dims(x, -1), _shape.expand_dims(g, -1)
        gb = solve(_mT(a), g)
        ga = _ew.unbroadcast(-_linalg.matmul(gb, _mT(x)), a.shape)
        if vector:
            gb = _shape.squeeze(gb, -1)
        return ga, _ew.unbroadcast(gb, b.shape)


def solve(a, b):
    """The solution x of a @ x = b."""
    _square("solve", a)
    return apply(Solve, (a, b))
