"""Casts, copies and fills: astype, copy, stop_gradient, full_like, zeros_like, ones_like.
`kiln.ops.elementwise` re-exports them."""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import numpy as _np

from ..ndarray import apply
from .registry import Aval, Op


class Cast(Op):
    """A dtype conversion; the gradient converts back."""

    name = "cast"
    mx_name = "_npi_cast"
    attrs = {"dtype": "float32"}

    def impl(x, *, dtype):
        return x.astype(dtype)

    def infer(x, *, dtype):
        return Aval(x.shape, _np.dtype(dtype))

    def grad(inputs, outputs, cts, *, dtype):
        x = inputs[0]
        if x.dtype.kind not in "fc":
            return (None,)
        return (astype(cts[0], x.dtype.name),)


def astype(x, dtype, copy: bool = True):
    """The values converted to `dtype` (the same array when `copy=False` and it has it)."""
    dtype = _np.dtype(dtype)
    if not copy and x.dtype == dtype:
        return x
    return apply(Cast, (x,), {"dtype": dtype.name})


class Copy(Op):
    name = "copy"
    mx_name = "_np_copy"

    def impl(x):
        return x.copy()

    def infer(x):
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts):
        return (cts[0],)


def copy(a):
    """A copy with its own memory."""
    return apply(Copy, (a,))


class StopGradient(Op):
    """Identity whose result is a constant for autograd (MXNet's BlockGrad)."""

    name = "stop_gradient"
    mx_name = "BlockGrad"
    differentiable = False

    def impl(x):
        return x

    def infer(x):
        return Aval(x.shape, x.dtype)


def stop_gradient(x):
    """The same values as a constant for autograd (MXNet's BlockGrad)."""
    return apply(StopGradient, (x,))


class FullLike(Op):
    """An array of `fill_value` with the shape (and, by default, dtype) of the input."""

    name = "full_like"
    mx_name = "_npi_full_like"
    attrs = {"fill_value": 0.0, "dtype": None}
    differentiable = False

    def impl(x, *, fill_value, dtype):
        return _np.full(x.shape, fill_value, dtype=dtype or x.dtype)

    def infer(x, *, fill_value, dtype):
        return Aval(x.shape, _np.dtype(dtype) if dtype else x.dtype)


def full_like(a, fill_value, dtype=None):
    """An array of `fill_value` with the shape (and by default dtype) of `a`."""
    return apply(FullLike, (a,), {"fill_value": fill_value,
                                  "dtype": None if dtype is None else _np.dtype(dtype).name})


def zeros_like(a, dtype=None):
    """Zeros with the shape (and by default dtype) of `a`."""
    return full_like(a, 0, dtype)


def ones_like(a, dtype=None):
    """Ones with the shape (and by default dtype) of `a`."""
    return full_like(a, 1, dtype)
