"""Elementwise arithmetic and math, scalar forms, casts and copies, softmax."""

from __future__ import annotations

import math

import numpy as _np

from ...base import KilnError
from ...ndarray import apply
from ...ops import elementwise as _ew
from ...ops import nn as _nn
from ...ops import shape as _sh
from ...ops.registry import REGISTRY
from .table import (
    REQUIRED, _F32_MAX, _in_shape, _shape_of, reader, writer,
)


# kiln unary op -> (legacy name, numpy-mode name, other names read)
_UNARY = {
    "negative": ("negative", "_npi_negative", ""),
    "absolute": ("abs", "_npi_absolute", "_npi_abs"),
    "exp": ("exp", "_npi_exp", ""), "expm1": ("expm1", "_npi_expm1", ""),
    "log": ("log", "_npi_log", ""), "log1p": ("log1p", "_npi_log1p", ""),
    "log2": ("log2", "_npi_log2", ""), "log10": ("log10", "_npi_log10", ""),
    "sqrt": ("sqrt", "_npi_sqrt", ""), "square": ("square", "_npi_square", ""),
    "cbrt": ("cbrt", "_npi_cbrt", ""), "reciprocal": ("reciprocal", "_npi_reciprocal", ""),
    "sin": ("sin", "_npi_sin", ""), "cos": ("cos", "_npi_cos", ""),
    "tan": ("tan", "_npi_tan", ""), "arcsin": ("arcsin", "_npi_arcsin", ""),
    "arccos": ("arccos", "_npi_arccos", ""), "arctan": ("arctan", "_npi_arctan", ""),
    "sinh": ("sinh", "_npi_sinh", ""), "cosh": ("cosh", "_npi_cosh", ""),
    "tanh": ("tanh", "_npi_tanh", ""), "sign": ("sign", "_npi_sign", ""),
    "floor": ("floor", "_npi_floor", ""), "ceil": ("ceil", "_npi_ceil", ""),
    "rint": ("rint", "_npi_rint", ""), "trunc": ("trunc", "_npi_trunc", "fix _npi_fix"),
    "relu": ("relu", "_npx_relu", ""), "sigmoid": ("sigmoid", "_npx_sigmoid", ""),
    "softsign": ("softsign", "_npx_softsign", ""),
    "logical_not": ("logical_not", "_npi_logical_not", ""),
}


def _unary_reader(kiln_name: str):
    op = REGISTRY[kiln_name]

    def run(ins, a):
        return (apply(op, (ins[0],)),)
    return run


for _k, (_legacy, _numpy, _more) in _UNARY.items():
    reader(f"{_legacy} {_numpy} {_more}")(_unary_reader(_k))


@writer(" ".join(_UNARY))
def _write_unary(node, mode):
    legacy, numpy, _ = _UNARY[node.op]
    if mode == "legacy" and node.op in ("relu", "sigmoid", "tanh"):
        return [("Activation", {"act_type": node.op})]
    return [(numpy if mode == "numpy" else legacy, {})]


# kiln binary op -> (legacy name written, legacy names read, numpy-mode name, elemwise name)
_BINARY = {
    "add": ("broadcast_add", "broadcast_plus elemwise_add _plus _Plus _add", "_npi_add",
            "elemwise_add"),
    "subtract": ("broadcast_sub", "broadcast_minus elemwise_sub _minus _Minus _sub",
                 "_npi_subtract", "elemwise_sub"),
    "multiply": ("broadcast_mul", "elemwise_mul _mul _Mul", "_npi_multiply", "elemwise_mul"),
    "true_divide": ("broadcast_div", "elemwise_div _div _Div", "_npi_true_divide",
                    "elemwise_div"),
    "power": ("broadcast_power", "_power _Power", "_npi_power", None),
    "mod": ("broadcast_mod", "_mod", "_npi_mod", None),
    "maximum": ("broadcast_maximum", "_maximum _Maximum", "_npi_maximum", None),
    "minimum": ("broadcast_minimum", "_minimum _Minimum", "_npi_minimum", None),
    "hypot": ("broadcast_hypot", "_hypot", "_npi_hypot", None),
    "arctan2": ("broadcast_arctan2", "", "_npi_arctan2", None),
    "equal": ("broadcast_equal", "_equal", "_npi_equal", None),
    "not_equal": ("broadcast_not_equal", "_not_equal", "_npi_not_equal", None),
    "greater": ("broadcast_greater", "_greater", "_npi_greater", None),
    "greater_equal": ("broadcast_greater_equal", "_greater_equal", "_npi_greater_equal", None),
    "less": ("broadcast_lesser", "_lesser", "_npi_less", None),
    "less_equal": ("broadcast_lesser_equal", "_lesser_equal", "_npi_less_equal", None),
    "logical_and": ("broadcast_logical_and", "_logical_and", "_npi_logical_and", None),
    "logical_or": ("broadcast_logical_or", "_logical_or", "_npi_logical_or", None),
    "logical_xor": ("broadcast_logical_xor", "_logical_xor", "_npi_logical_xor", None),
}
_COMPARISONS = {"equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
                "logical_and", "logical_or", "logical_xor"}


def _binary_reader(kiln_name: str, legacy: bool):
    op = REGISTRY[kiln_name]
    as_number = legacy and kiln_name in _COMPARISONS

    def run(ins, a):
        out = apply(op, (ins[0], ins[1]))
        if as_number:  # MXNet 1.x comparisons give 0/1 in the operands' dtype
            out = _ew.astype(out, _np.result_type(ins[0].dtype, ins[1].dtype).name)
        return (out,)
    return run


for _k, (_legacy, _more, _numpy, _elem) in _BINARY.items():
    reader(f"{_legacy} {_more}")(_binary_reader(_k, True))
    reader(_numpy)(_binary_reader(_k, False))


@writer(" ".join(_BINARY))
def _write_binary(node, mode):
    legacy, _, numpy, elem = _BINARY[node.op]
    if mode == "numpy":
        return [(numpy, {})]
    if elem is not None and _in_shape(node, 0) is not None and \
            _in_shape(node, 0) == _in_shape(node, 1):
        return [(elem, {})]
    return [(legacy, {})]


# kiln scalar op -> (legacy name, numpy-mode name, other legacy names read)
_SCALAR = {
    "add_scalar": ("_plus_scalar", "_npi_add_scalar", "_PlusScalar"),
    "subtract_scalar": ("_minus_scalar", "_npi_subtract_scalar", "_MinusScalar"),
    "rsubtract_scalar": ("_rminus_scalar", "_npi_rsubtract_scalar", "_RMinusScalar"),
    "multiply_scalar": ("_mul_scalar", "_npi_multiply_scalar", "_MulScalar"),
    "true_divide_scalar": ("_div_scalar", "_npi_true_divide_scalar", "_DivScalar"),
    "rtrue_divide_scalar": ("_rdiv_scalar", "_npi_rtrue_divide_scalar", "_RDivScalar"),
    "power_scalar": ("_power_scalar", "_npi_power_scalar", "_PowerScalar"),
    "rpower_scalar": ("_rpower_scalar", "_npi_rpower_scalar", "_RPowerScalar"),
    "mod_scalar": ("_mod_scalar", "_npi_mod_scalar", "_ModScalar"),
    "rmod_scalar": ("_rmod_scalar", "_npi_rmod_scalar", "_RModScalar"),
    "maximum_scalar": ("_maximum_scalar", "_npi_maximum_scalar", "_MaximumScalar"),
    "minimum_scalar": ("_minimum_scalar", "_npi_minimum_scalar", "_MinimumScalar"),
    "equal_scalar": ("_equal_scalar", "_npi_equal_scalar", ""),
    "not_equal_scalar": ("_not_equal_scalar", "_npi_not_equal_scalar", ""),
    "greater_scalar": ("_greater_scalar", "_npi_greater_scalar", ""),
    "greater_equal_scalar": ("_greater_equal_scalar", "_npi_greater_equal_scalar", ""),
    "less_scalar": ("_lesser_scalar", "_npi_less_scalar", ""),
    "less_equal_scalar": ("_lesser_equal_scalar", "_npi_less_equal_scalar", ""),
}
_SCALAR_SPEC = {"scalar": ("scalar", REQUIRED), "is_int": ("bool", None)}


def _scalar_reader(kiln_name: str, legacy: bool):
    op = REGISTRY[kiln_name]
    as_number = legacy and kiln_name.replace("_scalar", "") in _COMPARISONS

    def run(ins, a):
        s = a["scalar"]
        if a["is_int"] is not None:  # numpy mode says which kind of Python number it was
            s = int(s) if a["is_int"] and math.isfinite(s) else float(s)
        out = apply(op, (ins[0],), {"scalar": s})
        if as_number:
            out = _ew.astype(out, ins[0].dtype.name)
        return (out,)
    return run


for _k, (_legacy, _numpy, _more) in _SCALAR.items():
    if _k in REGISTRY:
        reader(f"{_legacy} {_more}", _SCALAR_SPEC)(_scalar_reader(_k, True))
        reader(_numpy, _SCALAR_SPEC)(_scalar_reader(_k, False))


@writer(" ".join(k for k in _SCALAR if k in REGISTRY))
def _write_scalar(node, mode):
    legacy, numpy, _ = _SCALAR[node.op]
    s = node.attrs["scalar"]
    if isinstance(s, _np.generic):
        s = s.item()
    if isinstance(s, bool):
        s = int(s)
    if mode == "numpy":
        return [(numpy, {"is_int": isinstance(s, int), "scalar": float(s)})]
    return [(legacy, {"scalar": s})]


@reader("clip _npi_clip", {"a_min": ("opt_float", None), "a_max": ("opt_float", None)})
def _read_clip(ins, a):
    lo, hi = a["a_min"], a["a_max"]
    lo = None if lo is not None and lo <= -_F32_MAX else lo
    hi = None if hi is not None and hi >= _F32_MAX else hi
    if lo is None and hi is None:
        return (ins[0],)
    return (_ew.clip(ins[0], lo, hi),)


@writer("clip")
def _write_clip(node, mode):
    lo, hi = node.attrs["a_min"], node.attrs["a_max"]
    if not all(v is None or isinstance(v, (int, float, _np.generic)) for v in (lo, hi)):
        return None
    return [("clip", {"a_max": _F32_MAX if hi is None else float(hi),
                      "a_min": -_F32_MAX if lo is None else float(lo)})]


@reader("Cast cast _npi_cast _npx_cast amp_cast", {"dtype": ("dtype", REQUIRED)})
def _read_cast(ins, a):
    return (_ew.astype(ins[0], a["dtype"]),)


@writer("cast")
def _write_cast(node, mode):
    return [("Cast", {"dtype": node.attrs["dtype"]})]


@reader("_copy identity _np_copy _npi_copy")
def _read_copy(ins, a):
    return (_ew.copy(ins[0]),)


@writer("copy")
def _write_copy(node, mode):
    return [("_np_copy" if mode == "numpy" else "_copy", {})]


@reader("BlockGrad stop_gradient _npx_stop_gradient")
def _read_block_grad(ins, a):
    return (_ew.stop_gradient(ins[0]),)


@writer("stop_gradient")
def _write_block_grad(node, mode):
    return [("BlockGrad", {})]


@reader("where _npi_where")
def _read_where(ins, a):
    return (_ew.where(*ins[:3]),)


@reader("_npi_where_rscalar", {"scalar": ("scalar", REQUIRED)})
def _read_where_rscalar(ins, a):
    return (_ew.where(ins[0], ins[1], a["scalar"]),)


@reader("_npi_where_lscalar", {"scalar": ("scalar", REQUIRED)})
def _read_where_lscalar(ins, a):
    return (_ew.where(ins[0], a["scalar"], ins[1]),)


@writer("where")
def _write_where(node, mode):
    return [("_npi_where" if mode == "numpy" else "where", {})]


@reader("zeros_like")
def _read_zeros_like(ins, a):
    return (_ew.zeros_like(ins[0]),)


@reader("ones_like")
def _read_ones_like(ins, a):
    return (_ew.ones_like(ins[0]),)


@reader("_npi_full_like", {"fill_value": ("float", REQUIRED), "dtype": ("dtype", None)})
def _read_full_like(ins, a):
    return (_ew.full_like(ins[0], a["fill_value"], a["dtype"]),)


@writer("full_like")
def _write_full_like(node, mode):
    fill, dtype = node.attrs["fill_value"], node.attrs["dtype"]
    if not isinstance(fill, (int, float, _np.generic)):
        return None
    if dtype is None and fill in (0, 1):
        return [("zeros_like" if fill == 0 else "ones_like", {})]
    if mode == "numpy":
        return [("_npi_full_like", {"dtype": dtype or _in_dtype(node), "fill_value": float(fill)})]
    return None


def _in_dtype(node) -> str:
    aval = node.inputs[0].aval
    return "float32" if aval is None else _np.dtype(aval.dtype).name


# ----------------------------------------------------------------------------------------------
# softmax
# ----------------------------------------------------------------------------------------------

_SOFTMAX_SPEC = {"axis": ("int", -1), "temperature": ("opt_float", None),
                 "dtype": ("dtype", None), "use_length": ("bool", False)}


def _softmax_reader(front):
    def run(ins, a):
        if a["use_length"]:
            raise KilnError("softmax with use_length=True is not supported")
        out = front(ins[0], axis=a["axis"], temperature=a["temperature"])
        if a["dtype"] is not None:
            out = _ew.astype(out, a["dtype"])
        return (out,)
    return run


reader("softmax _npx_softmax", _SOFTMAX_SPEC)(_softmax_reader(_nn.softmax))
reader("log_softmax _npx_log_softmax", _SOFTMAX_SPEC)(_softmax_reader(_nn.log_softmax))


@reader("SoftmaxActivation", {"mode": (("instance", "channel"), "instance")})
def _read_softmax_activation(ins, a):
    x = ins[0]
    if a["mode"] == "channel":
        return (_nn.softmax(x, axis=1),)
    shape = _shape_of(x, "SoftmaxActivation")
    return (_sh.reshape(_nn.softmax(_sh.reshape(x, (shape[0], -1)), axis=-1), shape),)


@writer("softmax log_softmax")
def _write_softmax(node, mode):
    attrs = {"axis": node.attrs["axis"]}
    if node.attrs["temperature"] is not None:
        attrs["temperature"] = float(node.attrs["temperature"])
    return [(node.op, attrs)]
