"""Attribute values of MXNet symbol files: strings in the file, typed values in kiln.

MXNet writes every operator attribute as a string: `"True"`, `"256"`, `"1e-05"`, `"(5, 5)"`,
`"None"`, `"[None, 1]"`, `"NCHW"`. `parse_attr(kind, text)` reads one such string as the kind an
operator expects and raises `ValueError` (which the JSON reader turns into a `FormatError` naming
the file and node) for anything else. Structured values go through kiln's safe literal reader,
which walks a restricted syntax tree: nothing in an attribute can execute code.

`format_attr(value)` writes a Python value the way MXNet 1.9.1 does.
"""

from __future__ import annotations

import math

import numpy as _np

from ..graph.literal import parse_literal

__all__ = ["parse_attr", "format_attr", "KINDS"]

_TRUE = {"true": True, "1": True, "false": False, "0": False}
# A text this long is no real attribute; refusing it bounds the work a hostile file can cause.
_MAX_TEXT = 100_000


def _literal(text: str):
    if len(text) > _MAX_TEXT:
        raise ValueError(f"a value of {len(text)} characters")
    try:
        return parse_literal(text)
    except RecursionError:
        raise ValueError("a value nested too deeply") from None
    except Exception as e:
        raise ValueError(str(e)) from None


_MAX_INT = 1 << 62


def _int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (
            isinstance(v, float) and not math.isfinite(v)) or v != int(v):
        raise ValueError("not an integer")
    if not -_MAX_INT <= v <= _MAX_INT:
        raise ValueError("an integer too large for any shape or count")
    return int(v)


def _bool(text: str) -> bool:
    key = text.strip().lower()
    if key not in _TRUE:
        raise ValueError("not a boolean (True/False/1/0)")
    return _TRUE[key]


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError("not a number") from None


def _int_text(text: str) -> int:
    t = text.strip()
    if len(t) > 64:
        raise ValueError("not an integer of a sensible size")
    try:
        return _int(int(t))
    except ValueError as e:
        if "too large" in str(e):
            raise
    return _int(_float(t))


def _ints(text: str) -> tuple:
    v = _literal(text)
    if v is None:
        return ()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (_int(v),)
    if not isinstance(v, (tuple, list)):
        raise ValueError("not a tuple of integers")
    return tuple(_int(x) for x in v)


def _opt_ints(text: str):
    v = _literal(text)
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (_int(v),)
    if not isinstance(v, (tuple, list)):
        raise ValueError("not None or a tuple of integers")
    return tuple(None if x is None else _int(x) for x in v)


def _axis(text: str):
    """None (all axes), an int, or a tuple of ints ("()" is None, as MXNet reads it)."""
    v = _literal(text)
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return tuple(_int(x) for x in v) or None
    return _int(v)


def _opt_int(text: str):
    return None if text.strip() == "None" else _int_text(text)


def _opt_float(text: str):
    return None if text.strip() == "None" else _float(text)


def _dtype(text: str):
    t = text.strip()
    if t == "None":
        return None
    try:
        dt = _np.dtype(t)
    except TypeError:
        raise ValueError("not a dtype name") from None
    if dt.kind not in "biuf":
        raise ValueError("not a numeric dtype")
    return dt.name


def _str(text: str) -> str:
    if len(text) > 1000:
        raise ValueError("a string of more than 1000 characters")
    return text


def _scalar(text: str):
    """A scalar operand: int when written as one ("1"), else float ("1.0", "2.5", "inf")."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        return _float(t)


def _any(text: str):
    return _literal(text)


#: kind name -> parser (text -> value, ValueError when the text is not of that kind)
KINDS = {
    "int": _int_text, "float": _float, "bool": _bool, "str": _str, "ints": _ints,
    "opt_ints": _opt_ints, "axis": _axis, "opt_int": _opt_int, "opt_float": _opt_float,
    "dtype": _dtype, "scalar": _scalar, "literal": _any,
}


def parse_attr(kind, text: str):
    """`text` read as `kind` (a KINDS name, or a tuple of allowed strings)."""
    if not isinstance(text, str):
        raise ValueError(f"a {type(text).__name__}, not a string")
    if isinstance(kind, tuple):  # a choice among strings
        if text not in kind:
            raise ValueError(f"not one of {', '.join(kind)}")
        return text
    return KINDS[kind](text)


def format_attr(v) -> str:
    """A value as MXNet 1.9.1 writes it: True, 256, 1e-05, (5, 5), (5,), None, NCHW."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, _np.generic):
        v = v.item()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, (tuple, list)):
        inner = ", ".join(format_attr(x) for x in v)
        if isinstance(v, list):
            return f"[{inner}]"
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, _np.dtype):
        return v.name
    return str(v)
