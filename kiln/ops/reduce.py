"""Reductions: sum, mean, prod, max, min, std, var, argmax, argmin, all, any.

`axis` is None (everything), an int or a tuple of ints, as in NumPy; it is stored normalised to
None or a tuple so that equal graphs print equally.
"""

from __future__ import annotations

import builtins
import functools

import numpy as _np

from ..base import ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import elementwise as _ew
from . import shape as _shape


def norm_axis(axis, ndim: int | None = None):
    """None, or a tuple of axes (made non-negative when `ndim` is known)."""
    if axis is None:
        return None
    axes = (axis,) if isinstance(axis, (int, _np.integer)) else tuple(axis)
    axes = tuple(int(a) for a in axes)
    if ndim is not None:
        out = []
        for a in axes:
            if not -ndim <= a < builtins.max(ndim, 1):
                raise ShapeError(f"axis {a} is out of bounds for an array of {ndim} dimensions")
            out.append(a % ndim if ndim else 0)
        axes = tuple(out)
    return axes


def reduced_shape(shape: tuple, axis, keepdims: bool) -> tuple:
    axes = range(len(shape)) if axis is None else norm_axis(axis, len(shape))
    axes = set(axes)
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _count(shape: tuple, axis) -> int:
    axes = range(len(shape)) if axis is None else norm_axis(axis, len(shape))
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def expand_to(g, x_shape: tuple, axis, keepdims: bool):
    """Broadcast a reduced cotangent back over the reduced axes of an input of shape x_shape."""
    if not keepdims:
        g = _shape.reshape(g, reduced_shape(x_shape, axis, True))
    return _shape.broadcast_to(g, x_shape)


@functools.lru_cache(maxsize=1024)
def _reduce_dtype(fn_name: str, dtype: _np.dtype, out_dtype) -> _np.dtype:
    fn = getattr(_np, fn_name)
    kwargs = {"dtype": out_dtype} if out_dtype is not None else {}
    with _np.errstate(all="ignore"):
        return _np.asarray(fn(_np.ones(2, dtype), **kwargs)).dtype


class _Reduction(Op):
    """Shared inference for reductions with `axis` and `keepdims`."""

    attrs = {"axis": None, "keepdims": False}
    #: the NumPy reduction whose result dtype the operator has
    numpy_name = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        fn_name = cls.numpy_name

        def infer(x, *, axis, keepdims, dtype=None, ddof=0):
            shape = reduced_shape(x.shape, axis, keepdims)
            return Aval(shape, _reduce_dtype(fn_name, _np.dtype(x.dtype), dtype))

        if fn_name:
            cls.infer = staticmethod(infer)


class Sum(_Reduction):
    name = "sum"
    mx_name = "_np_sum"
    numpy_name = "sum"
    attrs = {"axis": None, "keepdims": False, "dtype": None}

    def impl(x, *, axis, keepdims, dtype):
        return _np.sum(x, axis=axis, keepdims=keepdims, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, dtype):
        x = inputs[0]
        g = expand_to(cts[0], x.shape, axis, keepdims)
        return (_ew.astype(g, x.dtype, copy=False) if x.dtype.kind == "f" else None,)


class Mean(_Reduction):
    name = "mean"
    mx_name = "_npi_mean"
    numpy_name = "mean"
    attrs = {"axis": None, "keepdims": False, "dtype": None}

    def impl(x, *, axis, keepdims, dtype):
        return _np.mean(x, axis=axis, keepdims=keepdims, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, dtype):
        x = inputs[0]
        n = _count(x.shape, axis)
        g = expand_to(cts[0], x.shape, axis, keepdims) / builtins.max(n, 1)
        return (_ew.astype(g, x.dtype, copy=False),)


class Prod(_Reduction):
    name = "prod"
    mx_name = "_np_prod"
    numpy_name = "prod"
    attrs = {"axis": None, "keepdims": False, "dtype": None}
    save_outputs = True

    def impl(x, *, axis, keepdims, dtype):
        return _np.prod(x, axis=axis, keepdims=keepdims, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, dtype):
        x = inputs[0]
        y = expand_to(outputs[0], x.shape, axis, keepdims)
        return (expand_to(cts[0], x.shape, axis, keepdims) * y / x,)


class _Extremum(_Reduction):
    save_outputs = True

    def grad(inputs, outputs, cts, *, axis, keepdims):
        # The cotangent is shared evenly among the elements that attain the extremum.
        x = inputs[0]
        y = expand_to(outputs[0], x.shape, axis, keepdims)
        mask = _ew.astype(_ew.equal(x, y), x.dtype)
        share = expand_to(sum(mask, axis=axis, keepdims=True), x.shape, axis, True)
        return (expand_to(cts[0], x.shape, axis, keepdims) * mask / share,)


class Max(_Extremum):
    name = "max"
    mx_name = "_np_max"
    numpy_name = "max"

    def impl(x, *, axis, keepdims):
        return _np.max(x, axis=axis, keepdims=keepdims)


class Min(_Extremum):
    name = "min"
    mx_name = "_np_min"
    numpy_name = "min"

    def impl(x, *, axis, keepdims):
        return _np.min(x, axis=axis, keepdims=keepdims)


class Var(_Reduction):
    name = "var"
    mx_name = "_npi_var"
    numpy_name = "var"
    attrs = {"axis": None, "keepdims": False, "ddof": 0, "dtype": None}

    def impl(x, *, axis, keepdims, ddof, dtype):
        return _np.var(x, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, ddof, dtype):
        x = inputs[0]
        n = _count(x.shape, axis) - ddof
        centered = x - mean(x, axis=axis, keepdims=True)
        return (expand_to(cts[0], x.shape, axis, keepdims) * centered * (2.0 / n),)


class Std(_Reduction):
    name = "std"
    mx_name = "_npi_std"
    numpy_name = "std"
    attrs = {"axis": None, "keepdims": False, "ddof": 0, "dtype": None}
    save_outputs = True

    def impl(x, *, axis, keepdims, ddof, dtype):
        return _np.std(x, axis=axis, keepdims=keepdims, ddof=ddof, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, ddof, dtype):
        x = inputs[0]
        n = _count(x.shape, axis) - ddof
        y = expand_to(outputs[0], x.shape, axis, keepdims)
        centered = x - mean(x, axis=axis, keepdims=True)
        return (expand_to(cts[0], x.shape, axis, keepdims) * centered / (y * n),)


class _ArgReduction(Op):
    attrs = {"axis": None, "keepdims": False}
    differentiable = False

    def infer(x, *, axis, keepdims):
        if axis is None:
            shape = (1,) * len(x.shape) if keepdims else ()
        else:
            shape = reduced_shape(x.shape, axis, keepdims)
        return Aval(shape, _np.dtype(_np.int64))


class Argmax(_ArgReduction):
    name = "argmax"
    mx_name = "_npi_argmax"

    def impl(x, *, axis, keepdims):
        return _np.argmax(x, axis=axis, keepdims=keepdims)


class Argmin(_ArgReduction):
    name = "argmin"
    mx_name = "_npi_argmin"

    def impl(x, *, axis, keepdims):
        return _np.argmin(x, axis=axis, keepdims=keepdims)


class _BoolReduction(Op):
    attrs = {"axis": None, "keepdims": False}
    differentiable = False

    def infer(x, *, axis, keepdims):
        return Aval(reduced_shape(x.shape, axis, keepdims), _np.dtype(bool))


class All(_BoolReduction):
    name = "all"
    mx_name = "_np_all"

    def impl(x, *, axis, keepdims):
        return _np.all(x, axis=axis, keepdims=keepdims)


class Any(_BoolReduction):
    name = "any"
    mx_name = "_np_any"

    def impl(x, *, axis, keepdims):
        return _np.any(x, axis=axis, keepdims=keepdims)


def _reduce(op, a, axis, keepdims, **extra):
    return apply(op, (a,), {"axis": norm_axis(axis), "keepdims": bool(keepdims), **extra})


def _dtype_name(dtype):
    return None if dtype is None else _np.dtype(dtype).name


def sum(a, axis=None, dtype=None, keepdims=False):
    """Sum over `axis` (all axes by default)."""
    return _reduce(Sum, a, axis, keepdims, dtype=_dtype_name(dtype))


def mean(a, axis=None, dtype=None, keepdims=False):
    """Arithmetic mean over `axis`."""
    return _reduce(Mean, a, axis, keepdims, dtype=_dtype_name(dtype))


def prod(a, axis=None, dtype=None, keepdims=False):
    return _reduce(Prod, a, axis, keepdims, dtype=_dtype_name(dtype))


def max(a, axis=None, keepdims=False):
    return _reduce(Max, a, axis, keepdims)


def min(a, axis=None, keepdims=False):
    return _reduce(Min, a, axis, keepdims)


amax, amin = max, min


def var(a, axis=None, dtype=None, ddof=0, keepdims=False):
    return _reduce(Var, a, axis, keepdims, ddof=int(ddof), dtype=_dtype_name(dtype))


def std(a, axis=None, dtype=None, ddof=0, keepdims=False):
    return _reduce(Std, a, axis, keepdims, ddof=int(ddof), dtype=_dtype_name(dtype))


def argmax(a, axis=None, keepdims=False):
    if axis is not None and not isinstance(axis, (int, _np.integer)):
        raise ShapeError("argmax: axis must be an int or None")
    return apply(Argmax, (a,), {"axis": None if axis is None else int(axis),
                                "keepdims": bool(keepdims)})


def argmin(a, axis=None, keepdims=False):
    if axis is not None and not isinstance(axis, (int, _np.integer)):
        raise ShapeError("argmin: axis must be an int or None")
    return apply(Argmin, (a,), {"axis": None if axis is None else int(axis),
                                "keepdims": bool(keepdims)})


def all(a, axis=None, keepdims=False):
    return _reduce(All, a, axis, keepdims)


def any(a, axis=None, keepdims=False):
    return _reduce(Any, a, axis, keepdims)
