"""Elementwise operators: unary math, binary arithmetic with NumPy broadcasting, comparisons.

Each binary operator comes in three forms, as in MXNet: array-array (`add`), array-scalar
(`add_scalar`, attribute `scalar`) and, when the order matters, scalar-array (`rsubtract_scalar`).
A Python number stays a weakly-typed scalar, so `float32_array + 1.0` is float32 as in NumPy 2.
The gradient rule of a binary operator is written once, in terms of both operands, and serves
all three forms.
"""

from __future__ import annotations

import functools
import math

import numpy as _np

from ..ndarray import apply, wrap
from .registry import Aval, Op
from . import reduce as _reduce
from . import shape as _shape

_SCALAR_TYPES = (int, float, bool, _np.generic)


def is_scalar(x) -> bool:
    return isinstance(x, _SCALAR_TYPES)


@functools.lru_cache(maxsize=4096)
def _ufunc_dtype(ufunc, *operand_types) -> _np.dtype:
    """Result dtype of `ufunc` for these operand dtypes (or Python scalar types), as NumPy says."""
    try:
        return _np.dtype(ufunc.resolve_dtypes(operand_types + (None,) * ufunc.nout)[-1])
    except (AttributeError, TypeError):  # NumPy < 2: ask by computing on one element
        samples = [t(1) if isinstance(t, type) else _np.ones(1, t) for t in operand_types]
        with _np.errstate(all="ignore"):
            out = ufunc(*samples)
        return _np.asarray(out[0] if isinstance(out, tuple) else out).dtype


def _scalar_type(s):
    """The type NumPy promotes a scalar operand as: weak Python types, or a NumPy dtype."""
    if isinstance(s, _np.generic):
        return _np.dtype(type(s))
    return type(s)


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


# ----------------------------------------------------------------------------------------------
# unary operators
# ----------------------------------------------------------------------------------------------

def _unary_infer(ufunc):
    def infer(x, **attrs):
        return Aval(x.shape, _ufunc_dtype(ufunc, x.dtype))
    return infer


def _define_unary(name, ufunc, mx_name, grad=None, save_outputs=False, doc=""):
    """Register a unary operator over a NumPy ufunc; `grad(x, y, g)` gives the input cotangent."""
    attrs = {
        "name": name,
        "mx_name": mx_name,
        "save_outputs": save_outputs,
        "impl": staticmethod(ufunc),
        "infer": staticmethod(_unary_infer(ufunc)),
        "__doc__": doc or f"Elementwise {name}.",
    }
    if grad is None:
        attrs["differentiable"] = False
    else:
        def rule(inputs, outputs, cts, _grad=grad):
            y = outputs[0] if outputs is not None else None
            return (_grad(inputs[0], y, cts[0]),)
        attrs["grad"] = staticmethod(rule)
    op = type(f"Unary_{name}", (Op,), attrs)

    def fn(x):
        return apply(op, (x,))
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = attrs["__doc__"]
    fn.op = op
    return fn


def _sigmoid(x):
    # NOTE: split by sign so exp never overflows; NumPy has no fused sigmoid.
    with _np.errstate(over="ignore"):
        out = 1.0 / (1.0 + _np.exp(-x))
    return out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out


def _relu(x):
    return _np.maximum(x, 0, dtype=x.dtype) if x.dtype.kind != "b" else x.copy()


def _softrelu(x):
    return _np.logaddexp(x, 0).astype(x.dtype, copy=False) if x.dtype.kind == "f" else \
        _np.logaddexp(x, 0)


def _softsign(x):
    return x / (1 + _np.abs(x))


_LN2 = math.log(2.0)
_LN10 = math.log(10.0)

negative = _define_unary("negative", _np.negative, "_npi_negative", lambda x, y, g: -g)
absolute = _define_unary("absolute", _np.absolute, "_npi_absolute",
                         lambda x, y, g: g * sign(x))
exp = _define_unary("exp", _np.exp, "_npi_exp", lambda x, y, g: g * y, save_outputs=True)
exp2 = _define_unary("exp2", _np.exp2, "_npi_exp2", lambda x, y, g: g * y * _LN2,
                     save_outputs=True)
expm1 = _define_unary("expm1", _np.expm1, "_npi_expm1", lambda x, y, g: g * (y + 1),
                      save_outputs=True)
log = _define_unary("log", _np.log, "_npi_log", lambda x, y, g: g / x)
log2 = _define_unary("log2", _np.log2, "_npi_log2", lambda x, y, g: g / (x * _LN2))
log10 = _define_unary("log10", _np.log10, "_npi_log10", lambda x, y, g: g / (x * _LN10))
log1p = _define_unary("log1p", _np.log1p, "_npi_log1p", lambda x, y, g: g / (x + 1))
sqrt = _define_unary("sqrt", _np.sqrt, "_npi_sqrt", lambda x, y, g: g * 0.5 / y,
                     save_outputs=True)
cbrt = _define_unary("cbrt", _np.cbrt, "_npi_cbrt", lambda x, y, g: g / (3 * y * y),
                     save_outputs=True)
square = _define_unary("square", _np.square, "_npi_square", lambda x, y, g: g * 2 * x)
reciprocal = _define_unary("reciprocal", _np.reciprocal, "_npi_reciprocal",
                           lambda x, y, g: -g * y * y, save_outputs=True)
sin = _define_unary("sin", _np.sin, "_npi_sin", lambda x, y, g: g * cos(x))
cos = _define_unary("cos", _np.cos, "_npi_cos", lambda x, y, g: -g * sin(x))
tan = _define_unary("tan", _np.tan, "_npi_tan", lambda x, y, g: g * (1 + y * y),
                    save_outputs=True)
arcsin = _define_unary("arcsin", _np.arcsin, "_npi_arcsin",
                       lambda x, y, g: g / sqrt(1 - x * x))
arccos = _define_unary("arccos", _np.arccos, "_npi_arccos",
                       lambda x, y, g: -g / sqrt(1 - x * x))
arctan = _define_unary("arctan", _np.arctan, "_npi_arctan", lambda x, y, g: g / (1 + x * x))
sinh = _define_unary("sinh", _np.sinh, "_npi_sinh", lambda x, y, g: g * cosh(x))
cosh = _define_unary("cosh", _np.cosh, "_npi_cosh", lambda x, y, g: g * sinh(x))
tanh = _define_unary("tanh", _np.tanh, "_npi_tanh", lambda x, y, g: g * (1 - y * y),
                     save_outputs=True)
arcsinh = _define_unary("arcsinh", _np.arcsinh, "_npi_arcsinh",
                        lambda x, y, g: g / sqrt(x * x + 1))
arccosh = _define_unary("arccosh", _np.arccosh, "_npi_arccosh",
                        lambda x, y, g: g / sqrt(x * x - 1))
arctanh = _define_unary("arctanh", _np.arctanh, "_npi_arctanh",
                        lambda x, y, g: g / (1 - x * x))
degrees = _define_unary("degrees", _np.degrees, "_npi_degrees",
                        lambda x, y, g: g * (180.0 / math.pi))
radians = _define_unary("radians", _np.radians, "_npi_radians",
                        lambda x, y, g: g * (math.pi / 180.0))
# Piecewise-constant functions: zero gradient almost everywhere, so their results are constants.
sign = _define_unary("sign", _np.sign, "_npi_sign")
floor = _define_unary("floor", _np.floor, "_npi_floor")
ceil = _define_unary("ceil", _np.ceil, "_npi_ceil")
rint = _define_unary("rint", _np.rint, "_npi_rint")
trunc = _define_unary("trunc", _np.trunc, "_npi_trunc")
logical_not = _define_unary("logical_not", _np.logical_not, "_npi_logical_not")
isnan = _define_unary("isnan", _np.isnan, "_npi_isnan")
isinf = _define_unary("isinf", _np.isinf, "_npi_isinf")
isfinite = _define_unary("isfinite", _np.isfinite, "_npi_isfinite")
# Activations (kiln.npx); `activation(x, act_type)` picks one of these.
relu = _define_unary("relu", _relu, "_npx_relu", lambda x, y, g: g * (x > 0),
                     doc="max(x, 0), elementwise.")
relu.op.infer = staticmethod(lambda x: Aval(x.shape, x.dtype))
sigmoid = _define_unary("sigmoid", _sigmoid, "_npx_sigmoid", lambda x, y, g: g * y * (1 - y),
                        save_outputs=True, doc="1 / (1 + exp(-x)), elementwise.")
softrelu = _define_unary("softrelu", _softrelu, "_npx_softrelu",
                         lambda x, y, g: g * sigmoid(x), doc="log(1 + exp(x)) (softplus).")
softsign = _define_unary("softsign", _softsign, "_npx_softsign",
                         lambda x, y, g: g / square(1 + absolute(x)), doc="x / (1 + |x|).")
for _fn, _ufunc_like in ((sigmoid, _np.exp), (softrelu, _np.exp), (softsign, _np.exp)):
    _fn.op.infer = staticmethod(_unary_infer(_ufunc_like))


def around(x, decimals: int = 0):
    """Round to `decimals` places (half to even, as NumPy)."""
    if decimals == 0:
        return rint(x)
    return apply(Around, (x,), {"decimals": decimals})


class Around(Op):
    name = "around"
    mx_name = "_npi_around"
    attrs = {"decimals": 0}
    differentiable = False

    def impl(x, *, decimals):
        return _np.around(x, decimals)

    def infer(x, *, decimals):
        return Aval(x.shape, x.dtype)


round = round_ = around
abs = absolute
fabs = absolute


# ----------------------------------------------------------------------------------------------
# binary operators
# ----------------------------------------------------------------------------------------------

def _define_binary(name, ufunc, mx_name, grad=None, commutative=False, mirrored=False,
                   save_outputs=False):
    """Register `name`, `name_scalar` and (unless commutative) `rname_scalar`.

    `grad(a, b, y, g)` returns the cotangents of both operands; either operand may be a scalar.
    A `mirrored` comparison has no reversed form of its own: `s < x` is `x > s`, wired below.
    """
    differentiable = grad is not None

    def array_infer(a, b):
        return Aval(_np.broadcast_shapes(a.shape, b.shape), _ufunc_dtype(ufunc, a.dtype, b.dtype))

    def array_grad(inputs, outputs, cts):
        a, b = inputs
        y = outputs[0] if outputs is not None else None
        ga, gb = grad(a, b, y, cts[0])
        return (None if ga is None else unbroadcast(ga, a.shape),
                None if gb is None else unbroadcast(gb, b.shape))

    def scalar_impl(x, *, scalar):
        return ufunc(x, scalar)

    def scalar_infer(x, *, scalar):
        return Aval(x.shape, _ufunc_dtype(ufunc, x.dtype, _scalar_type(scalar)))

    def scalar_grad(inputs, outputs, cts, *, scalar):
        y = outputs[0] if outputs is not None else None
        return (grad(inputs[0], scalar, y, cts[0])[0],)

    def rscalar_impl(x, *, scalar):
        return ufunc(scalar, x)

    def rscalar_infer(x, *, scalar):
        return Aval(x.shape, _ufunc_dtype(ufunc, _scalar_type(scalar), x.dtype))

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

    array_op = make(name, mx_name, ufunc, array_infer, array_grad, {}, ("lhs", "rhs"))
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
        if isinstance(x2, _SCALAR_TYPES):
            if isinstance(x1, _SCALAR_TYPES):
                return wrap(ufunc(x1, x2))
            return apply(scalar_op, (x1,), {"scalar": x2})
        if isinstance(x1, _SCALAR_TYPES):
            return apply(fn.rscalar_op, (x2,), {"scalar": x1})
        return apply(array_op, (x1, x2))

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} with NumPy broadcasting."
    fn.op, fn.scalar_op, fn.rscalar_op = array_op, scalar_op, rscalar_op
    return fn


def _log_of(v):
    return math.log(v) if isinstance(v, _SCALAR_TYPES) else log(v)


def _power_grad(a, b, y, g):
    ga = g * b * power(a, b - 1) if not isinstance(a, _SCALAR_TYPES) else None
    gb = g * y * _log_of(a) if not isinstance(b, _SCALAR_TYPES) else None
    return ga, gb


def _mod_grad(a, b, y, g):
    gb = None if isinstance(b, _SCALAR_TYPES) else -g * floor_divide(a, b)
    return g, gb


add = _define_binary("add", _np.add, "_npi_add", lambda a, b, y, g: (g, g), commutative=True)
subtract = _define_binary("subtract", _np.subtract, "_npi_subtract",
                          lambda a, b, y, g: (g, -g))
multiply = _define_binary("multiply", _np.multiply, "_npi_multiply",
                          lambda a, b, y, g: (g * b, g * a), commutative=True)
true_divide = _define_binary("true_divide", _np.true_divide, "_npi_true_divide",
                             lambda a, b, y, g: (g / b, -g * y / b), save_outputs=True)
power = _define_binary("power", _np.power, "_npi_power", _power_grad, save_outputs=True)
mod = _define_binary("mod", _np.remainder, "_npi_mod", _mod_grad)
floor_divide = _define_binary("floor_divide", _np.floor_divide, "_npi_floor_divide")
maximum = _define_binary("maximum", _np.maximum, "_npi_maximum",
                         lambda a, b, y, g: (g * (a >= b), g * (a < b)), commutative=True)
minimum = _define_binary("minimum", _np.minimum, "_npi_minimum",
                         lambda a, b, y, g: (g * (a <= b), g * (a > b)), commutative=True)
arctan2 = _define_binary("arctan2", _np.arctan2, "_npi_arctan2",
                         lambda a, b, y, g: (g * b / (a * a + b * b), -g * a / (a * a + b * b)))
hypot = _define_binary("hypot", _np.hypot, "_npi_hypot",
                       lambda a, b, y, g: (g * a / y, g * b / y), commutative=True,
                       save_outputs=True)
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

divide = true_divide
remainder = mod
pow = power


# ----------------------------------------------------------------------------------------------
# where, clip, casts, copies
# ----------------------------------------------------------------------------------------------

class Where(Op):
    """x where condition holds, else y (broadcasting all three)."""

    name = "where"
    mx_name = "_npi_where"
    inputs = ("condition", "x", "y")

    def impl(condition, x, y):
        return _np.where(condition, x, y)

    def infer(condition, x, y):
        shape = _np.broadcast_shapes(condition.shape, x.shape, y.shape)
        return Aval(shape, _np.result_type(x.dtype, y.dtype))

    def grad(inputs, outputs, cts):
        c, x, y = inputs
        g = cts[0]
        zero = zeros_like(g)
        return (None, unbroadcast(where(c, g, zero), x.shape),
                unbroadcast(where(c, zero, g), y.shape))


def where(condition, x=None, y=None):
    """Elements of `x` where `condition` is true, else of `y`."""
    if x is None and y is None:
        from .shape import nonzero

        return nonzero(condition)
    x, y = _promote_scalar_pair(x, y)
    return apply(Where, (condition, x, y))


def _promote_scalar_pair(x, y):
    """Scalars beside an array take the array's dtype (NumPy's weak scalars)."""
    if isinstance(x, _SCALAR_TYPES) and not isinstance(y, _SCALAR_TYPES):
        x = full_like_value(y, x)
    elif isinstance(y, _SCALAR_TYPES) and not isinstance(x, _SCALAR_TYPES):
        y = full_like_value(x, y)
    elif isinstance(x, _SCALAR_TYPES) and isinstance(y, _SCALAR_TYPES):
        x = wrap(_np.asarray(x, dtype=_np.result_type(x, y, _np.float32)))
        y = wrap(_np.asarray(y, dtype=x.dtype))
    return x, y


def full_like_value(like, value):
    """A 0-d array holding `value` in the dtype NumPy would give `like <op> value`."""
    dtype = _ufunc_dtype(_np.add, like.dtype, _scalar_type(value))
    return wrap(_np.asarray(value, dtype=dtype))


class Clip(Op):
    name = "clip"
    mx_name = "_npi_clip"
    attrs = {"a_min": None, "a_max": None}

    def impl(x, *, a_min, a_max):
        return _np.clip(x, a_min, a_max)

    def infer(x, *, a_min, a_max):
        return Aval(x.shape, x.dtype)

    def grad(inputs, outputs, cts, *, a_min, a_max):
        x = inputs[0]
        g = cts[0]
        if a_min is not None:
            g = g * (x >= a_min)
        if a_max is not None:
            g = g * (x <= a_max)
        return (g,)


def clip(a, a_min=None, a_max=None):
    """Limit values to [a_min, a_max]; either bound may be None."""
    if a_min is None and a_max is None:
        raise ValueError("clip: give a_min, a_max or both")
    return apply(Clip, (a,), {"a_min": a_min, "a_max": a_max})


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
    return apply(FullLike, (a,), {"fill_value": fill_value,
                                  "dtype": None if dtype is None else _np.dtype(dtype).name})


def zeros_like(a, dtype=None):
    return full_like(a, 0, dtype)


def ones_like(a, dtype=None):
    return full_like(a, 1, dtype)
