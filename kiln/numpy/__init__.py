"""`kiln.np`: NumPy's interface over kiln arrays (MXNet's `mxnet.np`).

Every function here is a thin wrapper over the operator registry (see `kiln.ops`), so it computes
on arrays, records gradients under `autograd.record()`, and records graph nodes on symbols.
Creation functions default to float32, as in MXNet's numpy mode.
"""

from __future__ import annotations

import builtins as _builtins

import numpy as _onp

from ..base import KilnError as _KilnError
from ..base import default_dtype as _default_dtype
from ..ndarray import ndarray, wrap as _wrap
from ..ops.elementwise import (  # noqa: F401
    abs, absolute, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around,
    astype, bitwise_and, bitwise_or, bitwise_xor, cbrt, ceil, clip, copy, cos, cosh, degrees,
    divide, equal, exp, exp2, expm1, fabs, floor, floor_divide, full_like, greater, greater_equal,
    hypot, isfinite, isinf, isnan, less, less_equal, log, log1p, log2, log10, logical_and,
    logical_not, logical_or, logical_xor, maximum, minimum, mod, multiply, negative, not_equal,
    ones_like, pow, power, radians, reciprocal, remainder, rint, round, round_, sign, sin, sinh,
    sqrt, square, subtract, tan, tanh, true_divide, trunc, where, zeros_like,
)
from ..ops.linalg import dot, einsum, inner, matmul, outer, tensordot, trace, vdot  # noqa: F401
from ..ops.reduce import (  # noqa: F401
    all, amax, amin, any, argmax, argmin, max, mean, min, prod, std, sum, var,
)
from ..ops.shape import (  # noqa: F401
    array_split, broadcast_arrays, broadcast_to, concat, concatenate, expand_dims, flip,
    moveaxis, nonzero, pad, ravel, repeat, reshape, split, squeeze, stack, swapaxes, take, tile,
    transpose,
)
from . import random  # noqa: F401
from . import linalg  # noqa: F401
from .io import load, save, savez  # noqa: F401

# dtypes and constants, as NumPy spells them
dtype = _onp.dtype
float16, float32, float64 = _onp.float16, _onp.float32, _onp.float64
int8, int16, int32, int64 = _onp.int8, _onp.int16, _onp.int32, _onp.int64
uint8, uint16, uint32, uint64 = _onp.uint8, _onp.uint16, _onp.uint32, _onp.uint64
bool_ = _onp.bool_
pi, e, inf, nan, newaxis = _onp.pi, _onp.e, _onp.inf, _onp.nan, None
finfo, iinfo = _onp.finfo, _onp.iinfo


def _creation_dtype(dtype) -> _onp.dtype:
    return _default_dtype if dtype is None else _onp.dtype(dtype)


def _shape(shape) -> tuple:
    if isinstance(shape, (int, _onp.integer)):
        return (int(shape),)
    return tuple(int(d) for d in shape)


def array(object, dtype=None, copy: bool = True, ctx=None,  # noqa: F811  (NumPy's name)
          device=None) -> ndarray:
    """A new array from nested lists, a NumPy array or a kiln array.

    Python numbers become float32 unless `dtype` says otherwise (MXNet's numpy mode); booleans stay
    bool; NumPy and kiln arrays keep their dtype.
    """
    if getattr(object, "_kiln_symbolic", False):
        object.__array__()  # raises SymbolicValueError naming the user's line and the fix
    if isinstance(object, ndarray):
        data = object._data
        return _wrap(data.astype(dtype) if dtype is not None else (data.copy() if copy else data))
    if isinstance(object, _onp.ndarray) or hasattr(object, "__array__"):
        data = _onp.array(object, dtype=dtype, copy=copy)
        return _wrap(data)
    data = _onp.array(object, dtype=dtype)
    if dtype is None and data.dtype.kind in "iuf":
        data = data.astype(_default_dtype)
    return _wrap(data)


def asarray(a, dtype=None) -> ndarray:
    """Like `array`, without copying a kiln array that already has the dtype."""
    if isinstance(a, ndarray) and (dtype is None or _onp.dtype(dtype) == a.dtype):
        return a
    return array(a, dtype=dtype, copy=False)


def zeros(shape, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    return _wrap(_onp.zeros(_shape(shape), _creation_dtype(dtype)))


def ones(shape, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    return _wrap(_onp.ones(_shape(shape), _creation_dtype(dtype)))


def empty(shape, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    return _wrap(_onp.empty(_shape(shape), _creation_dtype(dtype)))


def full(shape, fill_value, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    if isinstance(fill_value, ndarray):
        dt = fill_value.dtype if dtype is None else _onp.dtype(dtype)
        return _wrap(_onp.broadcast_to(fill_value._data, _shape(shape)).astype(dt))
    if dtype is None and isinstance(fill_value, bool):
        dtype = _onp.bool_
    return _wrap(_onp.full(_shape(shape), fill_value, _creation_dtype(dtype)))


def empty_like(prototype, dtype=None) -> ndarray:
    return _wrap(_onp.empty(prototype.shape, dtype or prototype.dtype))


def arange(start, stop=None, step=1, dtype=None, ctx=None, device=None) -> ndarray:
    """Evenly spaced values in [start, stop); float32 unless `dtype` is given (as MXNet)."""
    if stop is None:
        start, stop = 0, start
    return _wrap(_onp.arange(start, stop, step, dtype=_creation_dtype(dtype)))


def linspace(start, stop, num: int = 50, endpoint: bool = True, retstep: bool = False,
             dtype=None, axis: int = 0, ctx=None, device=None):
    out = _onp.linspace(start, stop, num, endpoint=endpoint, retstep=retstep,
                        dtype=_creation_dtype(dtype), axis=axis)
    if retstep:
        return _wrap(out[0]), out[1]
    return _wrap(out)


def eye(N: int, M: int | None = None, k: int = 0, dtype=None, ctx=None, device=None) -> ndarray:
    return _wrap(_onp.eye(N, M, k, dtype=_creation_dtype(dtype)))


def identity(n: int, dtype=None, ctx=None, device=None) -> ndarray:
    return eye(n, dtype=dtype)


def hstack(arrays):
    arrays = list(arrays)
    return concatenate(arrays, axis=0 if arrays[0].ndim == 1 else 1)


def vstack(arrays):
    arrays = [reshape(a, (1, -1)) if a.ndim == 1 else a for a in arrays]
    return concatenate(arrays, axis=0)


def shape(a) -> tuple:
    return tuple(a.shape)


def size(a) -> int:
    return int(_onp.prod(a.shape))


def ndim(a) -> int:
    return len(a.shape)


def _eager_only(name):
    """A NumPy function whose result is not differentiable (sorting, searching, counting)."""
    fn = getattr(_onp, name)

    def wrapper(*args, **kwargs):
        args = [a._data if isinstance(a, ndarray) else a for a in args]
        for a in args:
            if getattr(a, "_kiln_symbolic", False):
                raise _KilnError(f"np.{name} is only available on concrete arrays")
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(_wrap(o) for o in out)
        return _wrap(out)

    wrapper.__name__ = name
    wrapper.__doc__ = f"NumPy's {name} on kiln arrays (not differentiable, eager only)."
    return wrapper


sort = _eager_only("sort")
argsort = _eager_only("argsort")
unique = _eager_only("unique")
bincount = _eager_only("bincount")
histogram = _eager_only("histogram")
searchsorted = _eager_only("searchsorted")
count_nonzero = _eager_only("count_nonzero")
tril = _eager_only("tril")
triu = _eager_only("triu")
allclose = _onp.allclose  # returns a Python bool, as NumPy does


def isscalar(x) -> bool:
    return _onp.isscalar(x)


def may_share_memory(a, b) -> bool:
    return _onp.may_share_memory(_onp.asarray(a), _onp.asarray(b))


__all__ = [n for n in _builtins.list(globals()) if not n.startswith("_")]
