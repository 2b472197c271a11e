"""Unary elementwise operators: math functions, rounding, tests, and the activations of `npx`.

Each one wraps a NumPy ufunc (or a NumPy expression) and, when it is differentiable, a rule
`grad(x, y, g)` giving the input cotangent from the input `x`, the output `y` (kept only for
operators that say `save_outputs`) and the output cotangent `g`. `kiln.ops.elementwise`
re-exports every function here.
"""

# Operator methods take no `self`: Op turns them into static methods (see registry.py).

from __future__ import annotations

import math

import numpy as _np

from ..ndarray import apply
from .registry import Aval, Op
from . import _native
from . import elementwise as _ew

_F32 = _np.dtype(_np.float32)


def _unary_infer(ufunc):
    def infer(x):
        return Aval(x.shape, _ew.ufunc_dtype(ufunc, x.dtype))
    return infer


def _same_dtype_infer(x):
    return Aval(x.shape, x.dtype)


def _define_unary(name, ufunc, mx_name, grad=None, save_outputs=False, doc="", infer=None):
    """Register a unary operator over a NumPy ufunc; `grad(x, y, g)` gives the input cotangent.

    `infer` defaults to NumPy's result type for `ufunc`.
    """
    body = {
        "name": name,
        "mx_name": mx_name,
        "save_outputs": save_outputs,
        "impl": staticmethod(ufunc),
        "infer": staticmethod(infer or _unary_infer(ufunc)),
        "__doc__": doc or f"Elementwise {name}.",
    }
    if grad is None:
        body["differentiable"] = False
    else:
        def rule(inputs, outputs, cts, _grad=grad):
            y = outputs[0] if outputs is not None else None
            return (_grad(inputs[0], y, cts[0]),)
        body["grad"] = staticmethod(rule)
    op = type(f"Unary_{name}", (Op,), body)

    def fn(x):
        return apply(op, (x,))
    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = body["__doc__"]
    fn.op = op
    return fn


_ACT_SIGMOID = 2      # enum kiln_act


def _sigmoid(x):
    if x.dtype is _F32:       # one native pass where NumPy makes four
        out = _native.call("act_f32", x, _ACT_SIGMOID)
        if out is not None:
            return out
    # exp(-x) overflows to inf for very negative x, which gives the right limit 0: silence it.
    with _np.errstate(over="ignore"):
        out = 1.0 / (1.0 + _np.exp(-x))
    return out.astype(x.dtype, copy=False) if x.dtype.kind == "f" else out


def _relu(x):
    if x.dtype is _F32:       # one native pass: 5 us instead of 17 for 256x256
        out = _native.call("relu_f32", x)
        if out is not None:
            return out
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
fabs = _define_unary("fabs", _np.fabs, "_npi_fabs", lambda x, y, g: g * sign(x))
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
# tanh's and sigmoid's rules are written as one chain from y, ending with the cotangent: in a
# compiled backward graph the fusion pass then makes the whole rule one elementwise node
# (g * (1 - y * y) would leave 1 - y * y outside it, a pass of its own).
tanh = _define_unary("tanh", _np.tanh, "_npi_tanh", lambda x, y, g: (1 - y * y) * g,
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
signbit = _define_unary("signbit", _np.signbit, "_npi_signbit")
invert = _define_unary("invert", _np.invert, "_npi_bitwise_not",
                       doc="Bitwise NOT of integers, logical NOT of booleans.")
# Activations (kiln.npx); `npx.activation(x, act_type)` picks one of these. The float result
# of an integer input follows exp's, as NumPy would compute the formula.
# relu's rule reads its output (y > 0 exactly where x > 0): a compiled training graph then
# keeps only the activation (which the next layer's weight gradient needs anyway), and the dense
# layer before it can fuse with it.
relu = _define_unary("relu", _relu, "_npx_relu", lambda x, y, g: g * (y > 0),
                     save_outputs=True, doc="max(x, 0), elementwise.", infer=_same_dtype_infer)
sigmoid = _define_unary("sigmoid", _sigmoid, "_npx_sigmoid", lambda x, y, g: (1 - y) * y * g,
                        save_outputs=True, doc="1 / (1 + exp(-x)), elementwise.",
                        infer=_unary_infer(_np.exp))
softrelu = _define_unary("softrelu", _softrelu, "_npx_softrelu",
                         lambda x, y, g: g * sigmoid(x), doc="log(1 + exp(x)) (softplus).",
                         infer=_unary_infer(_np.exp))
softsign = _define_unary("softsign", _softsign, "_npx_softsign",
                         lambda x, y, g: g / square(1 + absolute(x)), doc="x / (1 + |x|).",
                         infer=_unary_infer(_np.exp))


class Around(Op):
    name = "around"
    mx_name = "_npi_around"
    attrs = {"decimals": 0}
    differentiable = False

    def impl(x, *, decimals):
        return _np.around(x, decimals)

    def infer(x, *, decimals):
        return Aval(x.shape, x.dtype)


def around(x, decimals: int = 0):
    """Round to `decimals` places (half to even, as NumPy)."""
    if decimals == 0 and x.dtype.kind == "f":
        return rint(x)
    return apply(Around, (x,), {"decimals": int(decimals)})


round = round_ = around
abs = absolute
fix = trunc  # NumPy's fix rounds toward zero, as trunc does (same result dtypes too)
bitwise_not = invert
deg2rad, rad2deg = radians, degrees
