"""NumPy dtypes as C types, and Python numbers as C literals."""

from __future__ import annotations

import math

import numpy as _np

__all__ = ["c_type", "c_literal", "supported_dtype", "is_float"]

_C_TYPES = {
    "float32": "float", "float64": "double",
    "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
    "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "bool": "uint8_t",
}


def supported_dtype(dtype) -> bool:
    return _np.dtype(dtype).name in _C_TYPES


def c_type(dtype) -> str:
    """The C type holding one element of `dtype` (bool is one byte, 0 or 1, as in NumPy)."""
    name = _np.dtype(dtype).name
    try:
        return _C_TYPES[name]
    except KeyError:
        raise TypeError(f"no C type for dtype {name}") from None


def is_float(dtype) -> bool:
    return _np.dtype(dtype).kind == "f"


def c_literal(value, dtype) -> str:
    """`value` written as a C constant of `dtype` (rounded as NumPy rounds a Python number)."""
    dt = _np.dtype(dtype)
    if dt.kind == "f":
        v = float(value)
        suffix = "f" if dt == _np.float32 else ""
        if math.isnan(v):
            return "NAN" if suffix else "((double)NAN)"
        if math.isinf(v):
            s = "INFINITY" if suffix else "((double)INFINITY)"
            return s if v > 0 else f"(-{s})"
        if dt == _np.float32:
            v = float(_np.float32(v))
            text = repr(float(_np.float32(v)))
            # the shortest repr of the float32 value, so the literal reads well
            text = _np.format_float_positional(_np.float32(v), unique=True, trim="0") \
                if "e" not in text else text
        else:
            text = repr(v)
        if "." not in text and "e" not in text and "inf" not in text:
            text += ".0"
        if text.endswith("."):
            text += "0"
        return f"{text}{suffix}"
    if dt.kind == "b":
        return "1" if bool(value) else "0"
    v = int(value)
    if dt.kind == "u":
        return f"{v}ULL"
    if v == -(2 ** 63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL"
