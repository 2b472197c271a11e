"""The operators and methods arrays and symbols share (`x + y`, `x.sum()`, `x.reshape(...)`).

Both `ndarray` and `Symbol` inherit them, so code written for one runs on the other: each method
calls the registry-backed function of the same name, which computes for arrays and records a node
for symbols.
"""

from __future__ import annotations

import numpy as _np


def _shape_args(args):
    """Accept both x.reshape(2, 3) and x.reshape((2, 3))."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


class ArrayMethods:
    __slots__ = ()

    # -- arithmetic -------------------------------------------------------------------------------
    def __add__(self, other):
        return _ew.add(self, other)

    def __radd__(self, other):
        return _ew.add(other, self)

    def __sub__(self, other):
        return _ew.subtract(self, other)

    def __rsub__(self, other):
        return _ew.subtract(other, self)

    def __mul__(self, other):
        return _ew.multiply(self, other)

    def __rmul__(self, other):
        return _ew.multiply(other, self)

    def __truediv__(self, other):
        return _ew.true_divide(self, other)

    def __rtruediv__(self, other):
        return _ew.true_divide(other, self)

    def __floordiv__(self, other):
        return _ew.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ew.floor_divide(other, self)

    def __mod__(self, other):
        return _ew.mod(self, other)

    def __rmod__(self, other):
        return _ew.mod(other, self)

    def __pow__(self, other):
        return _ew.power(self, other)

    def __rpow__(self, other):
        return _ew.power(other, self)

    def __matmul__(self, other):
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other):
        return _linalg.matmul(other, self)

    def __neg__(self):
        return _ew.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ew.absolute(self)

    def __invert__(self):
        if self.dtype == _np.bool_:
            return _ew.logical_not(self)
        raise TypeError("~ is supported on boolean arrays only")

    def __and__(self, other):
        return _ew.logical_and(self, other) if self.dtype == _np.bool_ else \
            _ew.bitwise_and(self, other)

    def __or__(self, other):
        return _ew.logical_or(self, other) if self.dtype == _np.bool_ else \
            _ew.bitwise_or(self, other)

    def __xor__(self, other):
        return _ew.logical_xor(self, other) if self.dtype == _np.bool_ else \
            _ew.bitwise_xor(self, other)

    # -- comparisons (elementwise, as in NumPy) ---------------------------------------------------
    def __eq__(self, other):  # type: ignore[override]
        if other is None:
            return False
        return _ew.equal(self, other)

    def __ne__(self, other):  # type: ignore[override]
        if other is None:
            return True
        return _ew.not_equal(self, other)

    def __lt__(self, other):
        return _ew.less(self, other)

    def __le__(self, other):
        return _ew.less_equal(self, other)

    def __gt__(self, other):
        return _ew.greater(self, other)

    def __ge__(self, other):
        return _ew.greater_equal(self, other)

    # -- indexing ---------------------------------------------------------------------------------
    def __getitem__(self, key):
        return _shape.getitem(self, key)

    # -- shape ------------------------------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        return _shape.reshape(self, _shape_args(shape), order=order)

    def transpose(self, *axes):
        axes = _shape_args(axes)
        return _shape.transpose(self, axes or None)

    @property
    def T(self):
        return _shape.transpose(self)

    def swapaxes(self, axis1, axis2):
        return _shape.swapaxes(self, axis1, axis2)

    def flatten(self, order="C"):
        return _shape.reshape(self, (-1,), order=order)

    def ravel(self, order="C"):
        return _shape.reshape(self, (-1,), order=order)

    def squeeze(self, axis=None):
        return _shape.squeeze(self, axis)

    def expand_dims(self, axis):
        return _shape.expand_dims(self, axis)

    def broadcast_to(self, shape):
        return _shape.broadcast_to(self, shape)

    def flip(self, axis=None):
        return _shape.flip(self, axis)

    def repeat(self, repeats, axis=None):
        return _shape.repeat(self, repeats, axis)

    def tile(self, reps):
        return _shape.tile(self, reps)

    def take(self, indices, axis=None, mode="raise"):
        return _shape.take(self, indices, axis, mode)

    def split(self, indices_or_sections, axis=0):
        return _shape.split(self, indices_or_sections, axis)

    # -- reductions -------------------------------------------------------------------------------
    def sum(self, axis=None, dtype=None, keepdims=False):
        return _reduce.sum(self, axis, dtype, keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        return _reduce.mean(self, axis, dtype, keepdims)

    def prod(self, axis=None, dtype=None, keepdims=False):
        return _reduce.prod(self, axis, dtype, keepdims)

    def max(self, axis=None, keepdims=False):
        return _reduce.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _reduce.min(self, axis, keepdims)

    def std(self, axis=None, dtype=None, ddof=0, keepdims=False):
        return _reduce.std(self, axis, dtype, ddof, keepdims)

    def var(self, axis=None, dtype=None, ddof=0, keepdims=False):
        return _reduce.var(self, axis, dtype, ddof, keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _reduce.argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        return _reduce.argmin(self, axis, keepdims)

    def all(self, axis=None, keepdims=False):
        return _reduce.all(self, axis, keepdims)

    def any(self, axis=None, keepdims=False):
        return _reduce.any(self, axis, keepdims)

    # -- elementwise ------------------------------------------------------------------------------
    def astype(self, dtype, copy=True):
        return _ew.astype(self, dtype, copy)

    def copy(self):
        return _ew.copy(self)

    def clip(self, a_min=None, a_max=None):
        return _ew.clip(self, a_min, a_max)

    def dot(self, b):
        return _linalg.dot(self, b)

    def abs(self):
        return _ew.absolute(self)

    def exp(self):
        return _ew.exp(self)

    def log(self):
        return _ew.log(self)

    def sqrt(self):
        return _ew.sqrt(self)

    def square(self):
        return _ew.square(self)

    def sign(self):
        return _ew.sign(self)

    def round(self, decimals=0):
        return _ew.around(self, decimals)

    def sigmoid(self):
        return _ew.sigmoid(self)

    def relu(self):
        return _ew.relu(self)

    def tanh(self):
        return _ew.tanh(self)


# Imported last: the operator modules import kiln.ndarray, which imports this module.
from .ops import elementwise as _ew  # noqa: E402
from .ops import linalg as _linalg  # noqa: E402
from .ops import reduce as _reduce  # noqa: E402
from .ops import shape as _shape  # noqa: E402
