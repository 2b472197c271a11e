"""Elementwise operators: binary arithmetic with NumPy broadcasting, comparisons, `where`,
`clip`, `nan_to_num`, `isclose`. The unary functions (`unary.py`) and the casts, copies and fills
(`casting.py`) are re-exported here, so `elementwise` is the one module to import for the family.

Each binary operator comes in three forms, as in MXNet: array-array (`add`), array-scalar
(`add_scalar`, attribute `scalar`) and, when the order matters, scalar-array (`rsubtract_scalar`).
A Python number stays a weakly-typed scalar, so `float32_array + 1.0` is float32 as in NumPy 2.
The gradient rule of a binary operator is written once, in terms of both operands, and serves
all three forms.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import functools
import math

import numpy as _np

from ..base import ShapeError
from ..ndarray import apply, asarray_input, wrap
from .registry import Aval, Op
from . import _native
from . import reduce as _reduce
from . import shape as _shape

_SCALAR_TYPES = (int, float, bool, _np.generic)
# type -> whether it is a scalar type: a dict lookup is cheaper than isinstance() on the tuple
# above, and the binary fronts ask on every call.
_IS_SCALAR_TYPE: dict = {int: True, float: True, bool: True}


def _scalar_type_check(t) -> bool:
    known = _IS_SCALAR_TYPE[t] = issubclass(t, _SCALAR_TYPES)
    return known


def is_scalar(x) -> bool:
    """Whether `x` is a Python or NumPy scalar (a weak or strong scalar operand)."""
    known = _IS_SCALAR_TYPE.get(type(x))
    return _scalar_type_check(type(x)) if known is None else known


@functools.lru_cache(maxsize=4096)
def ufunc_dtype(ufunc, *operand_types) -> _np.dtype:
    """Result dtype of `ufunc` for these operand dtypes (or Python scalar types), as NumPy says."""
    try:
        return _np.dtype(ufunc.resolve_dtypes(operand_types + (None,) * ufunc.nout)[-1])
    except (AttributeError, TypeError):  # NumPy < 2, or no loop: ask by computing on one element
        samples = [t(1) if isinstance(t, type) else _np.ones(1, t) for t in operand_types]
        with _np.errstate(all="ignore"):
            out = ufunc(*samples)
        return _np.asarray(out[0] if isinstance(out, tuple) else out).dtype


def _scalar_type(s):
    """The type NumPy promotes a scalar operand as: weak Python types, or a NumPy dtype."""
    if isinstance(s, _np.generic):
        return _np.dtype(type(s))
    return type(s)


def broadcast_shape(op_name: str, *shapes) -> tuple:
    """The shape NumPy broadcasting gives `shapes`, or a ShapeError naming the operator."""
    try:
        return _np.broadcast_shapes(*shapes)
    except ValueError:
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"{op_name}: operands of shapes {listed} do not broadcast (aligned from "
                         "the right, each dimension must be equal or 1); reshape or "
                         "expand_dims one of them") from None


def unbroadcast(g, shape: tuple):
    """Sum `g` down to `shape`: the gradient of broadcasting an operand of that shape."""
    if g.shape == tuple(shape):
        return g
    lead = len(g.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and g.shape[i + lead] != 1)
    if axes:
        g = _reduce.sum(g, axis=axes, keepdims=True)
    if lead or g.shape != tuple(shape):
        g = _shape.reshape(g, tuple(shape))
    return g


def _cotangent_for(g, x):
    """`g` summed to the shape of operand `x`, in its dtype when the result promoted it (a
    float32 operand of a float64 product gets a float32 gradient)."""
    if g is None:
        return None
    g = unbroadcast(g, x.shape)
    if g.dtype != x.dtype and x.dtype.kind == "f":
        g = astype(g, x.dtype)
    return g


# ----------------------------------------------------------------------------------------------
# binary operators
# ----------------------------------------------------------------------------------------------

def _define_binary(name, ufunc, mx_name, grad=None, commutative=False, mirrored=False,
                   save_outputs=False, array_impl=None):
    """Register `name`, `name_scalar` and (unless commutative) `rname_scalar`.

    `ufunc` computes and says the result dtypes; `array_impl`, when given, computes the
    array-array form instead (a faster loop for some operands, the ufunc's results).

    `grad(a, b, y, g)` returns the cotangents of both operands; either operand may be a scalar.
    A `mirrored` comparison has no reversed form of its own: `s < x` is `x > s`, wired below.
    """
    differentiable = grad is not None

    def array_infer(a, b):
        return Aval(broadcast_shape(name, a.shape, b.shape), ufunc_dtype(ufunc, a.dtype, b.dtype))

    def array_grad(inputs, outputs, cts):
        a, b = inputs
        y = outputs[0] if outputs is not None else None
        ga, gb = grad(a, b, y, cts[0])
        return _cotangent_for(ga, a), _cotangent_for(gb, b)

    def scalar_impl(x, *, scalar):
        return ufunc(x, scalar)

    def scalar_infer(x, *, scalar):
        return Aval(x.shape, ufunc_dtype(ufunc, x.dtype, _scalar_type(scalar)))

    def scalar_grad(inputs, outputs, cts, *, scalar):
        y = outputs[0] if outputs is not None else None
        return (grad(inputs[0], scalar, y, cts[0])[0],)

    def rscalar_impl(x, *, scalar):
        return ufunc(scalar, x)

    def rscalar_infer(x, *, scalar):
        return Aval(x.shape, ufunc_dtype(ufunc, _scalar_type(scalar), x.dtype))

    def rscalar_grad(inputs, outputs, cts, *, scalar):
        y = outputs[0] if outputs is not None else None
        return (grad(scalar, inputs[0], y, cts[0])[1],)

    def make(op_name, op_mx, impl, infer, rule, attrs, inputs):
        body = {"name": op_name, "mx_name": op_mx, "impl": staticmethod(impl),
                "infer": staticmethod(infer), "attrs": attrs, "inputs": inputs,
                "differentiable": differentiable, "save_outputs": save_outputs,
                "__doc__": f"Elementwise {name} ({op_name})."}
        if differentiable:
            body["grad"] = staticmethod(rule)
        return type(f"Binary_{op_name}", (Op,), body)

    array_op = make(name, mx_name, array_impl or ufunc, array_infer, array_grad, {}, ("lhs", "rhs"))
    scalar_op = make(name + "_scalar", mx_name + "_scalar", scalar_impl, scalar_infer,
                     scalar_grad, {"scalar": 1.0}, ("data",))
    if commutative:
        rscalar_op = scalar_op
    elif mirrored:
        rscalar_op = None  # set by _mirror()
    else:
        rmx = mx_name.replace("_npi_", "_npi_r", 1)
        rscalar_op = make("r" + name + "_scalar", rmx + "_scalar", rscalar_impl, rscalar_infer,
                          rscalar_grad, {"scalar": 1.0}, ("data",))

    def fn(x1, x2):
        # NOTE: is_scalar() inlined; this runs on every `x + y`.
        s2 = _IS_SCALAR_TYPE.get(type(x2))
        if s2 is None:
            s2 = _scalar_type_check(type(x2))
        s1 = _IS_SCALAR_TYPE.get(type(x1))
        if s1 is None:
            s1 = _scalar_type_check(type(x1))
        if s2:
            if s1:
                return wrap(ufunc(x1, x2))
            return apply(scalar_op, (x1,), {"scalar": x2})
        if s1:
            return apply(fn.rscalar_op, (x2,), {"scalar": x1})
        return apply(array_op, (x1, x2))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} with NumPy broadcasting."
    fn.op, fn.scalar_op, fn.rscalar_op = array_op, scalar_op, rscalar_op
    return fn


def _log_of(v):
    return math.log(v) if is_scalar(v) else log(v)


def _power_grad(a, b, y, g):
    ga = g * b * power(a, b - 1) if not is_scalar(a) else None
    gb = g * y * _log_of(a) if not is_scalar(b) else None
    return ga, gb


def _mod_grad(a, b, y, g):
    # a mod b = a - floor(a / b) * b, and the floor is piecewise constant
    gb = None if is_scalar(b) else -g * floor_divide(a, b)
    return g, gb


def _fmod_grad(a, b, y, g):
    gb = None if is_scalar(b) else -g * trunc(a / b)
    return g, gb


def _copysign_grad(a, b, y, g):
    # |a| with b's sign: the derivative in a is +1 or -1, in b zero (almost everywhere)
    ga = None if is_scalar(a) else where(signbit(a) == signbit(y), g, -g)
    return ga, None


def _pick_grad(take_a):
    """Gradient of maximum-like selections: `take_a(a, b)` says where the result is a."""
    def rule(a, b, y, g):
        mask = take_a(a, b)
        return (None if is_scalar(a) else g * mask,
                None if is_scalar(b) else g * logical_not(mask))
    return rule


add = _define_binary("add", _np.add, "_npi_add", lambda a, b, y, g: (g, g), commutative=True)
subtract = _define_binary("subtract", _np.subtract, "_npi_subtract",
                          lambda a, b, y, g: (g, -g))
_BOOL = _np.dtype(bool)
_F32 = _np.dtype(_np.float32)


def _multiply(a, b):
    """NumPy's multiply; float32 times a bool mask of its shape (relu's gradient, g * (y > 0))
    in one native pass where NumPy first casts the mask: 6 us instead of 30 for 256x256."""
    if b.dtype is _BOOL and a.dtype is _F32:
        r = _native.call("multiply_mask_f32", a, b)
        if r is not None:
            return r
    return _np.multiply(a, b)


multiply = _define_binary("multiply", _np.multiply, "_npi_multiply",
                          lambda a, b, y, g: (g * b, g * a), commutative=True,
                          array_impl=_multiply)
true_divide = _define_binary("true_divide", _np.true_divide, "_npi_true_divide",
                             lambda a, b, y, g: (g / b, -g * y / b), save_outputs=True)
power = _define_binary("power", _np.power, "_npi_power", _power_grad, save_outputs=True)
mod = _define_binary("mod", _np.remainder, "_npi_mod", _mod_grad)
fmod = _define_binary("fmod", _np.fmod, "_npi_fmod", _fmod_grad)
floor_divide = _define_binary("floor_divide", _np.floor_divide, "_npi_floor_divide")
# Ties send the whole cotangent to the first operand.
maximum = _define_binary("maximum", _np.maximum, "_npi_maximum",
                         _pick_grad(lambda a, b: a >= b), commutative=True)
minimum = _define_binary("minimum", _np.minimum, "_npi_minimum",
                         _pick_grad(lambda a, b: a <= b), commutative=True)
# fmax/fmin ignore a NaN operand: the result is the other one.
fmax = _define_binary("fmax", _np.fmax, "_npi_fmax",
                      _pick_grad(lambda a, b: logical_or(a >= b, isnan(b))), commutative=True)
fmin = _define_binary("fmin", _np.fmin, "_npi_fmin",
                      _pick_grad(lambda a, b: logical_or(a <= b, isnan(b))), commutative=True)
arctan2 = _define_binary("arctan2", _np.arctan2, "_npi_arctan2",
                         lambda a, b, y, g: (g * b / (a * a + b * b), -g * a / (a * a + b * b)))
hypot = _define_binary("hypot", _np.hypot, "_npi_hypot",
                       lambda a, b, y, g: (g * a / y, g * b / y), commutative=True,
                       save_outputs=True)
logaddexp = _define_binary("logaddexp", _np.logaddexp, "_npi_logaddexp",
                           lambda a, b, y, g: (g * exp(a - y), g * exp(b - y)),
                           commutative=True, save_outputs=True)
copysign = _define_binary("copysign", _np.copysign, "_npi_copysign", _copysign_grad,
                          save_outputs=True)
heaviside = _define_binary("heaviside", _np.heaviside, "_npi_heaviside")
equal = _define_binary("equal", _np.equal, "_npi_equal", commutative=True)
not_equal = _define_binary("not_equal", _np.not_equal, "_npi_not_equal", commutative=True)
less = _define_binary("less", _np.less, "_npi_less", mirrored=True)
greater = _define_binary("greater", _np.greater, "_npi_greater", mirrored=True)
less_equal = _define_binary("less_equal", _np.less_equal, "_npi_less_equal", mirrored=True)
greater_equal = _define_binary("greater_equal", _np.greater_equal, "_npi_greater_equal",
                               mirrored=True)
# s < x  is  x > s, and so on
less.rscalar_op, greater.rscalar_op = greater.scalar_op, less.scalar_op
less_equal.rscalar_op, greater_equal.rscalar_op = greater_equal.scalar_op, less_equal.scalar_op
logical_and = _define_binary("logical_and", _np.logical_and, "_npi_logical_and",
                             commutative=True)
logical_or = _define_binary("logical_or", _np.logical_or, "_npi_logical_or", commutative=True)
logical_xor = _define_binary("logical_xor", _np.logical_xor, "_npi_logical_xor",
                             commutative=True)
bitwise_and = _define_binary("bitwise_and", _np.bitwise_and, "_npi_bitwise_and",
                             commutative=True)
bitwise_or = _define_binary("bitwise_or", _np.bitwise_or, "_npi_bitwise_or", commutative=True)
bitwise_xor = _define_binary("bitwise_xor", _np.bitwise_xor, "_npi_bitwise_xor",
                             commutative=True)
left_shift = _define_binary("left_shift", _np.left_shift, "_npi_left_shift")
right_shift = _define_binary("right_shift", _np.right_shift, "_npi_right_shift")
gcd = _define_binary("gcd", _np.gcd, "_npi_gcd", commutative=True)
lcm = _define_binary("lcm", _np.lcm, "_npi_lcm", commutative=True)

divide = true_divide
remainder = mod
pow = power


# ----------------------------------------------------------------------------------------------
# where, clip, nan_to_num, isclose
# ----------------------------------------------------------------------------------------------

class Where(Op):
    """x where condition holds, else y (broadcasting all three)."""

    name = "where"
    mx_name = "_npi_where"
    inputs = ("condition", "x", "y")

    def impl(condition, x, y):
        return _np.where(condition, x, y)

    def infer(condition, x, y):
        shape = broadcast_shape("where", condition.shape, x.shape, y.shape)
        return Aval(shape, _np.result_type(x.dtype, y.dtype))

    def grad(inputs, outputs, cts):
        c, x, y = inputs
        g = cts[0]
        zero = zeros_like(g)
        return (None, _cotangent_for(where(c, g, zero), x),
                _cotangent_for(where(c, zero, g), y))


def where(condition, x=None, y=None):
    """Elements of `x` where `condition` is true, else of `y`."""
    if x is None and y is None:
        from .shape import nonzero

        return nonzero(condition)
    x, y = _promote_scalar_pair(x, y)
    return apply(Where, (condition, x, y))


def _promote_scalar_pair(x, y):
    """Scalars beside an array take the array's dtype (NumPy's weak scalars); two scalars give
    float32 when both are Python numbers (MXNet's default type)."""
    if not is_scalar(x) and not hasattr(x, "dtype"):
        x = wrap(asarray_input(x))
    if not is_scalar(y) and not hasattr(y, "dtype"):
        y = wrap(asarray_input(y))
    if is_scalar(x) and not is_scalar(y):
        x = full_like_value(y, x)
    elif is_scalar(y) and not is_scalar(x):
        y = full_like_value(x, y)
    elif is_scalar(x) and is_scalar(y):
        x = wrap(_np.asarray(x, dtype=_np.result_type(x, y, _np.float32)))
        y = wrap(_np.asarray(y, dtype=x.dtype))
    return x, y


def full_like_value(like, value):
    """A 0-d array holding `value` in the dtype NumPy would give `like <op> value`."""
    dtype = ufunc_dtype(_np.add, like.dtype, _scalar_type(value))
    return wrap(_np.asarray(value, dtype=dtype))


class Clip(Op):
    """Limit to [a_min, a_max] with scalar bounds (None: unbounded on that side)."""

    name = "clip"
    mx_name = "_npi_clip"
    attrs = {"a_min": None, "a_max": None}

    def impl(x, *, a_min, a_max):
        return _np.clip(x, a_min, a_max)

    def infer(x, *, a_min, a_max):
        # NumPy's answer, asked of an empty array: int arrays clipped to float bounds are float.
        return Aval(x.shape, _np.clip(_np.empty(0, x.dtype), a_min, a_max).dtype)

    def grad(inputs, outputs, cts, *, a_min, a_max):
        # The cotangent passes where x is inside the bounds, the bounds included.
        x = inputs[0]
        g = cts[0]
        if a_min is not None:
            g = g * (x >= a_min)
        if a_max is not None:
            g = g * (x <= a_max)
        return (g,)


def clip(a, a_min=None, a_max=None):
    """Limit values to [a_min, a_max]; either bound may be None, a scalar or an array (which
    broadcasts, and then receives the gradient where it is the result)."""
    if a_min is None and a_max is None:
        raise ValueError("clip: give a_min, a_max or both")
    if (a_min is None or is_scalar(a_min)) and (a_max is None or is_scalar(a_max)):
        return apply(Clip, (a,), {"a_min": a_min, "a_max": a_max})
    out = a
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


class NanToNum(Op):
    """NaN and infinities replaced by finite numbers; other elements pass (and so does their
    gradient)."""

    name = "nan_to_num"
    mx_name = "_npi_nan_to_num"
    attrs = {"nan": 0.0, "posinf": None, "neginf": None}

    def impl(x, *, nan, posinf, neginf):
        return _np.nan_to_num(x, copy=True, nan=nan, posinf=posinf, neginf=neginf)

    def infer(x, *, nan, posinf, neginf):
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts, *, nan, posinf, neginf):
        g = cts[0]
        return (where(isfinite(inputs[0]), g, zeros_like(g)),)


def nan_to_num(x, copy: bool = True,  # noqa: F811  (NumPy's argument name)
               nan: float = 0.0, posinf: float | None = None, neginf: float | None = None):
    """Replace NaN with `nan` and +-inf with `posinf`/`neginf` (default: the dtype's extremes)."""
    return apply(NanToNum, (x,), {"nan": float(nan),
                                  "posinf": None if posinf is None else float(posinf),
                                  "neginf": None if neginf is None else float(neginf)})


class IsClose(Op):
    """|a - b| <= atol + rtol * |b|, elementwise, with NumPy's treatment of inf and NaN."""

    name = "isclose"
    mx_name = "_npi_isclose"
    attrs = {"rtol": 1e-5, "atol": 1e-8, "equal_nan": False}
    inputs = ("a", "b")
    differentiable = False

    def impl(a, b, *, rtol, atol, equal_nan):
        return _np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)

    def infer(a, b, *, rtol, atol, equal_nan):
        return Aval(broadcast_shape("isclose", a.shape, b.shape), _np.dtype(bool))


def isclose(a, b, rtol: float = 1e-5, atol: float = 1e-8, equal_nan: bool = False):
    """Elementwise closeness within tolerances, as NumPy's isclose."""
    a, b = _promote_scalar_pair(a, b)
    return apply(IsClose, (a, b), {"rtol": float(rtol), "atol": float(atol),
                                   "equal_nan": bool(equal_nan)})


# The unary half of the family and the casts; imported last because their rules call back into
# this module.
from .casting import (  # noqa: E402, F401
    Cast, astype, copy, full_like, ones_like, stop_gradient, zeros_like,
)
from .unary import (  # noqa: E402, F401
    abs, absolute, arccos, arccosh, arcsin, arcsinh, arctan, arctanh, around, bitwise_not, cbrt,
    ceil, cos, cosh, deg2rad, degrees, exp, exp2, expm1, fabs, fix, floor, invert, isfinite, isinf,
    isnan, log, log1p, log2, log10, logical_not, negative, rad2deg, radians, reciprocal, relu, rint,
    round, round_, sigmoid, sign, signbit, sin, sinh, softrelu, softsign, sqrt, square, tan, tanh,
    trunc,
)
