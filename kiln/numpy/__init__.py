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
    abs, absolute, add, arccos, arccosh, arcsin, arcsinh, arctan, arctan2, arctanh, around, astype,
    bitwise_and, bitwise_not, bitwise_or, bitwise_xor, cbrt, ceil, clip, copy, copysign, cos, cosh,
    deg2rad, degrees, divide, equal, exp, exp2, expm1, fabs, fix, floor, floor_divide, fmax, fmin,
    fmod, full_like, gcd, greater, greater_equal, heaviside, hypot, invert, isclose, isfinite,
    isinf, isnan, lcm, left_shift, less, less_equal, log, log1p, log2, log10, logaddexp,
    logical_and, logical_not, logical_or, logical_xor, maximum, minimum, mod, multiply, nan_to_num,
    negative, not_equal, ones_like, pow, power, rad2deg, radians, reciprocal, remainder,
    right_shift, rint, round, round_, sign, signbit, sin, sinh, sqrt, square, subtract, tan, tanh,
    true_divide, trunc, where, zeros_like,
)
from ..ops.indexing import take_along_axis  # noqa: F401
from ..ops.linalg import (  # noqa: F401
    diag, diagflat, diagonal, dot, einsum, inner, matmul, outer, tensordot, trace, tril, triu,
    vdot,
)
from ..ops.reduce import (  # noqa: F401
    all, amax, amin, any, argmax, argmin, cumsum, max, mean, min, prod, std, sum, var,
)
from ..ops.shape import (  # noqa: F401
    array_split, broadcast_arrays, broadcast_to, concat, concatenate, expand_dims, flip,
    moveaxis, nonzero, pad, ravel, repeat, reshape, roll, split, squeeze, stack, swapaxes, take,
    tile, transpose,
)
from ._compose import (  # noqa: F401
    append, atleast_1d, atleast_2d, atleast_3d, average, column_stack, diff, dsplit, dstack,
    ediff1d,
    fliplr, flipud, hsplit, hstack, meshgrid, ptp, rot90, row_stack, vsplit, vstack,
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
int_, intp, uint = _onp.int_, _onp.intp, _onp.uint
integer, floating, number, generic = _onp.integer, _onp.floating, _onp.number, _onp.generic
pi, e, inf, nan, newaxis, euler_gamma = _onp.pi, _onp.e, _onp.inf, _onp.nan, None, _onp.euler_gamma
finfo, iinfo, issubdtype, result_type = _onp.finfo, _onp.iinfo, _onp.issubdtype, _onp.result_type


def _creation_dtype(dtype) -> _onp.dtype:
    return _default_dtype if dtype is None else _onp.dtype(dtype)


def _shape(shape) -> tuple:
    if isinstance(shape, (int, _onp.integer)):
        return (int(shape),)
    return tuple(int(d) for d in shape)


# ----------------------------------------------------------------------------------------------
# creation (float32 by default, as MXNet's numpy mode)
# ----------------------------------------------------------------------------------------------

def array(object, dtype=None, copy: bool = True,  # noqa: F811  (NumPy's argument name)
          ctx=None, device=None) -> ndarray:
    """A new array from nested lists, a NumPy array or a kiln array.

    Python numbers become float32 unless `dtype` says otherwise (MXNet's numpy mode); booleans
    stay bool; NumPy and kiln arrays keep their dtype.

        >>> np.array([1, 2])
        array([1., 2.])
    """
    if getattr(object, "_kiln_symbolic", False):
        object.__array__()  # raises SymbolicValueError naming the user's line and the fix
    if isinstance(object, ndarray):
        data = object._data
        if dtype is not None and _onp.dtype(dtype) != data.dtype:
            return _wrap(data.astype(dtype))
        return _wrap(data.copy() if copy else data)
    if isinstance(object, _onp.ndarray) or hasattr(object, "__array__"):
        # copy=None: NumPy copies only when it must (NumPy 2 reads copy=False as "never").
        return _wrap(_onp.array(object, dtype=dtype, copy=True if copy else None))
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
    """An array of zeros (float32 by default)."""
    return _wrap(_onp.zeros(_shape(shape), _creation_dtype(dtype)))


def ones(shape, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    """An array of ones (float32 by default)."""
    return _wrap(_onp.ones(_shape(shape), _creation_dtype(dtype)))


def empty(shape, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    """An uninitialised array (float32 by default)."""
    return _wrap(_onp.empty(_shape(shape), _creation_dtype(dtype)))


def full(shape, fill_value, dtype=None, order: str = "C", ctx=None, device=None) -> ndarray:
    """An array filled with `fill_value` (float32 by default, bool for a bool value)."""
    if isinstance(fill_value, ndarray):
        dt = fill_value.dtype if dtype is None else _onp.dtype(dtype)
        return _wrap(_onp.broadcast_to(fill_value._data, _shape(shape)).astype(dt))
    if dtype is None and isinstance(fill_value, (_builtins.bool, _onp.bool_)):
        dtype = _onp.bool_
    return _wrap(_onp.full(_shape(shape), fill_value, _creation_dtype(dtype)))


def empty_like(prototype, dtype=None) -> ndarray:
    """An uninitialised array with the shape (and dtype) of `prototype`."""
    return _wrap(_onp.empty(prototype.shape, dtype or prototype.dtype))


def arange(start, stop=None, step=1, dtype=None, ctx=None, device=None) -> ndarray:
    """Evenly spaced values in [start, stop); float32 unless `dtype` is given (as MXNet)."""
    if stop is None:
        start, stop = 0, start
    return _wrap(_onp.arange(start, stop, step, dtype=_creation_dtype(dtype)))


def linspace(start, stop, num: int = 50, endpoint: bool = True, retstep: bool = False,
             dtype=None, axis: int = 0, ctx=None, device=None):
    """`num` evenly spaced values from start to stop (float32 by default)."""
    out = _onp.linspace(start, stop, num, endpoint=endpoint, retstep=retstep,
                        dtype=_creation_dtype(dtype), axis=axis)
    if retstep:
        return _wrap(out[0]), out[1]
    return _wrap(out)


def logspace(start, stop, num: int = 50, endpoint: bool = True, base: float = 10.0,
             dtype=None, axis: int = 0, ctx=None, device=None) -> ndarray:
    """`num` values spaced evenly on a log scale, base**start to base**stop (float32)."""
    return _wrap(_onp.logspace(start, stop, num, endpoint=endpoint, base=base,
                               dtype=_creation_dtype(dtype), axis=axis))


def eye(N: int, M: int | None = None, k: int = 0, dtype=None, ctx=None, device=None) -> ndarray:
    """A matrix with ones on the k-th diagonal (float32 by default)."""
    return _wrap(_onp.eye(N, M, k, dtype=_creation_dtype(dtype)))


def identity(n: int, dtype=None, ctx=None, device=None) -> ndarray:
    """The n x n identity matrix (float32 by default)."""
    return eye(n, dtype=dtype)


def tri(N: int, M: int | None = None, k: int = 0, dtype=None, ctx=None, device=None) -> ndarray:
    """Ones on and below the k-th diagonal (float32 by default)."""
    return _wrap(_onp.tri(N, M, k, dtype=_creation_dtype(dtype)))


# ----------------------------------------------------------------------------------------------
# properties and comparisons that answer with Python values
# ----------------------------------------------------------------------------------------------

def shape(a) -> tuple:
    """The shape of `a`."""
    return tuple(a.shape)


def size(a) -> int:
    """The number of elements of `a`."""
    return int(_onp.prod(a.shape))


def ndim(a) -> int:
    """The number of dimensions of `a`."""
    return len(a.shape)


def _numpy_value(a):
    if isinstance(a, ndarray):
        return a._data
    if getattr(a, "_kiln_symbolic", False):
        raise _KilnError("this function needs concrete arrays, not symbols: call it outside a "
                         "hybridized forward")
    return a


def array_equal(a1, a2, equal_nan: bool = False) -> bool:
    """Whether both have the same shape and elements (a Python bool, as NumPy's)."""
    return _builtins.bool(_onp.array_equal(_numpy_value(a1), _numpy_value(a2),
                                           equal_nan=equal_nan))


def allclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False) -> bool:
    """Whether every element is close (a Python bool, as NumPy's)."""
    return _builtins.bool(_onp.allclose(_numpy_value(a), _numpy_value(b), rtol=rtol, atol=atol,
                                        equal_nan=equal_nan))


def isscalar(x) -> bool:
    """Whether `x` is a scalar (a Python or NumPy number, not an array)."""
    return _onp.isscalar(x)


def may_share_memory(a, b) -> bool:
    """Whether the two arrays may share memory."""
    return _builtins.bool(_onp.may_share_memory(_numpy_value(a), _numpy_value(b)))


shares_memory = may_share_memory


# ----------------------------------------------------------------------------------------------
# sorting, searching, counting: NumPy's own, eager and not differentiable
# ----------------------------------------------------------------------------------------------

def _eager_only(name):
    """A NumPy function whose result is not differentiable (sorting, searching, counting)."""
    fn = getattr(_onp, name)

    def wrapper(*args, **kwargs):
        args = [_numpy_value(a) for a in args]
        kwargs = {k: _numpy_value(v) for k, v in kwargs.items()}
        out = fn(*args, **kwargs)
        if isinstance(out, tuple):
            return tuple(_wrap(o) for o in out)
        return _wrap(out)

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.__doc__ = f"NumPy's {name} on kiln arrays (not differentiable, eager only)."
    return wrapper


sort = _eager_only("sort")
argsort = _eager_only("argsort")
unique = _eager_only("unique")
bincount = _eager_only("bincount")
histogram = _eager_only("histogram")
searchsorted = _eager_only("searchsorted")
count_nonzero = _eager_only("count_nonzero")
argwhere = _eager_only("argwhere")
flatnonzero = _eager_only("flatnonzero")
median = _eager_only("median")
percentile = _eager_only("percentile")
quantile = _eager_only("quantile")
digitize = _eager_only("digitize")
unravel_index = _eager_only("unravel_index")
ravel_multi_index = _eager_only("ravel_multi_index")


__all__ = [n for n in _builtins.list(globals()) if not n.startswith("_")]
