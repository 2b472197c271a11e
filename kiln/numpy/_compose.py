"""NumPy functions built from several kiln operators, with no operator of their own.

They work on arrays and symbols alike and are differentiable through the operators they use.
"""

from __future__ import annotations

from ..base import KilnError, ShapeError
from ..ndarray import is_array, wrap
from ..ops import elementwise as _ew
from ..ops import reduce as _reduce
from ..ops import shape as _shape
from ..ops.elementwise import asarray_input

__all__ = [
    "append", "atleast_1d", "atleast_2d", "atleast_3d", "average", "column_stack", "diff", "dsplit",
    "dstack", "ediff1d", "fliplr", "flipud", "hsplit", "hstack", "meshgrid", "ptp", "rot90",
    "row_stack", "vsplit", "vstack",
]


def _as_operand(a):
    """Arrays and symbols pass; lists, NumPy arrays and scalars become kiln arrays."""
    if is_array(a) or getattr(a, "_kiln_symbolic", False):
        return a
    return wrap(asarray_input(a))


def _ndim(a) -> int:
    return len(a.shape)


def _atleast(arys, shape_of):
    out = []
    for a in arys:
        a = _as_operand(a)
        shape = shape_of(tuple(a.shape))
        out.append(a if shape == tuple(a.shape) else _shape.reshape(a, shape))
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys):
    """Each input viewed with at least one dimension (one array, or a list for several)."""
    return _atleast(arys, lambda s: s if len(s) >= 1 else (1,))


def atleast_2d(*arys):
    """Each input with at least two dimensions: a vector becomes one row."""
    return _atleast(arys, lambda s: s if len(s) >= 2 else (1,) * (2 - len(s)) + s)


def atleast_3d(*arys):
    """Each input with at least three dimensions: (N,) becomes (1, N, 1), (M, N) (M, N, 1)."""
    def shape_of(s):
        if len(s) == 0:
            return (1, 1, 1)
        if len(s) == 1:
            return (1, s[0], 1)
        if len(s) == 2:
            return s + (1,)
        return s
    return _atleast(arys, shape_of)


def _listed(arrays) -> list:
    arrays = [_as_operand(a) for a in arrays]
    if not arrays:
        raise ShapeError("need at least one array to join")
    return arrays


def hstack(arrays):
    """Join along the second axis (the first, for vectors)."""
    arrays = [atleast_1d(a) for a in _listed(arrays)]
    return _shape.concatenate(arrays, axis=0 if _ndim(arrays[0]) == 1 else 1)


def vstack(arrays):
    """Join along the first axis, vectors becoming rows."""
    return _shape.concatenate([atleast_2d(a) for a in _listed(arrays)], axis=0)


row_stack = vstack


def dstack(arrays):
    """Join along the third axis (depth), after making each input at least 3-D."""
    return _shape.concatenate([atleast_3d(a) for a in _listed(arrays)], axis=2)


def column_stack(arrays):
    """Join vectors as the columns of a matrix (2-D inputs join along their second axis)."""
    cols = []
    for a in _listed(arrays):
        cols.append(_shape.reshape(a, (-1, 1)) if _ndim(a) < 2 else a)
    return _shape.concatenate(cols, axis=1)


def append(arr, values, axis: int | None = None):
    """`values` joined after `arr` along `axis` (both flattened when `axis` is None)."""
    arr, values = _as_operand(arr), _as_operand(values)
    if axis is None:
        return _shape.concatenate([_shape.ravel(arr), _shape.ravel(values)], axis=0)
    return _shape.concatenate([arr, values], axis=axis)


def meshgrid(*xi, indexing: str = "xy", sparse: bool = False, copy: bool = True):
    """Coordinate arrays from coordinate vectors; 'xy' (Cartesian) swaps the first two axes,
    'ij' (matrix) does not. `sparse` keeps size-1 axes instead of broadcasting."""
    if indexing not in ("xy", "ij"):
        raise KilnError(f"meshgrid: indexing must be 'xy' or 'ij', not {indexing!r}")
    xs = [_shape.ravel(_as_operand(x)) for x in xi]
    ndim = len(xs)
    sizes = [x.shape[0] for x in xs]
    if indexing == "xy" and ndim > 1:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, x in enumerate(xs):
        pos = i
        if indexing == "xy" and ndim > 1 and i < 2:
            pos = 1 - i
        shape = [1] * ndim
        shape[pos] = x.shape[0]
        g = _shape.reshape(x, tuple(shape))
        if not sparse:
            g = _shape.broadcast_to(g, tuple(sizes))
            if copy:  # NumPy returns writable arrays, not broadcast views
                g = _ew.copy(g)
        out.append(g)
    return out


def _split_along(name, ary, indices_or_sections, axis, min_ndim):
    ary = _as_operand(ary)
    if _ndim(ary) < min_ndim:
        raise ShapeError(f"{name}: needs an array of at least {min_ndim} dimensions, not shape "
                         f"{tuple(ary.shape)}")
    return _shape.split(ary, indices_or_sections, axis)


def hsplit(ary, indices_or_sections):
    """Split along the second axis (the first, for vectors)."""
    ary = _as_operand(ary)
    return _split_along("hsplit", ary, indices_or_sections, 1 if _ndim(ary) > 1 else 0, 1)


def vsplit(ary, indices_or_sections):
    """Split along the first axis of an array of 2 or more dimensions."""
    return _split_along("vsplit", ary, indices_or_sections, 0, 2)


def dsplit(ary, indices_or_sections):
    """Split along the third axis of an array of 3 or more dimensions."""
    return _split_along("dsplit", ary, indices_or_sections, 2, 3)


def fliplr(m):
    """Reverse the columns (the second axis)."""
    m = _as_operand(m)
    if _ndim(m) < 2:
        raise ShapeError(f"fliplr: needs at least 2 dimensions, not shape {tuple(m.shape)}")
    return _shape.flip(m, 1)


def flipud(m):
    """Reverse the rows (the first axis)."""
    m = _as_operand(m)
    if _ndim(m) < 1:
        raise ShapeError("flipud: needs at least 1 dimension")
    return _shape.flip(m, 0)


def rot90(m, k: int = 1, axes=(0, 1)):
    """Rotate by 90 degrees `k` times, from the first axis towards the second."""
    m = _as_operand(m)
    ndim = _ndim(m)
    a0, a1 = _reduce.norm_axis(tuple(axes), ndim)
    if a0 == a1 or len(tuple(axes)) != 2:
        raise ShapeError(f"rot90: axes must be two different axes, not {axes}")
    k %= 4
    if k == 0:
        return m
    if k == 2:
        return _shape.flip(m, (a0, a1))
    perm = list(range(ndim))
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return _shape.transpose(_shape.flip(m, a1), tuple(perm))
    return _shape.flip(_shape.transpose(m, tuple(perm)), a1)


def _slice_along(ndim: int, axis: int, sl: slice) -> tuple:
    return tuple(sl if i == axis else slice(None) for i in range(ndim))


def diff(a, n: int = 1, axis: int = -1, prepend=None, append=None):
    """The n-th discrete difference along `axis`: out[i] = a[i+1] - a[i], n times."""
    a = _as_operand(a)
    ndim = _ndim(a)
    if ndim == 0:
        raise ShapeError("diff: needs at least 1 dimension")
    axis = _reduce.norm_axis(axis, ndim)[0]
    parts = []
    for value in (prepend, a, append):
        if value is None:
            continue
        value = _as_operand(value)
        if _ndim(value) == 0:
            shape = tuple(1 if i == axis else d for i, d in enumerate(a.shape))
            value = _shape.broadcast_to(value, shape)
        parts.append(value)
    if len(parts) > 1:
        a = _shape.concatenate(parts, axis=axis)
    for _ in range(int(n)):
        a = a[_slice_along(ndim, axis, slice(1, None))] - a[
            _slice_along(ndim, axis, slice(None, -1))]
    return a


def ediff1d(ary, to_end=None, to_begin=None):
    """Differences between consecutive elements of the flattened array, with optional values
    before and after."""
    out = diff(_shape.ravel(_as_operand(ary)))
    parts = [_shape.ravel(_as_operand(v)) for v in (to_begin,) if v is not None]
    parts.append(out)
    parts += [_shape.ravel(_as_operand(v)) for v in (to_end,) if v is not None]
    return _shape.concatenate(parts) if len(parts) > 1 else out


def average(a, axis=None, weights=None, returned: bool = False, keepdims: bool = False):
    """Weighted mean along `axis`; `weights` has `a`'s shape, or is 1-D along a single axis."""
    a = _as_operand(a)
    if weights is None:
        avg = _reduce.mean(a, axis=axis, keepdims=keepdims)
        if not returned:
            return avg
        count = a.size if axis is None else _reduce._count(a.shape, axis)
        return avg, _ew.full_like(avg, count)
    w = _as_operand(weights)
    if tuple(w.shape) != tuple(a.shape):
        axes = _reduce.norm_axis(axis, _ndim(a)) if axis is not None else None
        if axes is None or len(axes) != 1 or _ndim(w) != 1 or w.shape[0] != a.shape[axes[0]]:
            raise ShapeError(f"average: weights of shape {tuple(w.shape)} for an array of "
                             f"shape {tuple(a.shape)} along axis {axis}; give weights of the "
                             "array's shape, or 1-D ones as long as that one axis")
        shape = tuple(-1 if i == axes[0] else 1 for i in range(_ndim(a)))
        w = _shape.reshape(w, shape)
    scale = _reduce.sum(w * _ew.ones_like(a), axis=axis, keepdims=keepdims)
    avg = _reduce.sum(a * w, axis=axis, keepdims=keepdims) / scale
    return (avg, scale) if returned else avg


def ptp(a, axis=None, keepdims: bool = False):
    """Range of values (maximum - minimum) along `axis`."""
    a = _as_operand(a)
    return _reduce.max(a, axis, keepdims) - _reduce.min(a, axis, keepdims)
