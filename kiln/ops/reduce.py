"""Reductions: sum, mean, prod, max, min, std, var, argmax, argmin, all, any, and the running
sum `cumsum`.

`axis` is None (everything), an int or a tuple of ints, as in NumPy; it is stored normalised to
None or a tuple so that equal graphs print equally.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import builtins
import functools

import numpy as _np

from ..base import ShapeError
from ..ndarray import apply
from .registry import Aval, Op
from . import _native
from . import elementwise as _ew
from . import shape as _shape

_F32 = _np.dtype(_np.float32)


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


# NOTE: impls call the ndarray methods, which skip the Python layer of np.sum & co (about a
# microsecond per call on small arrays).
class Sum(_Reduction):
    name = "sum"
    mx_name = "_np_sum"
    numpy_name = "sum"
    attrs = {"axis": None, "keepdims": False, "dtype": None}

    def impl(x, *, axis, keepdims, dtype):
        if x.dtype is _F32 and dtype is None and not keepdims and axis is not None and \
                len(axis) == 1:
            out = _native.call("sum_axis_f32", x, axis[0])   # a bias gradient: 5 us, not 12
            if out is not None:
                return out
        return _np.asarray(x).sum(axis=axis, keepdims=keepdims, dtype=dtype)

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

    def impl(x, *, axis, keepdims, dtype):
        return _np.asarray(x).prod(axis=axis, keepdims=keepdims, dtype=dtype)

    def grad(inputs, outputs, cts, *, axis, keepdims, dtype):
        # d prod / d x_i is the product of the other elements. Dividing y by x_i fails where
        # x_i = 0, so zeros are replaced by ones first: with one zero in the slice, the zero's
        # gradient is the product of the rest; with two or more, every gradient is zero.
        x = inputs[0]
        if x.dtype.kind != "f":
            return (None,)
        g = expand_to(cts[0], x.shape, axis, keepdims)
        is_zero = _ew.equal(x, 0)
        safe = _ew.where(is_zero, _ew.ones_like(x), x)
        p_safe = prod(safe, axis=axis, keepdims=True)
        zeros = sum(_ew.astype(is_zero, "int64"), axis=axis, keepdims=True)
        nonzero_grad = _ew.where(_ew.equal(zeros, 0), p_safe / safe, _ew.zeros_like(x))
        zero_grad = _ew.where(_ew.logical_and(is_zero, _ew.equal(zeros, 1)), p_safe,
                              nonzero_grad)
        return (_ew.astype(g * zero_grad, x.dtype, copy=False),)


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
        return _np.asarray(x).max(axis=axis, keepdims=keepdims)


class Min(_Extremum):
    name = "min"
    mx_name = "_np_min"
    numpy_name = "min"

    def impl(x, *, axis, keepdims):
        return _np.asarray(x).min(axis=axis, keepdims=keepdims)


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
        return _np.asarray(x).all(axis=axis, keepdims=keepdims)


class Any(_BoolReduction):
    name = "any"
    mx_name = "_np_any"

    def impl(x, *, axis, keepdims):
        return _np.asarray(x).any(axis=axis, keepdims=keepdims)


def _reduce(op, a, axis, keepdims, **extra):
    return apply(op, (a,), {"axis": norm_axis(axis), "keepdims": bool(keepdims), **extra})


def _dtype_name(dtype):
    return None if dtype is None else _np.dtype(dtype).name


def sum(a, axis=None, dtype=None, keepdims: bool = False):
    """Sum over `axis` (all axes by default)."""
    return _reduce(Sum, a, axis, keepdims, dtype=_dtype_name(dtype))


def mean(a, axis=None, dtype=None, keepdims: bool = False):
    """Arithmetic mean over `axis` (float64 for integers, as NumPy)."""
    return _reduce(Mean, a, axis, keepdims, dtype=_dtype_name(dtype))


def prod(a, axis=None, dtype=None, keepdims: bool = False):
    """Product over `axis` (all axes by default)."""
    return _reduce(Prod, a, axis, keepdims, dtype=_dtype_name(dtype))


def max(a, axis=None, keepdims: bool = False):
    """Largest element over `axis`; tied elements share the gradient evenly."""
    return _reduce(Max, a, axis, keepdims)


def min(a, axis=None, keepdims: bool = False):
    """Smallest element over `axis`; tied elements share the gradient evenly."""
    return _reduce(Min, a, axis, keepdims)


amax, amin = max, min


def var(a, axis=None, dtype=None, ddof: int = 0, keepdims: bool = False):
    """Variance over `axis`, dividing by n - ddof."""
    return _reduce(Var, a, axis, keepdims, ddof=int(ddof), dtype=_dtype_name(dtype))


def std(a, axis=None, dtype=None, ddof: int = 0, keepdims: bool = False):
    """Standard deviation over `axis`, dividing by n - ddof."""
    return _reduce(Std, a, axis, keepdims, ddof=int(ddof), dtype=_dtype_name(dtype))


def _arg_reduce(op, a, axis, keepdims):
    if axis is not None and not isinstance(axis, (int, _np.integer)):
        raise ShapeError(f"{op.name}: axis must be an int or None, not {axis!r}")
    return apply(op, (a,), {"axis": None if axis is None else int(axis),
                            "keepdims": bool(keepdims)})


def argmax(a, axis: int | None = None, keepdims: bool = False):
    """Index of the largest element (the first on ties) along `axis`, or of the flattened
    array."""
    return _arg_reduce(Argmax, a, axis, keepdims)


def argmin(a, axis: int | None = None, keepdims: bool = False):
    """Index of the smallest element (the first on ties) along `axis`, or of the flattened
    array."""
    return _arg_reduce(Argmin, a, axis, keepdims)


def all(a, axis=None, keepdims: bool = False):
    """Whether every element over `axis` is true."""
    return _reduce(All, a, axis, keepdims)


def any(a, axis=None, keepdims: bool = False):
    """Whether any element over `axis` is true."""
    return _reduce(Any, a, axis, keepdims)


class Cumsum(Op):
    """Running sum along `axis` (of the flattened array when `axis` is None)."""

    name = "cumsum"
    mx_name = "_np_cumsum"
    attrs = {"axis": None, "dtype": None}

    def impl(x, *, axis, dtype):
        return _np.cumsum(x, axis=axis, dtype=dtype)

    def infer(x, *, axis, dtype):
        if axis is None:
            shape = (_count(x.shape, None),)
        else:
            norm_axis(axis, len(x.shape))
            shape = tuple(x.shape)
        return Aval(shape, _reduce_dtype("cumsum", _np.dtype(x.dtype), dtype))

    def grad(inputs, outputs, cts, *, axis, dtype):
        # Each input element feeds every later output: the reversed running sum of g.
        x = inputs[0]
        if x.dtype.kind != "f":
            return (None,)
        ax = 0 if axis is None else axis
        g = _shape.flip(cumsum(_shape.flip(cts[0], ax), ax), ax)
        if axis is None:
            g = _shape.reshape(g, x.shape)
        return (_ew.astype(g, x.dtype, copy=False),)


def cumsum(a, axis: int | None = None, dtype=None):
    """Cumulative sum along `axis` (over the flattened array by default)."""
    return apply(Cumsum, (a,), {"axis": None if axis is None else int(axis),
                                "dtype": _dtype_name(dtype)})
